"""Flow `retrain-all`: every model's pipeline, as concurrently as the machine's cores allow.

Run ad hoc with ``python flows/retrain_all.py``; on a fresh clone it generates a synthetic lake,
trains the five models locally, registers them in MLflow, deploys them to the local endpoints and
prints a summary table.
"""

from __future__ import annotations

from flows import cli  # first: flows/__init__ sets process defaults before Prefect loads

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact

from flows.anomaly_detection import anomaly_detection
from flows.revenue_forecasting import revenue_forecasting
from flows.risk_scoring import risk_scoring
from flows.risk_trajectory import risk_trajectory
from flows.win_probability import win_probability
from salesrisk.settings import get_settings
from tasks.lake import bootstrap_lake
from tasks.refs import ModelSummary

MODEL_FLOWS: dict[str, Callable[..., Awaitable[ModelSummary]]] = {
    "risk_scoring": risk_scoring,
    "risk_trajectory": risk_trajectory,
    "win_probability": win_probability,
    "revenue_forecast": revenue_forecasting,
    "anomaly": anomaly_detection,
}


def summary_rows(results: dict[str, ModelSummary | BaseException]) -> list[dict[str, Any]]:
    rows = []
    for model_id, result in results.items():
        if isinstance(result, BaseException):
            rows.append({"model": model_id, "version": "-", "metrics": f"FAILED: {result}"[:200],
                         "endpoint": "-", "scoring_url": "-"})
            continue
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.metrics.items()))
        rows.append({"model": result.registered_name, "version": result.version or "-", "metrics": metrics,
                     "endpoint": result.endpoint_key, "scoring_url": result.scoring_url or "(not deployed)"})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    headers = list(rows[0]) if rows else []
    widths = {h: max(len(h), *(len(str(r[h])) for r in rows)) for h in headers}
    line = "  ".join(h.ljust(widths[h]) for h in headers)
    body = ["  ".join(str(r[h]).ljust(widths[h]) for h in headers) for r in rows]
    return "\n".join([line, "  ".join("-" * widths[h] for h in headers), *body])


@flow(name="retrain-all")
async def retrain_all(
    models: list[str] = list(MODEL_FLOWS),
    lake: str | None = None,
    compute: str | None = None,
    deploy: bool = True,
    force: bool = False,
    max_parallel: int = 0,
) -> list[dict[str, Any]]:
    """Retrain, evaluate, register and deploy the chosen models (default: all five).

    max_parallel 0 means one model pipeline per CPU core.
    """
    logger = get_run_logger()
    unknown = sorted(set(models) - set(MODEL_FLOWS))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; expected some of {sorted(MODEL_FLOWS)}")
    lake = lake or get_settings().lake
    await bootstrap_lake(lake)  # once, before the model flows read it concurrently
    limit = asyncio.Semaphore(max_parallel or os.cpu_count() or 1)
    progress = await create_progress_artifact(progress=0.0, key="retrain-all-progress",
                                              description="models finished")
    done = 0

    async def run_one(model_id: str) -> ModelSummary:
        nonlocal done
        async with limit:
            try:
                return await MODEL_FLOWS[model_id](lake=lake, compute=compute, deploy=deploy, force=force)
            finally:
                done += 1
                await update_progress_artifact(progress, progress=100.0 * done / len(models))

    outcomes = await asyncio.gather(*(run_one(m) for m in models), return_exceptions=True)
    results = dict(zip(models, outcomes))
    rows = summary_rows(results)
    await create_table_artifact(table=rows, key="retrain-all-summary", description="retrain-all summary")
    logger.info("%d model(s) done; summary in the retrain-all-summary artifact", len(rows))
    failed = {m: r for m, r in results.items() if isinstance(r, BaseException)}
    if failed:
        raise RuntimeError(f"{len(failed)} model flow(s) failed: " + "; ".join(f"{m}: {e}" for m, e in failed.items()))
    return rows


if __name__ == "__main__":
    raise SystemExit(cli.main(retrain_all, render=format_table))
