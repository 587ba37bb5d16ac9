"""Two runs of one flow at once on one lake must not clobber each other's outputs.

The steps that write (prepare, train) run under Prefect's SERIALIZABLE cache isolation with OS file
locks (tasks/policies.py): the second run waits for the first and takes its result from the cache.
Registration of one name is serialized too, and deploys of one endpoint already were.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from deployments import endpoints
from deployments.local import state as endpoint_state
from flows.anomaly_detection import anomaly_detection
from salesrisk import registry
from tasks.policies import CACHE_POLICY
from tests.flows.conftest import isolated, small_lake, small_lake_template  # noqa: F401  (fixtures)
from tests.flows.helpers import by_task, task_runs

ANOMALY = "anomaly-detection-isolation-forest"


def run_at_once(count: int, **parameters) -> list:
    """``count`` runs of the anomaly flow, each in its own thread with its own event loop."""
    states: list = [None] * count
    start = threading.Barrier(count)

    def one(index: int) -> None:
        start.wait()
        states[index] = asyncio.run(anomaly_detection(**parameters, return_state=True))

    # copy_context: each thread sees the test harness's Prefect settings, as a worker would
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(one, i)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return states


def step_states(state, name: str) -> list[str]:
    runs = asyncio.run(task_runs(state.state_details.flow_run_id))
    return [r.state.name for r in by_task(runs, name)]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_two_runs_of_one_flow_at_once_leave_whole_outputs(small_lake: Path) -> None:
    first, second = run_at_once(2, param_n_estimators=20)

    assert first.is_completed(), first.message
    assert second.is_completed(), second.message
    # One run did each writing step, the other waited for it and reused its result.
    for step in ("prepare", "train"):
        assert sorted(step_states(first, step) + step_states(second, step)) == ["Cached", "Completed"], step

    # The one training output is whole and is what the registry and the endpoint hold.
    runs = Path(os.environ["SALESRISK_HOME"]) / "runs" / "anomaly"
    [output] = list(runs.iterdir())  # no staging or retired folders left
    assert (output / "model" / "MLmodel").exists()
    metrics = json.loads((output / "metrics.json").read_text())
    run_id = json.loads((output / "run.json").read_text())["run_id"]
    registered = registry.client().search_model_versions(f"name='{ANOMALY}'")
    assert [(str(v.version), v.run_id) for v in registered] == [("1", run_id)], "registered once"
    assert registry.client().get_run(run_id).data.metrics.items() >= metrics.items()
    live = endpoints.current("anomaly")
    assert (live.model_name, live.version) == (ANOMALY, "1")
    served = endpoint_state.load().endpoints["anomaly"].deployments[live.colour]
    assert (Path(served.path) / "MLmodel").exists()


def test_a_step_lock_dies_with_its_holder(isolated: Path) -> None:
    """A run killed while holding a step's lock must not make the next run wait for ever."""
    locks = CACHE_POLICY.lock_manager
    key = "killed-holder"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from tasks.policies import CACHE_POLICY\n"
         f"assert CACHE_POLICY.lock_manager.acquire_lock({key!r}, 'other-run', acquire_timeout=5)\n"
         "print('held', flush=True)\n"
         "time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert locks.is_locked(key)
        assert not locks.acquire_lock(key, "this-run", acquire_timeout=0.5), "held by the other process"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert locks.acquire_lock(key, "this-run", acquire_timeout=5)
    assert locks.is_lock_holder(key, "this-run") and not locks.is_lock_holder(key, "other-run")
    locks.release_lock(key, "this-run")
    assert not locks.is_locked(key)
