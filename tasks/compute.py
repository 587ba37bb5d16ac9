"""Where step outputs go and how their folders are keyed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from salesrisk import storage
from salesrisk.settings import get_settings


def step_key(*parts: Any) -> str:
    """A short stable key for an output folder, so two runs with other inputs never collide."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def runs_root() -> str:
    return storage.join(str(get_settings().home), "runs")


def check_compute(compute: str) -> str:
    if compute not in ("local", "azureml"):
        raise ValueError(f"compute={compute!r}: expected 'local' or 'azureml' (SALESRISK_COMPUTE)")
    return compute
