"""Flow `prepare-training`: the runbook's data preparation on its own (join, filter, top up)."""

from __future__ import annotations

from flows import cli  # first: flows/__init__ sets process defaults before Prefect loads

if __name__ == "__main__":
    cli.start_local_api()  # a local Prefect API starts while the modules below import

from datetime import date

from prefect import flow

from flows.pipeline import PipelineOptions, prepared_input
from salesrisk import catalog


@flow(name="prepare-training")
async def prepare_training(
    model_id: str = "win_probability",
    risk_evaluations: str | None = None,
    ml_outcomes: str | None = None,
    risk_snapshots: str | None = None,
    revenue_daily: str | None = None,
    lake: str | None = None,
    tenant_id: str | None = None,
    partition_date: date | None = None,
    compute: str | None = None,
) -> str:
    """Write one model's prepared.parquet from the lake (or the given table URIs); return its URI."""
    if model_id not in catalog.MODELS:
        raise ValueError(f"model_id={model_id!r}: expected one of {sorted(catalog.MODELS)}")
    given = {
        catalog.RISK_EVALUATIONS: risk_evaluations,
        catalog.ML_OUTCOMES: ml_outcomes,
        catalog.RISK_SNAPSHOTS: risk_snapshots,
        catalog.REVENUE_DAILY: revenue_daily,
    }
    sources = {table: uri for table, uri in given.items() if uri} or None
    prepared = await prepared_input(
        model_id,
        PipelineOptions(lake=lake, tenant_id=tenant_id, partition_date=partition_date, compute=compute,
                        deploy=False, sources=sources),
    )
    return prepared.uri


if __name__ == "__main__":
    raise SystemExit(cli.main(prepare_training, render=str))
