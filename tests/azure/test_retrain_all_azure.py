"""retrain-all to the end for every model with SALESRISK_COMPUTE=azureml and
SALESRISK_SERVING=azureml, against the executing workspace: every prepare and train job runs,
every version is registered in the workspace, and every managed endpoint answers with its model."""

from __future__ import annotations

import json

import mlflow.pyfunc
import pandas as pd
import pytest

from deployments.azureml.endpoints import endpoint_name
from salesrisk import catalog
from tests.conformance import steps

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


def test_retrain_all_runs_to_the_end_on_azure_ml(
    azure_project: str, executing_workspace, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("SALESRISK_COMPUTE", "azureml")
    monkeypatch.setenv("SALESRISK_SERVING", "azureml")

    rows = steps.run_retrain_all(list(catalog.MODELS), compute=None)

    assert [row["model"] for row in rows] == [catalog.registered_name(m) for m in catalog.MODELS]
    jobs = list(executing_workspace.jobs.values())
    assert len(jobs) == 2 * len(catalog.MODELS) and {job.status for job in jobs} == {"Completed"}
    for model_id in catalog.MODELS:
        key = catalog.endpoint_key(model_id)
        row = next(r for r in rows if r["model"] == catalog.registered_name(model_id))
        assert row["version"] == "1" and row["endpoint"] == key
        assert row["scoring URL"] == f"`POST https://{endpoint_name(key)}.westeurope.inference.ml.azure.com/score`"
        endpoint = executing_workspace.endpoints[endpoint_name(key)]
        assert endpoint.traffic == {"blue": 100}
        # the deploy's smoke request went to the model itself: one answer per sample row
        name, colour, body = [call for call in executing_workspace.invocations if call[0] == endpoint_name(key)][-1]
        request = tmp_path / f"{key}.json"
        request.write_text(json.dumps(body))
        answer = json.loads(executing_workspace.client.online_endpoints.invoke(endpoint_name=name, request_file=str(request)))
        answer = answer["predictions"]
        sample = pd.DataFrame(body["input_data"]["data"], columns=body["input_data"]["columns"])
        expected = mlflow.pyfunc.load_model(f"models:/{row['model']}/1").predict(sample)
        assert answer and len(answer) == len(expected)
