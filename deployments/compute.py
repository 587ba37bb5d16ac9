"""Compute behind one interface: a local process by default, an Azure ML command job otherwise.

A step is described as the module and arguments of its command line, so the same command runs
here as a subprocess and on Azure ML compute as a command job (see ``deployments/azureml``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deployments.preload import PreloadedSteps
from salesrisk.settings import get_settings

log = logging.getLogger("salesrisk.compute")

EXIT_BAD_INPUT = 2
LOG_TAIL_LINES = 25


class StepInputError(ValueError):
    """The step rejected its input (data contract or bad parameter): retrying cannot help."""


class StepFailedError(RuntimeError):
    """The step crashed; its log tail is in the message."""


class TransientComputeError(RuntimeError):
    """The process was killed or preempted: worth another try."""


@dataclass
class StepResult:
    output: str
    metrics: dict[str, float] = field(default_factory=dict)
    log_tail: str = ""


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_local(module: str, args: Sequence[str], output: str, *, timeout: float | None = None) -> StepResult:
    """Run ``python -m module args`` and classify its exit: bad input, crash, or killed.

    The process is forked from a preloaded interpreter (deployments/preload.py) when it can be: the
    same command, without importing MLflow, pandas, polars, scikit-learn and torch again (about 5 s of CPU
    for every trainer and preparation, a third of a cold retrain-all on 2 cores).
    """
    env = _step_environment()
    log.info("running %s -m %s %s", sys.executable, module, " ".join(args))
    with tempfile.TemporaryDirectory(prefix="step-") as logs:
        stdout, stderr = Path(logs, "stdout"), Path(logs, "stderr")
        code = _exit_code(module, list(args), env, stdout, stderr, timeout)
        err = stderr.read_text(errors="replace")
    if code == EXIT_BAD_INPUT:
        message = _tail(err, 5) or f"{module} rejected its input"
        raise StepInputError(message.removeprefix("error: "))
    if code < 0:
        raise TransientComputeError(f"{module} was killed by signal {-code}")
    if code != 0:
        raise StepFailedError(f"{module} exited {code}:\n{_tail(err)}")
    metrics_file = Path(output) / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    return StepResult(output=output, metrics=metrics, log_tail=_tail(err))


def _exit_code(module: str, args: list[str], env: dict[str, str], stdout: Path, stderr: Path, timeout: float | None) -> int:
    steps = preloaded_steps(env)
    if steps is not None:
        code = steps.run(module, args, env, stdout, stderr, timeout)
        if code is None:
            raise TransientComputeError(f"{module} timed out after {timeout} s")
        return code
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        try:
            return subprocess.run([sys.executable, "-m", module, *args], stdout=out, stderr=err, timeout=timeout, env=env).returncode
        except subprocess.TimeoutExpired as error:
            raise TransientComputeError(f"{module} timed out after {timeout} s") from error


_steps_lock = threading.Lock()
_steps: PreloadedSteps | None = None


def preloaded_steps(env: dict[str, str]) -> PreloadedSteps | None:
    """The preloaded interpreter steps fork from (started on first use), or None to run the step as
    a fresh process: SALESRISK_PRELOAD_STEPS=false, no fork on this platform, or an environment
    that changes how an interpreter starts (e.g. another PYTHONPATH)."""
    global _steps
    if not get_settings().preload_steps or not hasattr(os, "fork"):
        return None
    with _steps_lock:
        if _steps is None or (not _steps.alive and _steps.starts_like(env)):
            _steps = PreloadedSteps(env)  # first use, or the server died: a new one
    return _steps if _steps.fits(env) else None


def start_preloaded_steps(compute: str | None = None) -> None:
    """Start the preloaded interpreter now, when steps will run on this machine, so that its
    imports overlap what the caller waits for (a flow script waits seconds for its Prefect API)
    instead of delaying the first step."""
    if (compute or get_settings().compute) == "local":
        preloaded_steps(_step_environment())


def _step_environment() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def staged_output(output: str) -> Iterator[str]:
    """A fresh folder beside local ``output`` for a step to write into, put in its place only when
    the block succeeds; on any failure (a killed trainer included) it is removed.

    So ``output`` holds either a whole earlier result or a whole new one, never the model of one run
    beside the metrics of another, nor a model without its ``run.json``.
    """
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.staging-{uuid.uuid4().hex[:12]}")
    staging.mkdir()
    try:
        yield str(staging)
        publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, target: Path) -> None:
    """Replace folder ``target`` by ``staging`` with renames; the old folder is removed after."""
    retired = None
    if target.exists():
        retired = target.with_name(f".{target.name}.retired-{uuid.uuid4().hex[:12]}")
        os.rename(target, retired)
    os.rename(staging, target)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
