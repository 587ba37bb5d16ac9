"""`python flows/<file>.py` starts its own Prefect API first (flows/local_api.py) and stops it after."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]


def test_a_flow_script_runs_on_its_own_local_api_and_stops_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update({
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "SALESRISK_HOME": str(tmp_path / "home"),
        "SALESRISK_ENDPOINT_MAP": str(tmp_path / "endpoints.yaml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    })
    done = subprocess.run(
        [sys.executable, str(PROJECT / "flows" / "rollback.py"), "--endpoint", "win_probability"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    # Nothing was ever deployed, so the flow fails, with its reason, after running on the API.
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "rollback-model: Failed" in done.stderr and "win_probability" in done.stderr
    assert "Beginning flow run" in done.stderr + done.stdout
    assert "View at" not in done.stderr + done.stdout  # the API serves no UI to link to
    assert (tmp_path / "prefect" / "prefect.db").exists()  # the run is in PREFECT_HOME's database
    # The API process is gone with the script.
    ours = subprocess.run(["pgrep", "-f", re.escape(f"server start --host 127.0.0.1")], capture_output=True, text=True)
    for pid in ours.stdout.split():
        cmdline = Path(f"/proc/{pid}/environ").read_bytes() if Path(f"/proc/{pid}/environ").exists() else b""
        assert str(tmp_path).encode() not in cmdline, f"the local API (pid {pid}) outlived its script"
