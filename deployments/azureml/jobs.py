"""Submit a trainer, preparation or pipeline job to Azure ML and follow it to its end.

The train and prepare tasks call :func:`submit_training` and :func:`submit_prepare` when
``SALESRISK_COMPUTE=azureml``; both build their job with :mod:`deployments.azureml.components`
(the same builders that write the runbook's job files) and hand it to :func:`submit_and_wait`,
which is the only code that talks to ``client.jobs``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployments.azureml import client as azure_client
from deployments.azureml import components
from deployments.compute import StepFailedError, TransientComputeError
from salesrisk import catalog
from salesrisk.settings import get_settings

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

log = logging.getLogger("salesrisk.azureml")

COMPLETED = "Completed"
# Azure ML's terminal job states (azure.ai.ml RunHistoryConstants.TERMINAL_STATUSES).
TERMINAL_STATES = frozenset({COMPLETED, "Failed", "Canceled", "NotResponding", "Paused"})
INTERRUPTED_STATES = frozenset({"Canceled", "NotResponding", "Paused"})
LOG_TAIL_LINES = 40


@dataclass
class AzureJobResult:
    """A finished Azure ML job: where its output is and what the trainer measured."""

    job_name: str
    status: str
    studio_url: str | None
    output_uri: str | None
    metrics: dict[str, float] = field(default_factory=dict)


class AzureJobError(StepFailedError):
    """The job ended in a state other than Completed; the message has its Studio URL and log tail."""

    def __init__(self, message: str, *, job_name: str, status: str, studio_url: str | None, log_tail: str = ""):
        super().__init__(message)
        self.job_name = job_name
        self.status = status
        self.studio_url = studio_url
        self.log_tail = log_tail


class AzureJobInterrupted(AzureJobError, TransientComputeError):
    """Canceled, not responding or paused: another try may succeed."""


def submit_and_wait(
    job: Any,
    client: MLClient | None = None,
    *,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
) -> AzureJobResult:
    """Submit ``job`` and follow it with azure-ai-ml's own ``jobs.stream`` (which prints the job's
    log as it runs and returns when the job is in a terminal state).

    Raises :class:`AzureJobError` (with the Studio URL and the last lines of the job's log) unless
    it completed. ``output_uri`` is the job's ``model_output`` (trainers) or ``training_prep``
    (preparation) as the service reports it; ``metrics`` are the trainer's ``metrics.json``.
    """
    from azure.ai.ml.exceptions import JobException

    client = azure_client.resolve(client)
    logger = logger or log
    submitted = client.jobs.create_or_update(job)
    name = submitted.name
    logger.info("Azure ML job %s submitted (%s): %s", name, _studio_url(submitted) or "no Studio URL", submitted.status)
    try:
        client.jobs.stream(name)
    except JobException as error:  # stream raises on Failed; the status below says which end it was
        logger.info("Azure ML job %s: %s", name, str(error).strip()[:500])
    current = client.jobs.get(name)
    status, studio_url = current.status, _studio_url(current) or _studio_url(submitted)
    logger.info("Azure ML job %s: %s", name, status)
    if status != COMPLETED:
        tail = log_tail(client, name, pipeline=_is_pipeline(current))
        error = AzureJobInterrupted if status in INTERRUPTED_STATES else AzureJobError
        raise error(
            f"Azure ML job {name} ended {status}. Studio: {studio_url}\n"
            f"--- last lines of the job's log ---\n{tail}",
            job_name=name,
            status=str(status),
            studio_url=studio_url,
            log_tail=tail,
        )
    output_name = _main_output(job)
    output_uri = _output_uri(current, name, output_name) if output_name else None
    metrics = read_metrics(client, name) if output_name == components.MODEL_OUTPUT else {}
    logger.info("Azure ML job %s completed: %s %s", name, output_uri, metrics)
    return AzureJobResult(name, str(status), studio_url, output_uri, metrics)


def submit_training(
    model_id: str,
    training_data: str,
    output: str | None,
    params: Mapping[str, Any],
    experiment_name: str,
    client: MLClient | None = None,
    *,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
) -> AzureJobResult:
    """Run ``python -m models.<model_id>`` as an Azure ML command job on ``AZURE_ML_COMPUTE``.

    ``params`` are the trainer's options by runbook name (``model_name``, ``industry_id``,
    ``sequence_length``, ``param_contamination``, ``param_n_estimators``, ``features``, ...);
    ``register=True`` / ``deploy=True`` make the job register / deploy itself (default: neither,
    the flow registers with :func:`deployments.azureml.registration.register_job_model`).
    ``output`` is a datastore or ``abfs://`` folder, or ``None`` for the job's default location.
    """
    job = components.trainer_command(
        model_id,
        training_data,
        params=params,
        output=output,
        experiment_name=experiment_name,
        compute=get_settings().azure_ml_compute,
    )
    return submit_and_wait(job, client, logger=logger)


def submit_prepare(
    model_id: str,
    sources: Mapping[str, str],
    output: str | None = None,
    *,
    tenant_id: str | None = None,
    partition_date: str | None = None,
    experiment_name: str = "prepare-training",
    client: MLClient | None = None,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
) -> AzureJobResult:
    """Run ``python -m models.prepare`` as an Azure ML command job.

    ``sources`` maps exactly the tables the model's preparation reads
    (``catalog.MODELS[model_id].sources``) to URIs; each is mounted on its own. The result's
    ``output_uri`` is the folder holding ``prepared.parquet``.
    """
    expected = catalog.MODELS[model_id].sources
    missing = [table for table in expected if not sources.get(table)]
    unread = sorted(set(sources) - set(expected))
    if missing or unread:
        raise ValueError(
            f"submit_prepare {model_id}: expected URIs for exactly {', '.join(expected)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; not read by this model: {', '.join(unread)}" if unread else "")
        )
    job = components.prepare_command(
        model_id,
        {table: sources[table] for table in expected},
        tenant_id=tenant_id,
        partition_date=partition_date,
        output=output,
        experiment_name=experiment_name,
        compute=get_settings().azure_ml_compute,
    )
    return submit_and_wait(job, client, logger=logger)


def submit_pipeline(
    model_id: str,
    sources: Mapping[str, str],
    params: Mapping[str, Any],
    experiment_name: str,
    client: MLClient | None = None,
    *,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
) -> AzureJobResult:
    """Run the runbook's pipeline "prepare then train ``model_id``" (risk scoring or win
    probability) as one Azure ML pipeline job; the result is the training step's."""
    from deployments.azureml import pipelines

    job = pipelines.prepare_then_train(
        model_id,
        sources.get(catalog.RISK_EVALUATIONS),
        sources.get(catalog.ML_OUTCOMES),
        params=params,
        experiment_name=experiment_name,
        compute=get_settings().azure_ml_compute,
    )
    return submit_and_wait(job, client, logger=logger)


def read_metrics(client: MLClient, job_name: str) -> dict[str, float]:
    """The trainer's ``metrics.json`` from the job's ``model_output`` (downloaded, then parsed)."""
    with tempfile.TemporaryDirectory(prefix="salesrisk-azureml-") as tmp:
        client.jobs.download(job_name, download_path=tmp, output_name=components.MODEL_OUTPUT)
        found = sorted(Path(tmp).rglob("metrics.json"))
        if not found:
            raise AzureJobError(
                f"Azure ML job {job_name} completed but its {components.MODEL_OUTPUT} has no metrics.json",
                job_name=job_name,
                status=COMPLETED,
                studio_url=None,
            )
        data = json.loads(found[0].read_text(encoding="utf-8"))
    return {str(key): float(value) for key, value in data.items()}


def log_tail(client: MLClient, job_name: str, lines: int = LOG_TAIL_LINES, *, pipeline: bool = False) -> str:
    """The last ``lines`` of a job's user log; for a pipeline, of its first failed step's log."""
    if pipeline:
        for child in client.jobs.list(parent_job_name=job_name):
            if child.status not in (COMPLETED, None) and child.status in TERMINAL_STATES:
                return f"[step {child.display_name or child.name}]\n" + log_tail(client, child.name, lines)
    with tempfile.TemporaryDirectory(prefix="salesrisk-azureml-logs-") as tmp:
        try:
            client.jobs.download(job_name, download_path=tmp)
        except Exception as error:  # the tail is a courtesy: never hide the job's own failure
            return f"(could not download the log of {job_name}: {error})"
        files = _log_files(Path(tmp))
        if not files:
            return f"(job {job_name} left no log files)"
        text = files[0].read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _log_files(root: Path) -> list[Path]:
    """User logs first (``user_logs/std_log*.txt``), then any other ``.txt``/``.log`` file."""
    candidates = [p for p in root.rglob("*") if p.is_file() and p.suffix in (".txt", ".log")]
    return sorted(candidates, key=lambda p: ("user_logs" not in p.parts, "std_log" not in p.name, str(p)))


def _studio_url(job: Any) -> str | None:
    url = getattr(job, "studio_url", None)
    return url if isinstance(url, str) else None


def _is_pipeline(job: Any) -> bool:
    return getattr(job, "type", None) == "pipeline"


def _main_output(job: Any) -> str | None:
    outputs = getattr(job, "outputs", None) or {}
    for name in (components.MODEL_OUTPUT, components.PREPARE_OUTPUT):
        if name in outputs:
            return name
    return next(iter(outputs), None)


def _output_uri(job: Any, job_name: str, output_name: str) -> str:
    """The output's datastore path as the service reports it, else its ``azureml://jobs`` URI."""
    output = (getattr(job, "outputs", None) or {}).get(output_name)
    path = getattr(output, "path", None)
    if isinstance(path, str) and path:
        return path
    return f"azureml://jobs/{job_name}/outputs/{output_name}/paths/"
