"""The tracking store, made ready once per flow run."""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.cache_policies import NO_CACHE

from salesrisk import registry
from tasks.policies import RETRY_OPTIONS


@task(name="initialise-tracking", cache_policy=NO_CACHE, **RETRY_OPTIONS)
async def initialise_tracking() -> bool:
    """Trainer processes started side by side would each create (or migrate) a fresh store."""
    return await asyncio.to_thread(registry.initialise_store)
