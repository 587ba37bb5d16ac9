"""Flow `retrain-all`: every model's pipeline and every industry model, as concurrently as the compute allows.

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
from flows.pipeline import PipelineOptions, prepared_input
from models import segments
from salesrisk import catalog, storage
from salesrisk.settings import get_settings
from tasks.artifacts import format_table, summary_rows
from tasks.lake import bootstrap_lake
from tasks.tracking import initialise_tracking
from tasks.refs import ModelSummary


def longest_first(models: list[str]) -> list[str]:
    """Highest ``start_rank`` first (the catalog's order on a tie)."""
    order = list(catalog.MODELS)
    return sorted(dict.fromkeys(models), key=lambda m: (-catalog.MODELS[m].start_rank, order.index(m)))


def concurrency(compute: str | None, max_parallel: int = 0) -> int:
    """Pipelines in flight at once: ``max_parallel`` when given; on Azure ML the jobs run on the
    cluster, so AZURE_ML_MAX_CONCURRENT_JOBS bounds them, not this machine's cores."""
    if max_parallel:
        return max_parallel
    settings = get_settings()
    if (compute or settings.compute) == "azureml":
        return settings.azure_ml_max_concurrent_jobs
    return os.cpu_count() or 1


async def industries_to_train(model_id: str, options: PipelineOptions, min_closed_deals: int) -> list[str]:
    """The industries of the model's prepared training data with enough closed deals (the
    prepare task's cache makes this a lookup after the global model's pipeline)."""
    prepared = await prepared_input(model_id, options)
    frame = await asyncio.to_thread(storage.read_parquet, prepared.uri)
    counts = segments.closed_deals_by_industry(frame)
    chosen = [industry for industry, n in counts.items() if n >= min_closed_deals]
    get_run_logger().info(
        "%s: closed deals by industry %s; own models for %s (at least %d)", model_id, counts, chosen or "none", min_closed_deals
    )
    return chosen


@flow(name="retrain-all")
async def retrain_all(
    models: list[str] = list(catalog.MODELS),
    lake: str | None = None,
    compute: str | None = None,
    deploy: bool = True,
    force: bool = False,
    max_parallel: int = 0,
    industries: bool = True,
    min_closed_deals: int | None = None,
    tenant_id: str | None = None,
    trainer_options_by_model: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Retrain, evaluate, register and deploy the chosen models (default: every catalogued model).

    A model with per-industry models (risk scoring) trains as a family: the global model, then one
    model per industry with at least min_closed_deals closed deals (default
    SALESRISK_INDUSTRY_MIN_CLOSED_DEALS), all industries at once; each serves its industry only where
    it beats the global model there. industries false trains the global model alone. tenant_id
    trains every model on that tenant's rows. max_parallel 0 means one pipeline per CPU core
    locally and AZURE_ML_MAX_CONCURRENT_JOBS pipelines with SALESRISK_COMPUTE=azureml; longest first.
    trainer_options_by_model passes each named model's flows (its industries' too) their
    ``trainer_options``, e.g. fewer iterations for a quick run.
    """
    logger = get_run_logger()
    trainer_options = trainer_options_by_model or {}
    unknown = sorted((set(models) | set(trainer_options)) - set(catalog.MODELS))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; expected some of {sorted(catalog.MODELS)}")
    lake = lake or get_settings().lake
    minimum = min_closed_deals or get_settings().industry_min_closed_deals
    await bootstrap_lake(lake)  # once, before the model flows read it concurrently
    # Beside the first preparations, which do not need the store; each train step waits for it.
    tracking = asyncio.create_task(initialise_tracking())
    progress = await create_progress_artifact(progress=0.0, key="retrain-all-progress",
                                              description="pipelines finished")
    done = 0
    planned = len(models)
    # Whole pipelines share the cores: measured, this beat bounding only prepare+train (all five
    # pipelines at once), by 4-5 s on an unchanged rerun, where Prefect's own bookkeeping dominates.
    limit = asyncio.Semaphore(concurrency(compute, max_parallel))
    common = {"lake": lake, "compute": compute, "deploy": deploy, "force": force, "tenant_id": tenant_id}

    async def run_one(model_id: str, industry: str | None = None) -> ModelSummary:
        nonlocal done
        try:
            async with limit:
                extra = {catalog.INDUSTRY_ID: industry} if industry else {}
                return await flow_for(model_id)(**common, **extra, trainer_options=trainer_options.get(model_id))
        finally:
            done += 1
            await update_progress_artifact(progress, progress=100.0 * done / max(planned, done))

    async def run_family(model_id: str) -> dict[str, ModelSummary | BaseException]:
        """The model, then (when it has per-industry models) one pipeline per eligible industry,
        in parallel: each industry's gate compares it with the global model now serving."""
        nonlocal planned
        key = catalog.registered_name(model_id)
        family: dict[str, ModelSummary | BaseException] = {}
        try:
            family[key] = await run_one(model_id)
        except Exception as error:  # noqa: BLE001 - reported in the summary; industries still run
            family[key] = error
        if not (industries and catalog.MODELS[model_id].industry_name):
            return family
        options = PipelineOptions(lake=lake, compute=compute, tenant_id=tenant_id)
        try:
            chosen = await industries_to_train(model_id, options, minimum)
        except Exception as error:  # noqa: BLE001
            family[f"{key} (industries)"] = error
            return family
        planned += len(chosen)
        names = [catalog.registered_name(model_id, i) for i in chosen]
        outcomes = await asyncio.gather(*(run_one(model_id, i) for i in chosen), return_exceptions=True)
        family.update(zip(names, outcomes))
        return family

    started = longest_first(models)
    families = await asyncio.gather(*(run_family(m) for m in started))
    await asyncio.gather(tracking, return_exceptions=True)  # a failure is its task run's; train steps retry it
    finished = dict(zip(started, families))
    # the summary keeps the order asked for, each model's industries after it
    results = {name: r for m in dict.fromkeys(models) for name, r in finished[m].items()}
    rows = summary_rows(results)
    await create_table_artifact(table=rows, key="retrain-all-summary", description="retrain-all summary")
    logger.info("%d pipeline(s) done; summary in the retrain-all-summary artifact", len(rows))
    failed = {m: r for m, r in results.items() if isinstance(r, BaseException)}
    if failed:
        raise RuntimeError(f"{len(failed)} model flow(s) failed: " + "; ".join(f"{m}: {e}" for m, e in failed.items()))
    return rows


if __name__ == "__main__":
    raise SystemExit(cli.main(retrain_all, render=format_table))
