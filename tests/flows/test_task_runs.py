"""What the Prefect UI shows after `make run` twice: every model's tasks, with their final states.

`python flows/retrain_all.py` runs twice, as `make run` runs it, in a fresh PREFECT_HOME: the first
starts the local API (flows/local_api.py), which stays up idle, and the rerun uses it. Then, as `make ui` would, an API on that home is read over REST, the way
the UI reads it: for every model, task runs for fetch, prepare, train, evaluate, register and
deploy in final states on the first run, and prepare and train Cached on the unchanged rerun. The
reads wait for what they expect (with a deadline) instead of reading once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conformance.steps import FAST_PARAMS

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
PIPELINE = ("fetch", "prepare", "train", "evaluate", "register", "deploy")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
MODELS = 5
DEADLINE = 60.0  # seconds to wait for the records


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def script_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update({
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "SALESRISK_HOME": str(root / ".salesrisk"),
        "SALESRISK_LAKE": str(root / "lake"),
        "SALESRISK_ENDPOINT_MAP": str(root / "config" / "endpoints.yaml"),
    })
    return env


def make_run(root: Path) -> str:
    """One `make run` with the default idle time of the API it starts or finds; its stderr."""
    fast = ["--trainer-options-by-model", json.dumps(FAST_PARAMS)]  # the task runs are the point, not the fits
    env = {**script_env(root), "SALESRISK_LOCAL_API_IDLE_SECONDS": "300"}
    done = subprocess.run([sys.executable, str(PROJECT / "flows" / "retrain_all.py"), *fast], env=env, cwd=root,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stderr


def local_api_pid(root: Path) -> int:
    return int(json.loads((root / ".prefect" / "local-api.json").read_text())["pid"])


@pytest.fixture()
def two_runs(tmp_path: Path, small_lake_template: Path) -> Iterator[str]:
    """Two `make run`s, then an API on their PREFECT_HOME (as `make ui` starts it): its URL."""
    shutil.copytree(small_lake_template, tmp_path / "lake")
    try:
        assert "The local Prefect API stays up at" in make_run(tmp_path)
        first = local_api_pid(tmp_path)
        assert "started by an earlier run" in make_run(tmp_path)
        assert local_api_pid(tmp_path) == first  # the rerun used the API the first run left up
        # The API records task runs from events a few seconds after a run ends (longer on a busy
        # machine); stopping it before then loses them. Wait for both runs' records, as the API
        # left idle for 300 s would have them, then stop it.
        live = json.loads((tmp_path / ".prefect" / "local-api.json").read_text())["url"]
        parents = post(live, "/flow_runs/filter", {"flows": {"name": {"any_": ["retrain-all"]}}})
        for parent in parents:
            poll(lambda: pipeline_states(live, parent["id"]), lambda s: complete(s, PIPELINE[:-1]))
    finally:
        if (tmp_path / ".prefect" / "local-api.json").exists():
            os.kill(local_api_pid(tmp_path), signal.SIGTERM)
    port = free_port()
    env = script_env(tmp_path)
    with open(tmp_path / "reader.log", "wb") as log:
        reader = subprocess.Popen(
            [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1", "--port",
             str(port), "--no-ui", "--no-services"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert reader.poll() is None, (tmp_path / "reader.log").read_text()[-3000:]
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield api
    finally:
        reader.terminate()
        reader.wait(timeout=30)


def post(api: str, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    answer = httpx.post(f"{api}{path}", json=body, timeout=30)
    answer.raise_for_status()
    return answer.json()


def poll(read: Callable[[], Any], ready: Callable[[Any], bool]) -> Any:
    """Read until ``ready`` holds or the deadline passes; the caller asserts on the last read."""
    deadline = time.monotonic() + DEADLINE
    while True:
        value = read()
        if ready(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def pipeline_states(api: str, parent_id: str) -> dict[str, dict[str, list[str]]]:
    """Per model sub-flow of a retrain-all run: task name -> state names of its task runs."""
    children = post(api, "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [parent_id]}}})
    found: dict[str, dict[str, list[str]]] = {}
    for child in children:
        runs = post(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [child["id"]]}}})
        tasks: dict[str, list[str]] = {}
        for run in runs:
            tasks.setdefault(run["name"].split(" ")[0], []).append(f"{run['state_type']}:{run['state_name']}")
        found[child["name"]] = tasks
    return found


def complete(states: dict[str, dict[str, list[str]]], expected: tuple[str, ...]) -> bool:
    return len(states) == MODELS and all(
        all(name in tasks for name in expected)
        and all(state.split(":")[0] in FINAL for runs in tasks.values() for state in runs)
        for tasks in states.values()
    )


def test_every_models_tasks_are_recorded_and_the_rerun_shows_cached(two_runs: str) -> None:
    api = two_runs
    runs = post(api, "/flow_runs/filter", {"flows": {"name": {"any_": ["retrain-all"]}}, "sort": "START_TIME_ASC"})
    assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"]
    cold_id, rerun_id = runs[0]["id"], runs[1]["id"]

    cold = poll(lambda: pipeline_states(api, cold_id), lambda s: complete(s, PIPELINE))
    assert len(cold) == MODELS, cold
    for model, tasks in cold.items():
        for name in PIPELINE:
            assert tasks.get(name), f"{model}: no {name} task run recorded; recorded: {tasks}"
            assert all(state == "COMPLETED:Completed" for state in tasks[name]), f"{model}: {name} {tasks[name]}"

    rerun = poll(lambda: pipeline_states(api, rerun_id), lambda s: complete(s, PIPELINE[:-1]))
    assert len(rerun) == MODELS, rerun
    for model, tasks in rerun.items():
        assert tasks.get("prepare") == ["COMPLETED:Cached"], f"{model}: {tasks}"
        assert tasks.get("train") == ["COMPLETED:Cached"], f"{model}: {tasks}"
        assert tasks.get("evaluate") == ["COMPLETED:Completed"] and tasks.get("register") == ["COMPLETED:Completed"], tasks
        assert "deploy" not in tasks, f"{model}: the unchanged rerun deployed again: {tasks}"

    # The summary table's decision column, as the artifact the UI shows.
    tables = post(api, "/artifacts/filter", {"artifacts": {"key": {"any_": ["retrain-all-summary"]}}, "sort": "CREATED_DESC"})
    assert len(tables) == 2
    decisions = [[row["decision"] for row in json.loads(t["data"])] for t in reversed(tables)]
    assert all(d.startswith("promoted v1") for d in decisions[0]), decisions[0]
    assert all(d == "cached: v1 already serving" for d in decisions[1]), decisions[1]
