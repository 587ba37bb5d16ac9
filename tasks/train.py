"""Train one model by handing its trainer command line to the compute backend."""

from __future__ import annotations

import asyncio

import json
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from deployments.compute import run_local, staged_output
from models import specs
from salesrisk import storage
from tasks.compute import check_compute, runs_root, step_key
from tasks.policies import RETRY_OPTIONS, TRAIN_CACHE_POLICY
from tasks.refs import DataRef, TrainedModel
from tasks.tracking import ensure_store


def trainer_args(training_data: str, output: str, model_name: str, params: dict[str, Any]) -> list[str]:
    """The trainer's command line: ``--flag value`` per parameter, ``--flag`` for a true switch."""
    args = ["--training-data", training_data, "--output", output, "--model-name", model_name]
    for name, value in sorted(params.items()):
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args


def train_model(
    model_id: str,
    training_data: DataRef,
    model_name: str,
    params: dict[str, Any],
    compute: str = "local",
) -> TrainedModel:
    logger = get_run_logger()
    if check_compute(compute) == "azureml":
        from deployments.azureml import jobs

        result = jobs.submit_training(
            model_id=model_id,
            training_data=training_data.uri,
            output=None,
            params={"model_name": model_name, **params},
            experiment_name=model_name,
        )
        logger.info("Azure ML job %s: %s", result.job_name, result.studio_url)
        return TrainedModel(
            model_id, model_name, result.output_uri, result.metrics, result.job_name, training_data, params, "azureml"
        )
    output = storage.join(runs_root(), model_id, step_key(model_name, training_data.fingerprint, params))
    ensure_store()  # retrain-all creates it beside the first preparations: wait for it, or make it
    # The trainer writes into a staging folder that becomes ``output`` only once it exited 0 and
    # wrote run.json: a killed or failed trainer leaves nothing a later step could mistake for a result.
    with staged_output(output) as staging:
        step = run_local(specs.get(model_id).trainer.module, trainer_args(training_data.uri, staging, model_name, params), staging)
        run = json.loads(Path(staging, "run.json").read_text())
    logger.info("trained %s: %s", model_name, {k: round(v, 4) for k, v in step.metrics.items()})
    return TrainedModel(model_id, model_name, output, step.metrics, run.get("run_id"), training_data, params)


@task(
    name="train",
    task_run_name="train {model_name}",
    cache_policy=TRAIN_CACHE_POLICY,
    persist_result=True,
    **RETRY_OPTIONS,
)
async def train(
    model_id: str,
    training_data: DataRef,
    model_name: str,
    params: dict[str, Any],
    compute: str = "local",
) -> TrainedModel:
    return await asyncio.to_thread(train_model, model_id, training_data, model_name, params, compute)
