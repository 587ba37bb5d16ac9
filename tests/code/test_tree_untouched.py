"""`make test` leaves the checkout's own state alone, and what `make run` writes is ignored by git.

A representative part of the suite (trainers logging to MLflow, reports, deploys and rollbacks of
the local endpoints, a flow on the Prefect test harness, a flow script on its own API) runs in a
child pytest from the checkout, with the environment a developer's shell would have (no test
settings). The state folders of the checkout must be byte-identical before and after, and must not
appear if they were not there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
STATE = ("lake", "mlflow.db", "mlartifacts", ".prefect", ".salesrisk", "config")
REPRESENTATIVE = (
    "tests/model/test_anomaly.py::test_cli_writes_runbook_metrics_logged_to_mlflow",
    "tests/monitoring/test_reports.py::test_training_run_carries_its_report_plots_and_the_flow_artifact_links_them[anomaly]",
    "tests/serving/test_deploy_offline.py::test_first_deploy_goes_blue_and_writes_the_endpoint_map",
    "tests/serving/test_deploy_offline.py::test_second_deploy_goes_green_and_rollback_returns_to_blue",
    "tests/flows/test_orchestration.py::test_contract_error_fails_at_once_with_its_message",
    "tests/flows/test_local_api.py",
)


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under the state paths: relative path -> content digest (or 'dir')."""
    found: dict[str, str] = {}
    for name in STATE:
        top = root / name
        paths = [top, *sorted(top.rglob("*"))] if top.is_dir() else [top] if top.exists() else []
        for path in paths:
            key = str(path.relative_to(root))
            if path.is_dir():
                found[key] = "dir"
            else:
                with open(path, "rb") as handle:
                    found[key] = hashlib.file_digest(handle, "sha256").hexdigest()
    return found


def developer_environment() -> dict[str, str]:
    """This process's environment without what tests/conftest.py set: the child's conftest must
    isolate the run on its own, or its writes land in the checkout and this test sees them."""
    ours = ("SALESRISK_", "MLFLOW_", "PREFECT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours) and k != "MPLCONFIGDIR"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def test_a_representative_test_run_leaves_the_checkouts_state_byte_identical() -> None:
    before = snapshot(PROJECT)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *REPRESENTATIVE],
        cwd=PROJECT, env=developer_environment(), capture_output=True, text=True, timeout=1500,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    after = snapshot(PROJECT)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), f"added {added[:20]}, removed {removed[:20]}, changed {changed[:20]}"


@pytest.mark.skipif(shutil.which("git") is None or not (PROJECT / ".git").exists(), reason="not a git checkout")
def test_what_make_run_writes_is_ignored_by_git() -> None:
    written = ["lake/risk_evaluations/part-0.parquet", "mlflow.db", "mlflow.db-journal", "mlartifacts/1/run/artifacts/x",
               ".prefect/prefect.db", ".prefect/local-api.log", ".salesrisk/endpoints/endpoint.key",
               "config/endpoints.yaml", "config/.endpoints.yaml.lock", ".cache/mlflow-ui.log",
               "lightning_logs/version_0/x", "catboost_info/x"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *written], cwd=PROJECT, capture_output=True, text=True)
    ignored = set(done.stdout.split())
    assert set(written) <= ignored, f"not ignored by .gitignore: {sorted(set(written) - ignored)}"
