"""The runbook's two pipelines: prepare then risk scoring, prepare then win probability.

They differ from the model flows only in taking the source tables as explicit URIs, as the
runbook's ``azml-pipeline-prepare-then-*.yaml`` jobs do.
"""

from __future__ import annotations

from flows import cli  # first: flows/__init__ sets process defaults before Prefect loads

if __name__ == "__main__":
    cli.start_local_api()  # a local Prefect API starts while the modules below import

from datetime import date

from prefect import flow

from flows.pipeline import PipelineOptions, run_model_pipeline
from salesrisk import catalog
from tasks.refs import ModelSummary


def _sources(risk_evaluations: str, ml_outcomes: str) -> dict[str, str]:
    return {catalog.RISK_EVALUATIONS: risk_evaluations, catalog.ML_OUTCOMES: ml_outcomes}


@flow(name="prepare-then-risk-scoring")
async def prepare_then_risk_scoring(
    risk_evaluations: str,
    ml_outcomes: str,
    model_name: str | None = None,
    industry_id: str | None = None,
    tenant_id: str | None = None,
    partition_date: date | None = None,
    compute: str | None = None,
    deploy: bool = True,
    force: bool = False,
) -> ModelSummary:
    """Join /risk_evaluations + /ml_outcomes, then train, gate, register and deploy risk scoring."""
    return await run_model_pipeline(
        "risk_scoring",
        PipelineOptions(model_name=model_name, tenant_id=tenant_id,
                partition_date=partition_date, compute=compute, deploy=deploy, force=force,
                params={"industry_id": industry_id}, sources=_sources(risk_evaluations, ml_outcomes)),
    )


@flow(name="prepare-then-win-probability")
async def prepare_then_win_probability(
    risk_evaluations: str,
    ml_outcomes: str,
    model_name: str | None = None,
    tenant_id: str | None = None,
    partition_date: date | None = None,
    compute: str | None = None,
    deploy: bool = True,
    force: bool = False,
) -> ModelSummary:
    """Join /risk_evaluations + /ml_outcomes, then train, gate, register and deploy win probability."""
    return await run_model_pipeline(
        "win_probability",
        PipelineOptions(model_name=model_name, tenant_id=tenant_id,
                partition_date=partition_date, compute=compute, deploy=deploy, force=force,
                params={}, sources=_sources(risk_evaluations, ml_outcomes)),
    )


if __name__ == "__main__":
    import sys

    PIPELINES = {"risk-scoring": prepare_then_risk_scoring, "win-probability": prepare_then_win_probability}
    if len(sys.argv) < 2 or sys.argv[1] not in PIPELINES:
        print(f"usage: python flows/pipelines.py {{{','.join(PIPELINES)}}} [--help | options]", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(cli.main(PIPELINES[sys.argv[1]], sys.argv[2:]))
