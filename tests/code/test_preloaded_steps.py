"""Steps forked from the preloaded interpreter behave as ``python -m module args`` processes:
exit codes, signals, timeouts, output, environment and working directory, and a fresh process
when the environment changes how an interpreter starts."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from deployments import compute
from deployments.compute import StepFailedError, StepInputError, TransientComputeError

STEPS = {
    "step_ok": """
        import json, os, sys
        out = sys.argv[sys.argv.index("--output") + 1]
        with open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump({"cwd_is_here": float(os.getcwd() == os.environ["EXPECTED_CWD"]),
                       "argv": float(sys.argv[1:] == ["--output", out]), "pid": float(os.getpid())}, f)
        print("trained", file=sys.stderr)
    """,
    "step_bad_input": """
        import sys
        print("error: /data.parquet: column amount: expected numbers", file=sys.stderr)
        raise SystemExit(2)
    """,
    "step_raises": "raise RuntimeError('broken trainer')\n",
    "step_killed": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "step_sleeps": "import time\ntime.sleep(60)\n",
    # what a torch trainer does first: two intra-op threads, then training (the server imported
    # torch but never ran it, so the fork starts its own thread pool)
    "step_torch": """
        import json, os, sys
        import torch
        from mlflow.utils import requirements_utils
        warm = requirements_utils._PACKAGES_TO_MODULES is not None  # before anything here fills it
        torch.set_num_threads(2)
        torch.manual_seed(0)
        net = torch.nn.LSTM(8, 64, batch_first=True)
        optimizer = torch.optim.Adam(net.parameters())
        x = torch.randn(512, 30, 8)
        for _ in range(5):
            optimizer.zero_grad()
            loss = net(x)[0].square().mean()
            loss.backward()
            optimizer.step()
        out = sys.argv[sys.argv.index("--output") + 1]
        with open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump({"loss": loss.item(), "threads": float(torch.get_num_threads()),
                       "packages_known": float(warm)}, f)
    """,
}


@pytest.fixture()
def steps_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, body in STEPS.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPECTED_CWD", str(tmp_path))
    monkeypatch.delenv("SALESRISK_PRELOAD_STEPS", raising=False)
    monkeypatch.setattr(compute, "_steps", None)  # a server started with this test's environment
    return tmp_path


@pytest.fixture(scope="module")
def one_server():
    """One preloaded step server for the tests that only run steps on it: starting one imports
    torch and the trainers' libraries (seconds each time). Each step still forks with its test's
    own environment and folder, which is what those tests check."""
    from deployments.preload import PreloadedSteps

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SALESRISK_PRELOAD_STEPS", raising=False)
        server = PreloadedSteps({**os.environ, "PYTHONUNBUFFERED": "1"})
    yield server
    server.close()


@pytest.fixture()
def shared_steps(steps_dir: Path, one_server, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``steps_dir`` with the module's server as the one steps fork from (a new one if it died)."""
    monkeypatch.setattr(compute, "_steps", one_server if one_server.alive else None)
    return steps_dir


def test_a_step_runs_as_its_own_process_with_this_environment_and_folder(shared_steps: Path) -> None:
    steps_dir = shared_steps
    assert compute.preloaded_steps({**os.environ, "PYTHONUNBUFFERED": "1"}) is not None
    result = compute.run_local("step_ok", ["--output", str(steps_dir)], str(steps_dir))
    assert result.metrics["cwd_is_here"] == 1.0 and result.metrics["argv"] == 1.0
    assert result.metrics["pid"] != os.getpid()
    assert "trained" in result.log_tail


def test_exits_are_classified_as_for_a_fresh_process(shared_steps: Path) -> None:
    steps_dir = shared_steps
    assert compute.preloaded_steps({**os.environ, "PYTHONUNBUFFERED": "1"}) is not None  # the steps fork
    with pytest.raises(StepInputError, match="column amount"):
        compute.run_local("step_bad_input", [], str(steps_dir))
    with pytest.raises(StepFailedError, match="broken trainer"):
        compute.run_local("step_raises", [], str(steps_dir))
    with pytest.raises(TransientComputeError, match="killed by signal 9"):
        compute.run_local("step_killed", [], str(steps_dir))
    with pytest.raises(TransientComputeError, match="timed out"):
        compute.run_local("step_sleeps", [], str(steps_dir), timeout=1)


def test_another_start_up_environment_gets_a_fresh_process(shared_steps: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps_dir = shared_steps
    assert compute.preloaded_steps({**os.environ}) is not None
    assert compute.preloaded_steps({**os.environ, "PYTHONPATH": str(steps_dir / "hooks")}) is None
    monkeypatch.setenv("SALESRISK_PRELOAD_STEPS", "false")
    assert compute.preloaded_steps({**os.environ}) is None
    result = compute.run_local("step_ok", ["--output", str(steps_dir)], str(steps_dir))  # as a fresh process
    assert result.metrics["cwd_is_here"] == 1.0


def test_a_torch_step_forked_from_the_server_trains_as_a_fresh_process_would(
    shared_steps: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch is imported by the server (deployments/preload.py) but must not have started its
    thread pools there: a fork that then trains on two threads finishes, with the same loss as a
    fresh process; and MLflow's package map (filled by the server) comes with the fork."""
    steps_dir = shared_steps
    assert compute.preloaded_steps({**os.environ, "PYTHONUNBUFFERED": "1"}) is not None
    forked = compute.run_local("step_torch", ["--output", str(steps_dir)], str(steps_dir), timeout=120).metrics
    monkeypatch.setenv("SALESRISK_PRELOAD_STEPS", "false")
    fresh = compute.run_local("step_torch", ["--output", str(steps_dir)], str(steps_dir), timeout=120).metrics
    assert forked["threads"] == 2.0 and forked["loss"] == fresh["loss"]
    assert forked["packages_known"] == 1.0 and fresh["packages_known"] == 0.0


def test_flow_scripts_start_the_server_only_for_steps_that_run_here(
    steps_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compute.start_preloaded_steps("azureml")
    assert compute._steps is None
    compute.start_preloaded_steps("local")
    assert compute._steps is not None and compute._steps.alive
    result = compute.run_local("step_ok", ["--output", str(steps_dir)], str(steps_dir))
    assert result.metrics["pid"] != os.getpid()


def test_a_server_no_step_used_is_ended_at_once(steps_dir: Path) -> None:
    """A run whose steps were all cached never uses the server it started early: closing it must
    not wait for its imports (seconds of an unchanged rerun)."""
    import time

    steps = compute.preloaded_steps({**os.environ, "PYTHONUNBUFFERED": "1"})
    assert steps is not None
    started = time.monotonic()
    steps.close()
    assert not steps.alive and time.monotonic() - started < 2.0


def test_closing_after_the_steps_ended_does_not_wait_for_an_interpreter_teardown(shared_steps: Path) -> None:
    """The caller waits for the server at exit: it leaves by ``os._exit`` once every step ended
    (tearing down its imports took 1.8 s of every run). The module's server is closed here, after
    the steps of the tests above ran on it (a test after this one would get a new server)."""
    import time

    steps_dir = shared_steps
    steps = compute.preloaded_steps({**os.environ, "PYTHONUNBUFFERED": "1"})
    assert steps is not None
    compute.run_local("step_ok", ["--output", str(steps_dir)], str(steps_dir))
    started = time.monotonic()
    steps.close()
    assert not steps.alive and time.monotonic() - started < 1.0
