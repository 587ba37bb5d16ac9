"""The tracking store, made ready once before any trainer writes to it."""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.cache_policies import NO_CACHE

from salesrisk import locks, registry
from tasks.policies import RETRY_OPTIONS

STORE_LOCK = registry.STORE_LOCK


def ensure_store() -> bool:
    """Create a fresh local store (MLflow's migrations) once, whoever asks first.

    Trainer processes started side by side would each create, or migrate, a fresh store; held
    under one lock, the first caller creates it and the others wait for it, then find it made.
    So retrain-all can start the creation beside the first preparations (which do not need the
    store) instead of before them, and each train step still starts only on a finished store.
    """
    with locks.held(STORE_LOCK):
        return registry.initialise_store()


@task(name="initialise-tracking", cache_policy=NO_CACHE, **RETRY_OPTIONS)
async def initialise_tracking() -> bool:
    """Trainer processes started side by side would each create (or migrate) a fresh store."""
    return await asyncio.to_thread(ensure_store)
