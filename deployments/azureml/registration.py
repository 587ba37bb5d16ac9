"""Register a trainer job's MLflow model in the Azure ML workspace, straight from the job output.

The trainer writes an MLflow model to ``<output>/model``; registering that folder by its
``azureml://jobs/<job>/outputs/model_output/paths/model/`` URI keeps the model's lineage to the job
(and its metrics, logged to the job's run through MLflow) without downloading anything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from deployments.azureml import client as azure_client
from deployments.azureml import components

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

log = logging.getLogger("salesrisk.azureml")

MODEL_FOLDER = "model"


def job_model_uri(job_name: str, output_name: str = components.MODEL_OUTPUT) -> str:
    return f"azureml://jobs/{job_name}/outputs/{output_name}/paths/{MODEL_FOLDER}/"


def model_entity(
    model_name: str,
    job_name: str,
    *,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, Any] | None = None,
    output_name: str = components.MODEL_OUTPUT,
) -> Any:
    """The ``Model`` asset (type ``mlflow_model``) for the job's model folder; metrics become
    properties so the Studio model page shows what the version scored."""
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Model

    return Model(
        name=model_name,
        path=job_model_uri(job_name, output_name),
        type=AssetTypes.MLFLOW_MODEL,
        description=f"trained by Azure ML job {job_name}",
        tags={"salesrisk.job": job_name, **{str(k): str(v) for k, v in (tags or {}).items()}},
        properties={f"metric.{k}": str(v) for k, v in (metrics or {}).items()},
    )


def register_job_model(
    model_name: str,
    job_name: str,
    *,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, Any] | None = None,
    output_name: str = components.MODEL_OUTPUT,
    client: MLClient | None = None,
) -> str:
    """Register the job's MLflow model as a new version of ``model_name``; return the version."""
    client = azure_client.resolve(client)
    model = model_entity(model_name, job_name, metrics=metrics, tags=tags, output_name=output_name)
    registered = client.models.create_or_update(model)
    version = str(registered.version)
    log.info("registered %s version %s from Azure ML job %s", model_name, version, job_name)
    return version
