"""Prepare one model's training input (``prepared.parquet``) from the lake's source tables."""

from __future__ import annotations

import asyncio

from datetime import date

from prefect import get_run_logger, task

from deployments.compute import run_local
from salesrisk import catalog, storage
from tasks.compute import check_compute, step_key
from tasks.policies import CACHE_POLICY, RETRY_OPTIONS
from tasks.refs import DataRef

# models.prepare always takes these two flags (the runbook's interface), used or not.
ALWAYS_PASSED = (catalog.RISK_EVALUATIONS, catalog.ML_OUTCOMES)

SOURCE_FLAGS = {
    catalog.RISK_EVALUATIONS: "--risk-evaluations",
    catalog.ML_OUTCOMES: "--ml-outcomes",
    catalog.RISK_SNAPSHOTS: "--risk-snapshots",
    catalog.REVENUE_DAILY: "--revenue-daily",
}


def prepare_args(
    model_id: str,
    sources: dict[str, DataRef],
    lake: str,
    output: str,
    tenant_id: str | None,
    partition_date: date | None,
) -> list[str]:
    """The ``python -m models.prepare`` command line, identical locally and on Azure ML."""
    uris = {table: storage.join(lake, table) for table in ALWAYS_PASSED}
    uris.update({table: ref.uri for table, ref in sources.items()})
    args = ["--model-id", model_id, "--output", output]
    for table, uri in sorted(uris.items()):
        args += [SOURCE_FLAGS[table], uri]
    if tenant_id:
        args += ["--tenant-id", tenant_id]
    if partition_date:
        args += ["--partition-date", partition_date.isoformat()]
    return args


def prepare_data(
    model_id: str,
    sources: dict[str, DataRef],
    lake: str,
    tenant_id: str | None = None,
    partition_date: date | None = None,
    compute: str = "local",
) -> DataRef:
    """Run ``models.prepare`` on the chosen compute; the output folder is keyed by its inputs."""
    key = step_key(model_id, {k: v.fingerprint for k, v in sources.items()}, tenant_id, partition_date)
    output = storage.join(lake, catalog.ML_TRAINING, model_id, key)
    if check_compute(compute) == "azureml":
        from deployments.azureml import jobs

        result = jobs.submit_prepare(
            model_id=model_id,
            sources={table: ref.uri for table, ref in sources.items()},
            tenant_id=tenant_id,
            partition_date=partition_date.isoformat() if partition_date else None,
            experiment_name="prepare-training",
        )
        prepared = storage.join(result.output_uri, "prepared.parquet")
        return DataRef(uri=prepared, fingerprint=f"{result.job_name}")
    run_local("models.prepare", prepare_args(model_id, sources, lake, output, tenant_id, partition_date), output)
    prepared = storage.join(output, "prepared.parquet")
    ref = DataRef(uri=prepared, fingerprint=storage.fingerprint(prepared))
    get_run_logger().info("prepared %s -> %s", model_id, prepared)
    return ref


@task(
    name="prepare",
    task_run_name="prepare {model_id}",
    cache_policy=CACHE_POLICY,
    persist_result=True,
    **RETRY_OPTIONS,
)
async def prepare(
    model_id: str,
    sources: dict[str, DataRef],
    lake: str,
    tenant_id: str | None = None,
    partition_date: date | None = None,
    compute: str = "local",
) -> DataRef:
    return await asyncio.to_thread(prepare_data, model_id, sources, lake, tenant_id, partition_date, compute)
