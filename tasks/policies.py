"""Retry and cache policies shared by every task.

Retries are for transient failures only; a data-contract error or a bad parameter fails at once.
Cache keys combine the task's inputs (URIs and content fingerprints, never frames), its source,
and the source of the ML code it runs, so changed data or changed code retrains.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from filelock import FileLock
from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy
from prefect.tasks import exponential_backoff

import models
import salesrisk
import tasks
from deployments.compute import StepInputError, TransientComputeError
from salesrisk import locks, registry
from salesrisk.storage import StorageError

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientComputeError,
    ConnectionError,
    TimeoutError,
    OSError,
    # The Azure SDK's own retries gave up on the connection (adlfs on abfs://): the blob store
    # may be back by the next attempt. Not OSError subclasses, so they are named here.
    ServiceRequestError,
    ServiceResponseError,
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

log = logging.getLogger("salesrisk.retry")
T = TypeVar("T")

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
# A trained model's cached result names an MLflow run: it holds only in the store that has the run.
TRACKING_STORE = CacheKeyFnPolicy(cache_key_fn=lambda context, parameters: registry.store_id())

LOCK_POLL_SECONDS = 0.2


class StepLocks:
    """Prefect lock manager (for SERIALIZABLE cache isolation) on :mod:`salesrisk.locks`.

    Two runs that reach a step with the same cache key at once (two runs of one flow on one lake)
    would both run it into the same output folder; with this the second waits for the first and
    then takes its committed result from the cache. Prefect's own FileSystemLockManager would
    serve too, but its lock is a file's existence: a run killed while holding it leaves the lock
    for ever. An OS lock dies with its process.
    """

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, FileLock]] = {}

    @staticmethod
    def _name(key: str) -> str:
        return f"step-{key}"

    def _try(self, key: str, holder: str) -> bool:
        if self.is_lock_holder(key, holder):
            return True
        lock = locks.lock(self._name(key))
        try:
            lock.acquire(timeout=0)
        except locks.Timeout:
            return False
        self._held[key] = (holder, lock)
        return True

    def acquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        return _poll(lambda: self._try(key, holder), acquire_timeout)

    async def aacquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        # Polls instead of blocking: the holder may be another flow run on this very event loop.
        return await _apoll(lambda: self._try(key, holder), acquire_timeout)

    def release_lock(self, key: str, holder: str) -> None:
        held = self._held.get(key)
        if held is None or held[0] != holder:
            raise ValueError(f"step lock {key!r} is not held by {holder!r}")
        del self._held[key]
        held[1].release()

    def is_locked(self, key: str) -> bool:
        if key in self._held:
            return True
        probe = locks.lock(self._name(key))
        try:
            probe.acquire(timeout=0)
        except locks.Timeout:
            return True
        probe.release()
        return False

    def is_lock_holder(self, key: str, holder: str) -> bool:
        held = self._held.get(key)
        return held is not None and held[0] == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        return _poll(lambda: not self.is_locked(key), timeout)

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        return await _apoll(lambda: not self.is_locked(key), timeout)


def _poll(ready: Callable[[], bool], timeout: float | None) -> bool:
    """Check ``ready`` every LOCK_POLL_SECONDS until it holds (True) or ``timeout`` passes (False)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not ready():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(LOCK_POLL_SECONDS)
    return True


async def _apoll(ready: Callable[[], bool], timeout: float | None) -> bool:
    """:func:`_poll` without blocking the event loop."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not ready():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        await asyncio.sleep(LOCK_POLL_SECONDS)
    return True


# Inputs (URIs, fingerprints, parameters) + this task's source + the ML code it runs; one run at a
# time per key, the others wait and reuse its result.
CACHE_POLICY = (INPUTS + TASK_SOURCE + ML_CODE).configure(isolation_level="SERIALIZABLE", lock_manager=StepLocks())
# ... and for a training step, the tracking store its run was logged to.
TRAIN_CACHE_POLICY = (INPUTS + TASK_SOURCE + ML_CODE + TRACKING_STORE).configure(
    isolation_level="SERIALIZABLE", lock_manager=StepLocks()
)

RETRY_OPTIONS: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_transient_only,
}


def with_retries(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``, retrying transient errors inside the one task attempt, as RETRY_OPTIONS would.

    For the tasks that run inside a Prefect transaction (register, deploy): in Prefect 3.9 a failed
    attempt of a retried task rolls back the enclosing transaction at once, running the rollback
    hooks of the tasks before it, even when the next attempt succeeds (a deploy that recovered
    would serve a version its registration's rollback had just deleted). Such a task must fail at
    most once, finally.
    """
    delays = RETRY_DELAYS(RETRIES)
    for attempt in range(RETRIES + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            if attempt == RETRIES or not is_transient(error):
                raise
            delay = delays[attempt] * (1 + RETRY_JITTER * random.uniform(-1, 1))
            log.warning("%s failed (%s: %s); attempt %d of %d in %.1f s",
                        getattr(fn, "__name__", fn), type(error).__name__, error, attempt + 2, RETRIES + 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
