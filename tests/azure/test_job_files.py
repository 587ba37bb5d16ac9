"""The runbook's job files: current with the builders, loadable by azure-ai-ml, valid offline, and
taking the runbook's ``--set`` overrides exactly as written there."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from azure.ai.ml import load_job

from deployments.azureml import components, generate, pipelines

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "deployments" / "azureml"
ABFS = "abfs://lake@acct.dfs.core.windows.net/ml_training/x"

# The runbook's `az ml job create --file <file> --set ...` overrides, per file (section 2).
RUNBOOK_SETS: dict[str, dict[str, str]] = {
    "azml-job-risk-scoring.yaml": {
        "inputs.training_data.path": ABFS,
        "inputs.model_name.value": "risk-scoring-global",
        "inputs.industry_id.value": "software",
        "inputs.deploy_flag.value": "--deploy",
    },
    "azml-job-lstm-trajectory.yaml": {
        "inputs.training_data.path": ABFS,
        "inputs.sequence_length.value": "30",
        "inputs.deploy_flag.value": "--deploy",
    },
    "azml-job-win-probability.yaml": {"inputs.training_data.path": ABFS, "inputs.deploy_flag.value": "--deploy"},
    "azml-job-prophet.yaml": {"inputs.training_data.path": ABFS, "inputs.deploy_flag.value": "--deploy"},
    "azml-job-anomaly.yaml": {
        "inputs.training_data.path": ABFS,
        "inputs.param_contamination.value": "0.1",
        "inputs.param_n_estimators.value": "100",
        "inputs.deploy_flag.value": "--deploy",
    },
    "azml-job-prepare-training.yaml": {
        "inputs.risk_evaluations.path": ABFS,
        "inputs.ml_outcomes.path": ABFS,
        "inputs.model_id.value": "win_probability",
        "inputs.tenant_id.value": "t1",
        "inputs.partition_date.value": "2025-06-30",
    },
    "azml-pipeline-prepare-then-risk-scoring.yaml": {
        "inputs.risk_evaluations.path": ABFS,
        "inputs.ml_outcomes.path": ABFS,
        "inputs.model_name.value": "risk-scoring-global",
        "inputs.industry_id.value": "software",
        "inputs.deploy_flag.value": "--deploy",
        "settings.default_compute": "azureml:gpu-cluster",
    },
    "azml-pipeline-prepare-then-win-probability.yaml": {
        "inputs.risk_evaluations.path": ABFS,
        "inputs.ml_outcomes.path": ABFS,
        "inputs.model_name.value": "win-probability-model",
        "inputs.deploy_flag.value": "--deploy",
        "settings.default_compute": "azureml:gpu-cluster",
    },
}


def test_the_runbook_names_eight_files_and_the_generator_writes_them() -> None:
    assert sorted(generate.JOB_FILES) == sorted(RUNBOOK_SETS)


@pytest.mark.parametrize("file", generate.JOB_FILES)
def test_job_file_is_current(file: str) -> None:
    path = HERE / file
    assert path.exists(), f"{path} missing: run python -m deployments.azureml.generate"
    assert path.read_text(encoding="utf-8") == generate.render(file), (
        f"{file} is stale: run python -m deployments.azureml.generate"
    )


@pytest.mark.parametrize("file", generate.JOB_FILES)
def test_job_file_loads_and_validates_offline(file: str) -> None:
    job = load_job(HERE / file)
    result = job._validate()
    assert result.passed, result.error_messages
    # code is the project root, wherever the file is submitted from
    holders = [job] if hasattr(job, "code") else [node.component for node in job.jobs.values()]
    assert holders and all((Path(h._base_path) / h.code).resolve() == ROOT for h in holders)


@pytest.mark.parametrize("file", generate.JOB_FILES)
def test_runbook_set_overrides_apply(file: str) -> None:
    overrides = RUNBOOK_SETS[file]
    job = load_job(HERE / file, params_override=[{key: value} for key, value in overrides.items()])
    assert job._validate().passed
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[0] == "settings":
            assert job.settings.default_compute == value.removeprefix("azureml:")
            continue
        entry = job.inputs[parts[1]]
        actual = entry.path if parts[2] == "path" else getattr(entry, "_data", entry)
        assert str(actual) == value, f"{file}: --set {key}={value} gave {actual!r}"


def test_load_job_is_strict_so_the_checks_above_can_fail() -> None:
    """azure-ai-ml's schema rejects what az ml would reject: a misspelled --set key or field."""
    from marshmallow.exceptions import ValidationError

    for override in ({"inputs.deploy_flag.valeu": "--deploy"}, {"inputs.training_data.paht": ABFS}):
        with pytest.raises(ValidationError):
            load_job(HERE / "azml-job-anomaly.yaml", params_override=[override])


@pytest.mark.parametrize("model_id", sorted(components.TRAINER_JOBS))
def test_trainer_job_runs_the_trainer_command_line(model_id: str) -> None:
    spec = components.TRAINER_JOBS[model_id]
    document = yaml.safe_load((HERE / spec.job_file).read_text())
    words = shlex.split(document["command"])
    assert words[:4] == ["python", "-m", "deployments.azureml.launch", f"models.{model_id}"]
    flags = [w for w in words if w.startswith("--")]
    assert flags[:3] == ["--training-data", "--output", "--model-name"]
    assert flags[3:] == [p.flag for p in spec.params]
    assert set(re.findall(r"\$\{\{inputs\.(\w+)\}\}", document["command"])) == set(document["inputs"])
    assert document["inputs"]["deploy_flag"] == {"value": components.REGISTER}
    assert document["compute"] == f"azureml:{components.DEFAULT_COMPUTE}"


def test_every_flag_is_one_the_trainer_accepts(tmp_path: Path) -> None:
    """Each trainer's own parser (its --help, all five in one interpreter) knows each flag its
    job passes."""
    import subprocess
    import sys

    code = (
        "import contextlib, io, runpy, sys\n"
        "for name in sys.argv[1:]:\n"
        "    sys.argv = [name, '--help']\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "        runpy.run_module(name, run_name='__main__')\n"
        "    print('=====', name); print(out.getvalue())\n"
    )
    modules = [f"models.{model_id}" for model_id in components.TRAINER_JOBS]
    done = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    helps = dict(part.split("\n", 1) for part in done.stdout.split("===== ")[1:])
    for model_id, spec in components.TRAINER_JOBS.items():
        text = helps[f"models.{model_id}"]
        for flag in ["--training-data", "--output", "--model-name", "--register", "--deploy", *(p.flag for p in spec.params)]:
            assert flag in text, f"python -m models.{model_id} does not accept {flag}"


def test_pipelines_chain_prepare_into_train() -> None:
    for model_id, file in pipelines.PIPELINE_FILES.items():
        job = load_job(HERE / file)
        assert set(job.jobs) == {"prepare", "train"}
        assert job.jobs["prepare"].inputs["model_id"]._data == model_id
        assert job.jobs["train"].inputs["training_data"].path == "${{parent.jobs.prepare.outputs.training_prep}}"
        assert set(job.outputs) == {components.PREPARE_OUTPUT, components.MODEL_OUTPUT}


def test_conda_spec_pins_agree_with_pyproject() -> None:
    pins = {}
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        name, _, version = requirement.partition("==")
        pins[name.strip().lower()] = version.strip()
    conda = yaml.safe_load(components.CONDA_FILE.read_text())
    pip = next(item["pip"] for item in conda["dependencies"] if isinstance(item, dict))
    conda_pins = {}
    for requirement in pip:
        name, _, version = requirement.partition("==")
        conda_pins[name.strip().lower()] = version.strip()
    assert "python=3.11" in conda["dependencies"]
    for name in ("torch", "numpy", "pandas", "polars", "scikit-learn", "catboost", "neuralprophet", "mlflow", "adlfs", "azure-ai-ml"):
        assert name in conda_pins, f"{name} missing from {components.CONDA_FILE}"
    for name, version in conda_pins.items():
        if name in pins and pins[name]:
            assert version == pins[name], f"{name}: conda.yaml pins {version}, pyproject.toml {pins[name]}"
    assert "azureml-mlflow" in conda_pins  # MLflow in the job logs to the job's run
    assert "prefect" not in conda_pins
