"""Azure ML command nodes for the five trainers and for preparation, with the runbook's input names.

One builder per step, called by everything that makes an Azure ML job: the checked-in job files
(:mod:`deployments.azureml.generate`), the flows' submissions (:mod:`deployments.azureml.jobs`) and
the pipelines (:mod:`deployments.azureml.pipelines`). A job file therefore cannot say something
the flows do not submit.

The command is the trainer's own command line (``python -m models.<id> --training-data ...``)
behind :mod:`deployments.azureml.launch`, which drops optional inputs left at ``none``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salesrisk import catalog
from salesrisk.settings import Settings

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]
CONDA_FILE = HERE / "conda.yaml"
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
DEFAULT_COMPUTE: str = Settings.model_fields["azure_ml_compute"].default
DEFAULT_DATASTORE = "workspaceblobstore"
LAUNCH = "python -m deployments.azureml.launch"

UNSET = "none"  # an optional input left out (see launch.py)
REGISTER = "--register"  # the job files' deploy_flag: register in the workspace, do not deploy
MODEL_OUTPUT = "model_output"
PREPARE_OUTPUT = "training_prep"
# The order of models.prepare's table flags on a command line.
PREPARE_TABLE_ORDER: tuple[str, ...] = (
    catalog.RISK_EVALUATIONS, catalog.ML_OUTCOMES, catalog.RISK_SNAPSHOTS, catalog.REVENUE_DAILY
)
JOB_ENVIRONMENT_VARIABLES: dict[str, str] = {
    "SALESRISK_SERVING": "azureml",  # --deploy inside a job deploys to this workspace
    "PYTHONUNBUFFERED": "1",  # the job log shows progress as it happens
}


@dataclass(frozen=True)
class Param:
    """A runbook input that becomes ``flag ${{inputs.name}}`` on the trainer's command line."""

    name: str
    flag: str
    default: str | int | float


@dataclass(frozen=True)
class TrainerJob:
    """What the runbook says about one trainer's job file."""

    model_id: str
    job_file: str
    lake_folder: str  # lake folder of the default training_data path; the runbook's --set replaces it
    params: tuple[Param, ...] = ()
    default_model_name: str | None = None  # None: the catalog's registered name

    @property
    def model_name(self) -> str:
        return self.default_model_name or catalog.MODELS[self.model_id].registered_name


def trainer_job(spec: catalog.ModelSpec) -> TrainerJob:
    """A model's job file facts, from its spec: each flow parameter becomes a job input whose
    default is the spec's job default, else the flow default, else unset. A model with per-industry
    names leaves model_name unset so the trainer names it (risk-scoring-global or -{industry})."""
    params = []
    for parameter in spec.flow_parameters:
        default = parameter.job_default if parameter.job_default is not None else parameter.default
        params.append(Param(parameter.name, "--" + parameter.name.replace("_", "-"), UNSET if default is None else default))
    return TrainerJob(
        spec.model_id,
        spec.azure_job_file,
        spec.azure_training_folder,
        tuple(params),
        default_model_name=UNSET if spec.industry_name else None,
    )


TRAINER_JOBS: dict[str, TrainerJob] = {
    model_id: trainer_job(spec) for model_id, spec in catalog.MODELS.items() if spec.azure_job_file
}


def default_input_path(lake_folder: str) -> str:
    """A datastore path for the job files; the runbook's ``--set inputs.<x>.path=`` replaces it."""
    return f"azureml://datastores/{DEFAULT_DATASTORE}/paths/salesrisk/{lake_folder}/"


def data_input(uri: str) -> Any:
    """An Azure ML ``Input`` for a lake URI: ``abfs://`` becomes ``abfss://`` (what Azure ML
    documents), a ``.parquet`` path is a ``uri_file``, anything else a ``uri_folder``; ``azureml:``
    data assets and datastore URIs pass through, and a local path is uploaded at submission."""
    from azure.ai.ml import Input

    uri = str(uri)
    if uri.startswith("az://"):
        raise ValueError(
            f"{uri}: Azure ML needs the storage account; expected "
            "abfs://<container>@<account>.dfs.core.windows.net/<path> or azureml:<asset>:<version>"
        )
    if uri.startswith("abfs://"):
        uri = "abfss://" + uri.removeprefix("abfs://")
    kind = "uri_file" if uri.rstrip("/").endswith(".parquet") else "uri_folder"
    return Input(type=kind, path=uri)


def data_output(uri: str | None) -> Any:
    from azure.ai.ml import Output

    if uri is None:
        return Output(type="uri_folder")
    uri = str(uri)
    if uri.startswith("abfs://"):
        uri = "abfss://" + uri.removeprefix("abfs://")
    return Output(type="uri_folder", path=uri)


def environment() -> Any:
    """The jobs' environment: Azure ML's base image plus :data:`CONDA_FILE`."""
    from azure.ai.ml.entities import Environment

    return Environment(image=BASE_IMAGE, conda_file=str(CONDA_FILE))


def _flag_value(value: Any) -> str | int | float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def deploy_flag(params: Mapping[str, Any], default: str = UNSET) -> str:
    """The ``deploy_flag`` input: ``--deploy`` / ``--register`` from switches in ``params``."""
    if params.get("deploy_flag"):
        return str(params["deploy_flag"])
    if params.get("deploy"):
        return "--deploy"
    if params.get("register"):
        return REGISTER
    return default


def trainer_command(
    model_id: str,
    training_data: str | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    output: str | None = None,
    experiment_name: str | None = None,
    compute: str = DEFAULT_COMPUTE,
    code: str | os.PathLike = PROJECT_ROOT,
    default_deploy_flag: str = UNSET,
) -> Any:
    """The command node that runs ``python -m models.<model_id>`` on Azure ML compute.

    ``params`` hold the runbook's inputs (``model_name``, ``industry_id``, ``sequence_length``,
    ``param_contamination``, ``param_n_estimators``), the switches ``register`` / ``deploy`` (or
    ``deploy_flag`` itself) and any further trainer option (``features``, ``seed``), which becomes
    an input of the same name. ``None`` leaves a value unset.
    """
    from azure.ai.ml import command

    if model_id not in catalog.MODELS:
        raise ValueError(f"model_id {model_id!r}: expected one of {', '.join(catalog.MODELS)}")
    spec = TRAINER_JOBS.get(model_id) or trainer_job(catalog.MODELS[model_id])
    params = {key.replace("-", "_"): value for key, value in (params or {}).items()}
    model_name = params.pop("model_name", None) or spec.model_name
    flag = deploy_flag(params, default_deploy_flag)
    for switch in ("register", "deploy", "deploy_flag"):
        params.pop(switch, None)

    inputs: dict[str, Any] = {
        "training_data": data_input(training_data or default_input_path(spec.lake_folder)),
        "model_name": model_name,
    }
    line = [
        LAUNCH,
        f"models.{model_id}",
        "--training-data ${{inputs.training_data}}",
        f"--output ${{{{outputs.{MODEL_OUTPUT}}}}}",
        "--model-name ${{inputs.model_name}}",
    ]
    for param in spec.params:
        value = params.pop(param.name, None)
        inputs[param.name] = _flag_value(param.default if value is None else value)
        line.append(f"{param.flag} ${{{{inputs.{param.name}}}}}")
    for name, value in sorted(params.items()):
        if value is None or value is False:
            continue
        option = "--" + name.replace("_", "-")
        if value is True:
            line.append(option)
            continue
        inputs[name] = _flag_value(value)
        line.append(f"{option} ${{{{inputs.{name}}}}}")
    inputs["deploy_flag"] = flag
    line.append("${{inputs.deploy_flag}}")

    return command(
        display_name=f"train {model_name if model_name != UNSET else catalog.registered_name(model_id)}",
        description=f"python -m models.{model_id} (runbook job {spec.job_file})",
        experiment_name=experiment_name,
        tags={"salesrisk.model_id": model_id},
        code=str(code),
        command=" ".join(line),
        inputs=inputs,
        outputs={MODEL_OUTPUT: data_output(output)},
        environment=environment(),
        environment_variables=dict(JOB_ENVIRONMENT_VARIABLES),
        compute=compute,
    )


def prepare_command(
    model_id: str = "win_probability",
    sources: Mapping[str, str] | None = None,
    *,
    tenant_id: str | None = None,
    partition_date: str | None = None,
    output: str | None = None,
    experiment_name: str | None = None,
    compute: str = DEFAULT_COMPUTE,
    code: str | os.PathLike = PROJECT_ROOT,
) -> Any:
    """The command node that runs ``python -m models.prepare --model-id <model_id>`` into
    ``outputs.training_prep/prepared.parquet``.

    Its data inputs are exactly the tables the model's preparation reads
    (``catalog.MODELS[model_id].sources``), each mounted on its own: ``sources`` maps them to URIs,
    and a table left out gets its default datastore path (the default path the job files show).
    """
    from azure.ai.ml import command

    if model_id not in catalog.MODELS:
        raise ValueError(f"model_id {model_id!r}: expected one of {', '.join(catalog.MODELS)}")
    tables = catalog.MODELS[model_id].sources
    unread = sorted(set(sources or {}) - set(tables))
    if unread:
        raise ValueError(
            f"prepare {model_id}: it reads {', '.join(tables)}, not {', '.join(unread)}"
        )
    inputs: dict[str, Any] = {}
    line = [LAUNCH, "models.prepare"]
    for table in PREPARE_TABLE_ORDER:
        flag = f"--{table.replace('_', '-')}"
        if table in tables:
            inputs[table] = data_input((sources or {}).get(table) or default_input_path(table))
            line.append(f"{flag} ${{{{inputs.{table}}}}}")
    inputs.update({
        "model_id": model_id,
        "tenant_id": str(tenant_id or UNSET),
        "partition_date": str(partition_date or UNSET),
    })
    line += [
        "--model-id ${{inputs.model_id}}",
        f"--output ${{{{outputs.{PREPARE_OUTPUT}}}}}",
        "--tenant-id ${{inputs.tenant_id}}",
        "--partition-date ${{inputs.partition_date}}",
    ]
    return command(
        display_name=f"prepare {model_id}",
        description="python -m models.prepare (runbook job azml-job-prepare-training.yaml)",
        experiment_name=experiment_name,
        tags={"salesrisk.model_id": model_id, "salesrisk.step": "prepare"},
        code=str(code),
        command=" ".join(line),
        inputs=inputs,
        outputs={PREPARE_OUTPUT: data_output(output)},
        environment=environment(),
        environment_variables=dict(JOB_ENVIRONMENT_VARIABLES),
        compute=compute,
    )
