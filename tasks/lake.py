"""The lake every model reads: generated on first use when the machine has none."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models import synthetic
from salesrisk import catalog, storage
from tasks.policies import RETRY_OPTIONS

SOURCE_TABLES = (catalog.RISK_EVALUATIONS, catalog.ML_OUTCOMES, catalog.RISK_SNAPSHOTS, catalog.REVENUE_DAILY)


def table_uris(lake: str) -> dict[str, str]:
    return {table: storage.join(lake, table) for table in SOURCE_TABLES}


def ensure_lake(lake: str) -> dict[str, str]:
    """Generate the default synthetic lake when the configured one is empty; never overwrite."""
    tables = table_uris(lake)
    missing = [name for name, uri in tables.items() if not storage.exists(uri)]
    if missing and len(missing) < len(tables):
        raise storage.StorageError(
            f"{lake}: lake is incomplete, missing {', '.join(missing)}; "
            "restore those tables or point SALESRISK_LAKE at an empty folder to generate one"
        )
    if missing:
        logger = get_run_logger()
        logger.info("lake %s has no %s: generating the synthetic lake", lake, ", ".join(missing))
        summary = synthetic.generate(lake)
        logger.info("generated %s", summary)
    return tables


@task(name="bootstrap-lake", cache_policy=NO_CACHE, **RETRY_OPTIONS)
async def bootstrap_lake(lake: str) -> dict[str, str]:
    return await asyncio.to_thread(ensure_lake, lake)
