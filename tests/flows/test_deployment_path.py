"""The path docs/runbook.md tells users to take, against a real `prefect server start` on loopback.

server -> work pool -> `prefect deploy --all` -> `prefect deployment run 'retrain-all/weekly'`
-> `prefect worker start --run-once`; then the run must be Completed and the schedule present.

The same full run (all five models, on a small generated lake) is the secret-leak check of the
reliability issue: with an endpoint key, a storage connection string and an Azure client secret
set, none of them may appear in any file the run left (Prefect's and MLflow's databases, logs,
artifacts, the lake, the endpoint map) nor in what the commands printed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.checkout_guard import snapshot
from tests.conformance.steps import FAST_PARAMS

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
POOL = "salesrisk-process"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SECRET_SETTINGS = {
    "SALESRISK_ENDPOINT_KEY": lambda: secrets.token_urlsafe(32),
    "AZURE_STORAGE_CONNECTION_STRING": lambda: (
        "DefaultEndpointsProtocol=https;AccountName=salesriskleakcheck;"
        f"AccountKey={secrets.token_urlsafe(48)};EndpointSuffix=core.windows.net"
    ),
    "AZURE_CLIENT_SECRET": lambda: secrets.token_urlsafe(32),  # read by azure-identity only
}


@pytest.fixture()
def server_env(tmp_path: Path, small_lake_template: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    venv_bin = str(Path(sys.executable).parent)
    shutil.copytree(small_lake_template, tmp_path / "lake")
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
        **{name: make() for name, make in SECRET_SETTINGS.items()},
    }
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [f"{venv_bin}/prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 300  # a fresh database migrates first: minutes on a loaded machine
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(1)
        else:
            pytest.fail("prefect server did not become healthy in 300 s")
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def prefect(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """Run a prefect command as a user would; its output is kept beside the run for the leak scan."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), *args],
        env=env, cwd=PROJECT, capture_output=True, text=True, timeout=timeout,
    )
    with open(Path(env["SALESRISK_HOME"]).parent / "commands.log", "a") as log:
        log.write(f"$ prefect {' '.join(args)}\n{done.stdout}\n{done.stderr}\n")
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def files_written(root: Path, since: float) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.stat().st_mtime >= since]


def files_holding(paths: list[Path], needle: str) -> list[Path]:
    raw = needle.encode()
    return [p for p in paths if raw in p.read_bytes()]


def check_endpoint_key(env: dict[str, str], root: Path) -> None:
    """The deployed endpoints answer only with the key (the server's log joins the leak scan)."""
    port = free_port()
    with open(root / "endpoint-server.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "deployments.serve", "--port", str(port)],
                                  env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            key = env["SALESRISK_ENDPOINT_KEY"]
            listed = httpx.get(f"{url}/endpoints", headers={"Authorization": f"Bearer {key}"}, timeout=10)
            assert listed.status_code == 200, listed.text
            assert {"win_probability", "anomaly", "risk_scoring_global"} <= set(json.dumps(listed.json()).split('"'))
            body = {"input_data": {"columns": ["x"], "data": [[1]]}}
            assert httpx.post(f"{url}/score/anomaly", json=body, timeout=10).status_code == 401
            wrong = {"Authorization": f"Bearer {key[::-1]}"}
            assert httpx.post(f"{url}/score/anomaly", json=body, headers=wrong, timeout=10).status_code == 401
        finally:
            server.terminate()
            server.wait(timeout=30)


def poll_children(api: str, parent: str, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = httpx.post(f"{api}/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [parent]}}},
                           timeout=10).json()
        if len(found) >= 5 or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def recorded_tasks(api: str, flow_run: str, names: tuple[str, ...], timeout: float = 60) -> dict[str, list[str]]:
    """Task name -> state types of a flow run's task runs, once the recorder wrote them all."""
    deadline = time.monotonic() + timeout
    while True:
        runs = httpx.post(f"{api}/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run]}}}, timeout=10).json()
        tasks: dict[str, list[str]] = {}
        for run in runs:
            tasks.setdefault(run["name"].split(" ")[0], []).append(run["state_type"])
        final = all(t in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} for states in tasks.values() for t in states)
        if (final and set(names) <= set(tasks)) or time.monotonic() > deadline:
            return tasks
        time.sleep(0.5)


def test_deploy_run_schedule_and_no_secret_leaks(server_env: dict[str, str]) -> None:
    root = Path(server_env["SALESRISK_HOME"]).parent
    started = time.time()
    checkout_before = snapshot(PROJECT)  # the worker runs flows from the checkout
    prefect(server_env, "work-pool", "create", POOL, "--type", "process")
    prefect(server_env, "deploy", "--all")
    fast = json.dumps({"trainer_options_by_model": FAST_PARAMS})  # the path is the point, not the fits
    out = prefect(server_env, "deployment", "run", "retrain-all/weekly", "--params", fast)
    flow_run_id = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)
    prefect(server_env, "worker", "start", "--pool", POOL, "--run-once", timeout=900)

    api = server_env["PREFECT_API_URL"]
    run = httpx.get(f"{api}/flow_runs/{flow_run_id}", timeout=10).json()
    assert run["state"]["type"] == "COMPLETED", json.dumps(run["state"], indent=1)

    deployment = httpx.get(f"{api}/deployments/name/retrain-all/weekly", timeout=10).json()
    crons = [s["schedule"].get("cron") for s in deployment["schedules"]]
    assert "0 3 * * 1" in crons
    daily = httpx.get(f"{api}/deployments/name/backfill-synthetic/daily", timeout=10).json()
    assert [s["schedule"].get("cron") for s in daily["schedules"]] == ["0 1 * * *"]

    check_endpoint_key(server_env, root)

    # Task runs on the worker path: every model's pipeline tasks, as the UI lists them.
    children = poll_children(api, flow_run_id)
    assert len(children) == 5, [c["name"] for c in children]
    for child in children:
        tasks = recorded_tasks(api, child["id"], ("fetch", "prepare", "train", "evaluate", "register", "deploy"))
        assert {"fetch", "prepare", "train", "evaluate", "register", "deploy"} <= set(tasks), (child["name"], tasks)
        assert all(state == "COMPLETED" for states in tasks.values() for state in states), (child["name"], tasks)

    # Everything the run wrote: this test's folder (Prefect DB with logs, artifacts and
    # parameters; MLflow DB and its mlartifacts/ beside it; lake with inference logs; endpoint
    # state and map; server and command output).
    written = files_written(root, started)
    # ... and nothing in the checkout's own state: a local store's artifacts go beside its file.
    assert snapshot(PROJECT) == checkout_before, "the run wrote into the checkout's lake/mlflow.db/mlartifacts/..."
    assert len(files_holding(written, flow_run_id)) >= 1, "the scan must see inside Prefect's database"
    assert files_holding(written, "win-probability-model"), "the scan must see the registered models"
    for name in SECRET_SETTINGS:
        leaked = files_holding(written, server_env[name])
        assert not leaked, f"{name} leaked into {[str(p) for p in leaked]}"
