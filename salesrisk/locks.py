"""Named locks shared by every process on this machine (two flow runs, a flow and a person).

Held by the operating system on a file under ``<home>/locks``: when the holder dies, even by
SIGKILL, the lock is released with it, so a crashed run never leaves a stale lock that would make
the next run wait forever (unlike a lock whose mere file is the lock).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from salesrisk.settings import get_settings

__all__ = ["Timeout", "held", "lock", "lock_path"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def lock_path(name: str) -> Path:
    """The lock file of ``name``: readable when the name is, unique per name in any case."""
    readable = _UNSAFE.sub("_", name)[:80]
    digest = hashlib.blake2b(name.encode(), digest_size=6).hexdigest()
    return Path(get_settings().home).resolve() / "locks" / f"{readable}-{digest}.lock"


def lock(name: str) -> FileLock:
    """A fresh, not yet acquired lock on ``name`` (for callers that need ``acquire(timeout=...)``)."""
    path = lock_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    # thread_local=False: acquired in one thread, released in another (Prefect's engine may do so).
    return FileLock(path, thread_local=False, is_singleton=False)


@contextlib.contextmanager
def held(name: str, timeout: float = -1) -> Iterator[None]:
    """Hold ``name`` for the ``with`` block; wait at most ``timeout`` seconds (-1: as long as it takes).

    Raises :class:`Timeout` when the lock stays taken.
    """
    with lock(name).acquire(timeout=timeout):
        yield
