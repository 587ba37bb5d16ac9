"""Small file primitives the deployment state relies on: atomic replace and an advisory lock.

A reader (the endpoint server, the ml-service) must never see a half-written file, and two deploys
to the same endpoint must not interleave their read-modify-write of shared state.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from salesrisk import storage


def atomic_write_text(path: Path, text: str, *, mode: int = 0o644) -> Path:
    """Replace ``path`` with ``text`` atomically (the project's one writer, :func:`storage.write_bytes`)."""
    storage.write_bytes(text.encode("utf-8"), str(path), mode=mode)
    return path


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
