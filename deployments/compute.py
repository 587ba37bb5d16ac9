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
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
    """Run ``python -m module args`` and classify its exit: bad input, crash, or killed."""
    command = [sys.executable, "-m", module, *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log.info("running %s", " ".join(command[1:]))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as error:
        raise TransientComputeError(f"{module} timed out after {timeout} s") from error
    if done.returncode == EXIT_BAD_INPUT:
        message = _tail(done.stderr, 5) or f"{module} rejected its input"
        raise StepInputError(message.removeprefix("error: "))
    if done.returncode < 0:
        raise TransientComputeError(f"{module} was killed by signal {-done.returncode}")
    if done.returncode != 0:
        raise StepFailedError(f"{module} exited {done.returncode}:\n{_tail(done.stderr)}")
    metrics_file = Path(output) / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    return StepResult(output=output, metrics=metrics, log_tail=_tail(done.stderr))


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
