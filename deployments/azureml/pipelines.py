"""The runbook's two Azure ML pipelines: prepare, then train risk scoring or win probability.

Built with the same command nodes as the single jobs (:mod:`deployments.azureml.components`), so a
pipeline step runs exactly the command line of the job file of the same step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from deployments.azureml import components as c
from salesrisk import catalog

PIPELINE_FILES: dict[str, str] = {
    "risk_scoring": "azml-pipeline-prepare-then-risk-scoring.yaml",
    "win_probability": "azml-pipeline-prepare-then-win-probability.yaml",
}


def prepare_then_train(
    model_id: str,
    risk_evaluations: str | None = None,
    ml_outcomes: str | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    experiment_name: str | None = None,
    compute: str = c.DEFAULT_COMPUTE,
    code: str | os.PathLike = c.PROJECT_ROOT,
    default_deploy_flag: str = c.UNSET,
) -> Any:
    """A pipeline job: ``prepare`` (``models.prepare --model-id <model_id>``) feeds its
    ``training_prep`` to ``train`` (``models.<model_id>``).

    Pipeline inputs are the runbook's: ``risk_evaluations``, ``ml_outcomes``, ``model_name``,
    ``deploy_flag`` (and ``industry_id`` for risk scoring), plus ``tenant_id`` and
    ``partition_date`` for the preparation step. Outputs: ``training_prep`` and ``model_output``.
    """
    from azure.ai.ml import dsl

    if model_id not in PIPELINE_FILES:
        raise ValueError(f"model_id {model_id!r}: the runbook's pipelines train {' or '.join(PIPELINE_FILES)}")
    params = {key.replace("-", "_"): value for key, value in (params or {}).items()}
    spec = c.TRAINER_JOBS[model_id]
    prepare_node = c.prepare_command(model_id=model_id, compute=compute, code=code)
    train_node = c.trainer_command(model_id, compute=compute, code=code)
    with_industry = any(p.name == "industry_id" for p in spec.params)

    def body(risk_evaluations, ml_outcomes, model_name, deploy_flag, tenant_id, partition_date, industry_id=None):
        prepare = prepare_node(
            risk_evaluations=risk_evaluations,
            ml_outcomes=ml_outcomes,
            model_id=model_id,
            tenant_id=tenant_id,
            partition_date=partition_date,
        )
        extra = {"industry_id": industry_id} if with_industry else {}
        train = train_node(
            training_data=prepare.outputs[c.PREPARE_OUTPUT],
            model_name=model_name,
            deploy_flag=deploy_flag,
            **extra,
        )
        return {c.PREPARE_OUTPUT: prepare.outputs[c.PREPARE_OUTPUT], c.MODEL_OUTPUT: train.outputs[c.MODEL_OUTPUT]}

    build = dsl.pipeline(
        name=f"prepare_then_{model_id}",
        display_name=f"prepare then train {catalog.registered_name(model_id)}",
        description=f"runbook pipeline {PIPELINE_FILES[model_id]}",
        experiment_name=experiment_name,
        default_compute=compute,
    )(body)
    inputs: dict[str, Any] = {
        "risk_evaluations": c.data_input(risk_evaluations or c.default_input_path(catalog.RISK_EVALUATIONS)),
        "ml_outcomes": c.data_input(ml_outcomes or c.default_input_path(catalog.ML_OUTCOMES)),
        "model_name": str(params.get("model_name") or spec.model_name),
        "deploy_flag": c.deploy_flag(params, default_deploy_flag),
        "tenant_id": str(params.get("tenant_id") or c.UNSET),
        "partition_date": str(params.get("partition_date") or c.UNSET),
    }
    if with_industry:
        inputs["industry_id"] = str(params.get("industry_id") or c.UNSET)
    job = build(**inputs)
    job.tags = {"salesrisk.model_id": model_id, "salesrisk.step": "prepare-then-train"}
    return job
