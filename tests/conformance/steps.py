"""The one module of the conformance and Azure tests that knows the flows' and tasks' names.

Everything else drives the product through ``deployments.endpoints``, ``salesrisk`` and the
registry, as a user would after a flow ran; when the flows are reorganised, this file changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import flow

from flows.pipeline import PipelineOptions, run_model_pipeline
from flows.retrain_all import retrain_all
from tasks.refs import ModelSummary

# Trainer options that keep a fit to seconds on the test lake (model id -> trainer flags). A model
# not named here trains with its defaults.
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "risk_scoring": {"iterations": 60},
    "win_probability": {"iterations": 60, "cv_folds": 2},
    "risk_trajectory": {"epochs": 2},
    "revenue_forecast": {"epochs": 10, "origins": 2, "calibration_origins": 2},
    "anomaly": {"param_n_estimators": 50},
}


@flow(name="conformance-model-pipeline")
async def _model_pipeline(model_id: str, compute: str, deploy: bool, params: dict[str, Any]) -> ModelSummary:
    return await run_model_pipeline(model_id, PipelineOptions(compute=compute, deploy=deploy, params=params))


def run_model_flow(
    model_id: str, compute: str, *, deploy: bool = False, params: dict[str, Any] | None = None
) -> ModelSummary:
    """One model's pipeline (prepare -> train -> gate -> register [-> deploy]) from the lake in
    ``SALESRISK_LAKE``, on ``compute``, with fast trainer options plus ``params``; raises if the
    flow run fails."""
    options = {**FAST_PARAMS.get(model_id, {}), **(params or {})}
    return asyncio.run(_model_pipeline(model_id, compute, deploy, options))


def run_retrain_all(models: list[str], compute: str | None) -> list[dict[str, Any]]:
    """The retrain-all flow as ``python flows/retrain_all.py`` runs it, with fast trainer options;
    raises if any model fails."""
    return asyncio.run(retrain_all(models=models, compute=compute, trainer_options_by_model=FAST_PARAMS))
