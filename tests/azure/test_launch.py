"""The job-side launcher: unset optional inputs vanish, the job's workspace becomes AZURE_ML_*."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from deployments.azureml.launch import drop_unset, workspace_from_job


def test_unset_options_and_deploy_flag_are_dropped() -> None:
    args = ["--training-data", "/mnt/in", "--model-name", "none", "--industry-id", "None", "--seed", "7", "none"]
    assert drop_unset(args) == ["--training-data", "/mnt/in", "--seed", "7"]
    assert drop_unset(["--output", "/mnt/out", "--deploy"]) == ["--output", "/mnt/out", "--deploy"]
    assert drop_unset(["--tenant-id", "t-none", "--register"]) == ["--tenant-id", "t-none", "--register"]


def test_workspace_comes_from_the_job_unless_set() -> None:
    environ = {
        "AZUREML_ARM_SUBSCRIPTION": "sub",
        "AZUREML_ARM_RESOURCEGROUP": "rg",
        "AZUREML_ARM_WORKSPACE_NAME": "ws",
        "AZURE_ML_WORKSPACE_NAME": "explicit",
    }
    workspace_from_job(environ)
    assert environ["AZURE_ML_SUBSCRIPTION_ID"] == "sub"
    assert environ["AZURE_ML_RESOURCE_GROUP"] == "rg"
    assert environ["AZURE_ML_WORKSPACE_NAME"] == "explicit"


def test_launcher_runs_the_module_with_the_cleaned_arguments(tmp_path: Path) -> None:
    """``--help`` reaches the module's own parser; ``--n-opportunities none`` (an int option,
    which argparse would refuse before printing help) is dropped on the way."""
    done = subprocess.run(
        [sys.executable, "-m", "deployments.azureml.launch", "models.synthetic", "--n-opportunities", "none", "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "python -m models.synthetic" in done.stdout and "--output-path" in done.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "deployments.azureml.launch", "os", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0 and "usage" in refused.stderr
