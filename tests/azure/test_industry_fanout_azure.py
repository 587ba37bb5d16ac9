"""retrain-all's industry fan-out on Azure ML: the industry trainings are parallel jobs on the
executing workspace, as many at once as AZURE_ML_MAX_CONCURRENT_JOBS allows, whatever this
machine's core count."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from flows import retrain_all as retrain_all_module
from flows.retrain_all import concurrency, retrain_all
from salesrisk import catalog
from tests.conformance.steps import FAST_PARAMS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

FAMILY = next(spec for spec in catalog.MODELS.values() if spec.industry_name)
MIN_CLOSED_DEALS = 140  # the small lake's software (221) and finance (143) deals meet it
FAST = {FAMILY.model_id: FAST_PARAMS.get(FAMILY.model_id, {})}  # the fan-out is the point, not the fits


def test_concurrency_is_bounded_by_the_setting_on_azure_ml_and_by_cores_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_ML_MAX_CONCURRENT_JOBS", "24")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert concurrency("azureml") == 24
    assert concurrency("local") == 2
    assert concurrency("azureml", max_parallel=3) == 3


def test_industry_trainings_run_as_parallel_azure_ml_jobs(
    azure_project: str, executing_workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALESRISK_COMPUTE", "azureml")
    monkeypatch.setenv("AZURE_ML_MAX_CONCURRENT_JOBS", "2")
    monkeypatch.setattr(retrain_all_module.os, "cpu_count", lambda: 1)  # the cores must not be the bound
    running, peak, lock = set(), [0], threading.Lock()
    execute = executing_workspace._execute

    def counted(job) -> None:  # the workspace's own execution, with the jobs in flight counted
        with lock:
            running.add(job.name)
            peak[0] = max(peak[0], len(running))
        try:
            execute(job)
        finally:
            with lock:
                running.discard(job.name)

    monkeypatch.setattr(executing_workspace, "_execute", counted)
    rows = asyncio.run(retrain_all(models=[FAMILY.model_id], deploy=False, min_closed_deals=MIN_CLOSED_DEALS,
                                   trainer_options_by_model=FAST))

    industries = [catalog.registered_name(FAMILY.model_id, i) for i in ("software", "finance")]
    assert [r["model"] for r in rows] == [FAMILY.registered_name, *industries]
    jobs = list(executing_workspace.jobs.values())
    trained = sorted(job.experiment for job in jobs if job.experiment in industries)
    assert trained == sorted(industries) and {job.status for job in jobs} == {"Completed"}
    assert peak[0] == 2  # the two industry jobs ran at once: the setting's bound, not the one core


def test_industry_models_are_served_on_azure_ml_by_one_router_deployment(
    azure_project: str, executing_workspace, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """With SALESRISK_SERVING=azureml the industry endpoint serves a router model (one deployment):
    each row goes to its industry's model, any other industry to the global model."""
    import json

    import pandas as pd

    from deployments import endpoints
    from deployments.azureml.endpoints import endpoint_name

    monkeypatch.setenv("SALESRISK_SERVING", "azureml")
    # forced: the industry models need not beat global here, the routing is what is tested
    asyncio.run(retrain_all(models=[FAMILY.model_id], force=True, min_closed_deals=MIN_CLOSED_DEALS,
                            trainer_options_by_model=FAST))

    key = FAMILY.industry_endpoint_key
    slots = endpoints.industry_slots(key)
    assert {i: s.model_name for i, s in slots.items()} == {i: catalog.registered_name(FAMILY.model_id, i) for i in ("software", "finance")}
    name = endpoint_name(key)
    endpoint = executing_workspace.endpoints[name]
    assert len([d for (e, _), d in executing_workspace.deployments.items() if e == name]) <= 2  # blue/green, not one per industry
    sample = executing_workspace.invocations[-1][2]["input_data"]
    columns = [c for c in sample["columns"] if c != catalog.INDUSTRY_ID]
    row = [v for c, v in zip(sample["columns"], sample["data"][0]) if c != catalog.INDUSTRY_ID]
    industries = ["finance", "energy", "software"]
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"input_data": {"columns": [*columns, catalog.INDUSTRY_ID], "data": [[*row, i] for i in industries]}}))
    answer = json.loads(executing_workspace.client.online_endpoints.invoke(endpoint_name=name, request_file=str(request)))
    answered = pd.DataFrame(answer["predictions"])
    assert list(answered["model_name"]) == [catalog.registered_name(FAMILY.model_id, "finance"), FAMILY.registered_name,
                                            catalog.registered_name(FAMILY.model_id, "software")]
    assert endpoint.traffic and sum(endpoint.traffic.values()) == 100
