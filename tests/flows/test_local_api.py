"""`python flows/<file>.py` starts its own Prefect API first (flows/local_api.py): with
SALESRISK_LOCAL_API_IDLE_SECONDS=0 it stops the API at exit; otherwise the next run uses it, and
the API exits by itself once idle that long."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]


def script_env(tmp_path: Path, idle_seconds: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update({
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "SALESRISK_HOME": str(tmp_path / "home"),
        "SALESRISK_ENDPOINT_MAP": str(tmp_path / "endpoints.yaml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "SALESRISK_LOCAL_API_IDLE_SECONDS": str(idle_seconds),
    })
    return env


def rollback(tmp_path: Path, idle_seconds: float) -> subprocess.CompletedProcess[str]:
    """A short flow script; nothing was ever deployed, so it fails, with its reason, after running on the API."""
    return subprocess.run(
        [sys.executable, str(PROJECT / "flows" / "rollback.py"), "--endpoint", "win_probability"],
        env=script_env(tmp_path, idle_seconds), cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )


def test_a_flow_script_runs_on_its_own_local_api_and_stops_it(tmp_path: Path) -> None:
    done = rollback(tmp_path, idle_seconds=0)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "rollback-model: Failed" in done.stderr and "win_probability" in done.stderr
    assert "Beginning flow run" in done.stderr + done.stdout
    assert "View at" not in done.stderr + done.stdout  # the API serves no UI to link to
    assert (tmp_path / "prefect" / "prefect.db").exists()  # the run is in PREFECT_HOME's database
    # The API process is gone with the script.
    assert not (tmp_path / "prefect" / "local-api.json").exists()
    ours = subprocess.run(["pgrep", "-f", re.escape("flows.api_server")], capture_output=True, text=True)
    for pid in ours.stdout.split():
        cmdline = Path(f"/proc/{pid}/environ").read_bytes() if Path(f"/proc/{pid}/environ").exists() else b""
        assert str(tmp_path).encode() not in cmdline, f"the local API (pid {pid}) outlived its script"


def test_the_next_run_uses_the_api_left_up_which_exits_once_idle(tmp_path: Path) -> None:
    record = tmp_path / "prefect" / "local-api.json"
    first = rollback(tmp_path, idle_seconds=4)
    assert first.returncode == 1 and "rollback-model: Failed" in first.stderr, first.stderr[-2000:]
    assert "The local Prefect API stays up at" in first.stderr
    pid = json.loads(record.read_text())["pid"]
    try:
        second = rollback(tmp_path, idle_seconds=4)
        assert second.returncode == 1 and "rollback-model: Failed" in second.stderr, second.stderr[-2000:]
        assert "started by an earlier run" in second.stderr
        assert json.loads(record.read_text())["pid"] == pid
        # both runs are in the one database the reused API writes
        reader = subprocess.run(
            [sys.executable, "-c", "import asyncio; from prefect.client.orchestration import get_client\n"
             "async def main():\n    async with get_client() as c: print(len(await c.read_flow_runs()))\n"
             "asyncio.run(main())"],
            env={**script_env(tmp_path, 4), "PREFECT_API_URL": json.loads(record.read_text())["url"]},
            capture_output=True, text=True, timeout=120)
        assert reader.stdout.strip().splitlines()[-1] == "2", reader.stdout + reader.stderr[-2000:]
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{pid}").exists(), "the idle API did not exit"
        assert not record.exists()  # the next run starts a new one instead of reading a dead address
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGTERM)


def test_an_api_that_stops_with_its_run_exits_when_the_run_is_killed(tmp_path: Path) -> None:
    """With an idle time of 0 nothing else ends the API: a run killed before its exit handlers
    (SIGKILL, or a test's timeout) must not leave it running."""
    starter = subprocess.Popen(
        [sys.executable, "-c", "from flows import local_api\nlocal_api.start()\nlocal_api.wait()\n"
         "print('up', flush=True)\nimport time\ntime.sleep(600)\n"],
        env={**script_env(tmp_path, idle_seconds=0), "PYTHONPATH": str(PROJECT)}, cwd=tmp_path,
        stdout=subprocess.PIPE, text=True,
    )
    record = tmp_path / "prefect" / "local-api.json"
    try:
        assert starter.stdout is not None and starter.stdout.readline().strip() == "up"
        pid = json.loads(record.read_text())["pid"]
        starter.kill()
        starter.wait()
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{pid}").exists(), "the API outlived the run that started it"
        assert not record.exists()
    finally:
        starter.kill()
        if record.exists():
            os.kill(json.loads(record.read_text())["pid"], signal.SIGTERM)
