"""Flow `risk-trajectory-lstm`: fetch -> prepare -> train -> evaluate -> register -> deploy for one model."""

from __future__ import annotations

from flows import cli  # first: flows/__init__ sets process defaults before Prefect loads

if __name__ == "__main__":
    cli.start_local_api()  # a local Prefect API starts while the modules below import

from datetime import date

from prefect import flow

from flows.pipeline import PipelineOptions, run_model_pipeline
from tasks.refs import ModelSummary


@flow(name="risk-trajectory-lstm")
async def risk_trajectory(
    training_data: str | None = None,
    model_name: str | None = None,
    sequence_length: int = 30,
    lake: str | None = None,
    tenant_id: str | None = None,
    partition_date: date | None = None,
    compute: str | None = None,
    deploy: bool = True,
    force: bool = False,
    seed: int = 42,
) -> ModelSummary:
    """Train the LSTM that forecasts each opportunity's risk at +30/60/90 days; deploy it if it passes the gate.

    Without training_data, the model's input is prepared from the lake (SALESRISK_LAKE).
    """
    parameters = dict(locals())
    options = PipelineOptions.from_parameters(parameters, ("sequence_length",))
    return await run_model_pipeline("risk_trajectory", options)


if __name__ == "__main__":
    raise SystemExit(cli.main(risk_trajectory))
