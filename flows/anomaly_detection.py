"""Flow `anomaly-detection`: fetch -> prepare -> train -> evaluate -> register -> deploy for one model."""

from __future__ import annotations

from flows import cli  # first: flows/__init__ sets process defaults before Prefect loads

if __name__ == "__main__":
    cli.start_local_api()  # a local Prefect API starts while the modules below import

from datetime import date

from prefect import flow

from flows.pipeline import PipelineOptions, run_model_pipeline
from tasks.refs import ModelSummary


@flow(name="anomaly-detection")
async def anomaly_detection(
    training_data: str | None = None,
    model_name: str | None = None,
    param_contamination: float = 0.1,
    param_n_estimators: int = 100,
    lake: str | None = None,
    tenant_id: str | None = None,
    partition_date: date | None = None,
    compute: str | None = None,
    deploy: bool = True,
    force: bool = False,
    seed: int = 42,
) -> ModelSummary:
    """Train the Isolation Forest anomaly detector; deploy it if it passes the gate.

    Without training_data, the model's input is prepared from the lake (SALESRISK_LAKE).
    """
    parameters = dict(locals())
    options = PipelineOptions.from_parameters(parameters, ("param_contamination", "param_n_estimators"))
    return await run_model_pipeline("anomaly", options)


if __name__ == "__main__":
    raise SystemExit(cli.main(anomaly_detection))
