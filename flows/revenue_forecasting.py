"""Flow `revenue-forecasting`: fetch -> prepare -> train -> evaluate -> register -> deploy for one model."""

from __future__ import annotations

from flows import cli  # first: flows/__init__ sets process defaults before Prefect loads

if __name__ == "__main__":
    cli.start_local_api()  # a local Prefect API starts while the modules below import

from datetime import date

from prefect import flow

from flows.pipeline import PipelineOptions, run_model_pipeline
from tasks.refs import ModelSummary


@flow(name="revenue-forecasting")
async def revenue_forecasting(
    training_data: str | None = None,
    model_name: str | None = None,
    lake: str | None = None,
    tenant_id: str | None = None,
    partition_date: date | None = None,
    compute: str | None = None,
    deploy: bool = True,
    force: bool = False,
    seed: int = 42,
) -> ModelSummary:
    """Train the NeuralProphet revenue forecast; deploy it if it passes the gate.

    Without training_data, the model's input is prepared from the lake (SALESRISK_LAKE).
    """
    parameters = dict(locals())
    return await run_model_pipeline("revenue_forecast", PipelineOptions.from_parameters(parameters, ()))


if __name__ == "__main__":
    raise SystemExit(cli.main(revenue_forecasting))
