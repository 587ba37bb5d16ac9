"""The path docs/runbook.md tells users to take, against a real `prefect server start` on loopback.

server -> work pool -> `prefect deploy --all` -> `prefect deployment run 'retrain-all/weekly'`
-> `prefect worker start --run-once`; then the run must be Completed and the schedule present.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
POOL = "salesrisk-process"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "SALESRISK_PROJECT_DIR": str(PROJECT),
        "SALESRISK_LAKE": str(tmp_path / "lake"),
        "SALESRISK_HOME": str(tmp_path / "home"),
        "SALESRISK_ENDPOINT_MAP": str(tmp_path / "endpoints.yaml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [f"{venv_bin}/prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(1)
        else:
            pytest.fail("prefect server did not become healthy in 120 s")
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def prefect(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), *args],
        env=env, cwd=PROJECT, capture_output=True, text=True, timeout=timeout,
    )
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_deploy_run_and_schedule_on_a_real_server(server_env: dict[str, str]) -> None:
    prefect(server_env, "work-pool", "create", POOL, "--type", "process")
    prefect(server_env, "deploy", "--all")
    out = prefect(server_env, "deployment", "run", "retrain-all/weekly", "--param", 'models=["anomaly"]')
    flow_run_id = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)
    prefect(server_env, "worker", "start", "--pool", POOL, "--run-once", timeout=600)

    api = server_env["PREFECT_API_URL"]
    run = httpx.get(f"{api}/flow_runs/{flow_run_id}", timeout=10).json()
    assert run["state"]["type"] == "COMPLETED", json.dumps(run["state"], indent=1)

    deployment = httpx.get(f"{api}/deployments/name/retrain-all/weekly", timeout=10).json()
    crons = [s["schedule"].get("cron") for s in deployment["schedules"]]
    assert "0 3 * * 1" in crons
    daily = httpx.get(f"{api}/deployments/name/backfill-synthetic/daily", timeout=10).json()
    assert [s["schedule"].get("cron") for s in daily["schedules"]] == ["0 1 * * *"]
