"""Flow `retrain-all`: every model's pipeline, as concurrently as the machine's cores allow.

Run ad hoc with ``python flows/retrain_all.py``; on a fresh clone it generates a synthetic lake,
trains the five models locally, registers them in MLflow, deploys them to the local endpoints and
prints a summary table.
"""

from __future__ import annotations

from flows import cli  # first: flows/__init__ sets process defaults before Prefect loads

if __name__ == "__main__":
    cli.start_local_api()  # a local Prefect API starts while the modules below import

import asyncio
import os
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact

from flows.model_flow import flow_for
from salesrisk import catalog
from salesrisk.settings import get_settings
from tasks.artifacts import format_table, summary_rows
from tasks.lake import bootstrap_lake
from tasks.tracking import initialise_tracking
from tasks.refs import ModelSummary


def longest_first(models: list[str]) -> list[str]:
    """Highest ``start_rank`` first (the catalog's order on a tie)."""
    order = list(catalog.MODELS)
    return sorted(dict.fromkeys(models), key=lambda m: (-catalog.MODELS[m].start_rank, order.index(m)))


@flow(name="retrain-all")
async def retrain_all(
    models: list[str] = list(catalog.MODELS),
    lake: str | None = None,
    compute: str | None = None,
    deploy: bool = True,
    force: bool = False,
    max_parallel: int = 0,
) -> list[dict[str, Any]]:
    """Retrain, evaluate, register and deploy the chosen models (default: every catalogued model).

    max_parallel 0 means one model pipeline per CPU core, longest first.
    """
    logger = get_run_logger()
    unknown = sorted(set(models) - set(catalog.MODELS))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; expected some of {sorted(catalog.MODELS)}")
    lake = lake or get_settings().lake
    await bootstrap_lake(lake)  # once, before the model flows read it concurrently
    # Beside the first preparations, which do not need the store; each train step waits for it.
    tracking = asyncio.create_task(initialise_tracking())
    progress = await create_progress_artifact(progress=0.0, key="retrain-all-progress",
                                              description="models finished")
    done = 0
    # Whole pipelines share the cores: measured, this beat bounding only prepare+train (all five
    # pipelines at once), by 4-5 s on an unchanged rerun, where Prefect's own bookkeeping dominates.
    limit = asyncio.Semaphore(max_parallel or os.cpu_count() or 1)

    async def run_one(model_id: str) -> ModelSummary:
        nonlocal done
        try:
            async with limit:
                return await flow_for(model_id)(lake=lake, compute=compute, deploy=deploy, force=force)
        finally:
            done += 1
            await update_progress_artifact(progress, progress=100.0 * done / len(models))

    started = longest_first(models)
    outcomes = await asyncio.gather(*(run_one(m) for m in started), return_exceptions=True)
    await asyncio.gather(tracking, return_exceptions=True)  # a failure is its task run's; train steps retry it
    finished = dict(zip(started, outcomes))
    results = {m: finished[m] for m in dict.fromkeys(models)}  # the summary keeps the order asked for
    rows = summary_rows(results)
    await create_table_artifact(table=rows, key="retrain-all-summary", description="retrain-all summary")
    logger.info("%d model(s) done; summary in the retrain-all-summary artifact", len(rows))
    failed = {m: r for m, r in results.items() if isinstance(r, BaseException)}
    if failed:
        raise RuntimeError(f"{len(failed)} model flow(s) failed: " + "; ".join(f"{m}: {e}" for m, e in failed.items()))
    return rows


if __name__ == "__main__":
    raise SystemExit(cli.main(retrain_all, render=format_table))
