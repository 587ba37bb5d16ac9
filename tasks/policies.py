"""Retry and cache policies shared by every task.

Retries are for transient failures only; a data-contract error or a bad parameter fails at once.
Cache keys combine the task's inputs (URIs and content fingerprints, never frames), its source,
and the source of the ML code it runs, so changed data or changed code retrains.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy
from prefect.tasks import exponential_backoff

import models
import salesrisk
import tasks
from deployments.compute import StepInputError, TransientComputeError
from salesrisk.storage import StorageError

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientComputeError,
    ConnectionError,
    TimeoutError,
    OSError,
)
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    StepInputError,
    StorageError,
    ValueError,
    KeyError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)

RETRIES = 2
RETRY_DELAYS = exponential_backoff(backoff_factor=1)
RETRY_JITTER = 0.5


def is_transient(exc: BaseException | None) -> bool:
    if exc is None or isinstance(exc, PERMANENT_ERRORS):
        return False
    return isinstance(exc, TRANSIENT_ERRORS)


def retry_transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry I/O, network and preempted compute, nothing else."""
    data = getattr(state, "data", None)
    return is_transient(data if isinstance(data, BaseException) else None)


@cache
def ml_code_fingerprint() -> str:
    """Hash of the code a step runs (trainers, shared code, task bodies): an edit retrains."""
    digest = hashlib.blake2b(digest_size=16)
    for package in (models, salesrisk, tasks):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root.parent).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


ML_CODE = CacheKeyFnPolicy(cache_key_fn=lambda context, parameters: ml_code_fingerprint())

# Inputs (URIs, fingerprints, parameters) + this task's source + the ML code it runs.
CACHE_POLICY = INPUTS + TASK_SOURCE + ML_CODE

RETRY_OPTIONS: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_transient_only,
}
