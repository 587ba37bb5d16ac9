"""SALESRISK_COMPUTE=azureml against a workspace that runs the jobs: every model's prepare and
train job completes, its outputs come back as the service reports them (``azureml://``), and the
gate reads the prepared file through them (regression: issue 13, drift bug 2)."""

from __future__ import annotations

import pytest

from salesrisk import catalog, storage
from tests.conformance import steps

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


def _jobs(workspace, step: str) -> list:
    return [job for job in workspace.jobs.values() if job.parent is None and job.tags.get("salesrisk.step") == step]


def _trainer_jobs(workspace) -> list:
    return [job for job in workspace.jobs.values() if job.parent is None and "salesrisk.step" not in job.tags]


@pytest.mark.parametrize("model_id", list(catalog.MODELS))
def test_azure_compute_prepares_trains_and_gates_every_model(
    model_id: str, azure_project: str, executing_workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[str] = []
    real_read = storage.read_parquet
    monkeypatch.setattr(storage, "read_parquet", lambda uri: read.append(uri) or real_read(uri))
    monkeypatch.setenv("SALESRISK_COMPUTE", "azureml")

    first = steps.run_model_flow(model_id, "azureml", deploy=True)

    (prepare,) = _jobs(executing_workspace, "prepare")  # submitted once: its reported output exists
    assert prepare.status == "Completed"
    tables = sorted(key for key, value in prepare.spec["inputs"].items() if isinstance(value, dict))
    assert tables == sorted(catalog.MODELS[model_id].sources)  # exactly the model's sources, mounted
    prepared = storage.join(prepare.outputs["training_prep"], "prepared.parquet")
    assert prepared.startswith("azureml://datastores/workspaceblobstore/paths/azureml/")
    assert storage.exists(prepared)
    (train,) = _trainer_jobs(executing_workspace)
    assert train.status == "Completed"
    assert first.version == "1" and first.scoring_url

    # A second candidate (another seed) meets the first as champion: the gate scores both on the
    # held-out rows of the prepared file, read where the job reported it.
    second = steps.run_model_flow(model_id, "azureml", deploy=True, params={"seed": 7})
    assert len(_jobs(executing_workspace, "prepare")) == 1  # the cached preparation is still there
    assert len(_trainer_jobs(executing_workspace)) == 2
    assert prepared in read, read
    assert second.version == "2"
