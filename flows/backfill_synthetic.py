"""Flow `backfill-synthetic`: append generated days to the lake (the runbook's synthetic path)."""

from __future__ import annotations

from flows import cli  # first: flows/__init__ sets process defaults before Prefect loads

if __name__ == "__main__":
    cli.start_local_api()  # a local Prefect API starts while the modules below import

import asyncio

from prefect import flow, get_run_logger

from models import synthetic
from salesrisk import storage
from salesrisk.settings import get_settings
from tasks.lake import bootstrap_lake


@flow(name="backfill-synthetic")
async def backfill_synthetic(days: int = 1, lake: str | None = None, seed: int = 0) -> dict:
    """Generate the next `days` days of opportunities, snapshots, outcomes and revenue."""
    if days < 1:
        raise ValueError(f"days={days}: expected a positive number of days")
    lake = lake or get_settings().lake
    await bootstrap_lake(lake)
    summary = await asyncio.to_thread(synthetic.append_days, lake, days, seed)
    get_run_logger().info("appended %d day(s) to %s: %s", days, lake, summary)
    return summary


if __name__ == "__main__":
    raise SystemExit(cli.main(backfill_synthetic, render=str))
