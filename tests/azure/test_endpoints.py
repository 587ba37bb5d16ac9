"""Managed online endpoints through the MLClient double: blue first, then safe rollout to the other
colour (0% -> smoke request -> 100%), failures that leave traffic alone, and rollback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from deployments import endpoints
from deployments.azureml.endpoints import (
    TAG_PREVIOUS_VERSION,
    AzureMLBackend,
    check_response,
    endpoint_name,
)
from salesrisk import catalog

KEY = "anomaly"
NAME = endpoint_name(KEY)
MODEL = catalog.MODELS["anomaly"].registered_name
SAMPLE = pd.DataFrame({"amount": [1000.0, 2500.0], "days_to_close": [10.0, 30.0]})
EXAMPLE = pd.DataFrame({"amount": [1.0, 2.0, 3.0], "days_to_close": [1.0, 2.0, 3.0]})  # saved with the model


@pytest.fixture(scope="module")
def mlflow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MLflow model folder with an input example: what models.download brings back."""
    import mlflow.pyfunc

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            return model_input

    path = tmp_path_factory.mktemp("registered") / "model"
    mlflow.pyfunc.save_model(str(path), python_model=Echo(), input_example=EXAMPLE, pip_requirements=["mlflow"])
    return path


@pytest.fixture()
def backend(workspace, mlflow_model, monkeypatch) -> AzureMLBackend:
    monkeypatch.setenv("DEPLOY_INSTANCE_TYPE", "Standard_DS3_v2")
    monkeypatch.setenv("DEPLOY_INSTANCE_COUNT", "2")
    workspace.model_dir = mlflow_model
    return AzureMLBackend()


def test_endpoint_names_fit_azure_rules() -> None:
    names = [endpoint_name(key) for key in catalog.ENDPOINT_KEYS]
    assert all(3 <= len(n) <= 32 and n[0].isalpha() and set(n) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") for n in names)
    assert len(set(names)) == len(names)


def test_first_deploy_goes_to_blue_with_the_configured_instances(backend, workspace, tmp_path) -> None:
    result = backend.deploy(KEY, MODEL, "1", sample=SAMPLE)

    assert (result.colour, result.version, result.previous_version) == ("blue", "1", None)
    assert workspace.traffic(NAME) == {"blue": 100}
    deployment = workspace.deployments[(NAME, "blue")]
    assert deployment.model == f"azureml:{MODEL}:1"
    assert (deployment.instance_type, deployment.instance_count) == ("Standard_DS3_v2", 2)
    endpoint = workspace.endpoints[NAME]
    assert endpoint.auth_mode == "key" and endpoint.tags["salesrisk.endpoint_key"] == KEY
    # the smoke request went to blue alone, as MLflow's input_data split
    assert workspace.invocations == [(NAME, "blue", {"input_data": {"columns": ["amount", "days_to_close"], "data": [[1000.0, 10.0], [2500.0, 30.0]]}})]
    written = yaml.safe_load((tmp_path / "config" / "endpoints.yaml").read_text())
    assert written == {"azure_ml": {"endpoints": {KEY: result.scoring_url}}}
    assert result.scoring_url.startswith(f"https://{NAME}.")


def test_later_version_rolls_out_safely_to_green(backend, workspace) -> None:
    backend.deploy(KEY, MODEL, "1", sample=SAMPLE)
    workspace.traffic_history.clear()
    workspace.invocations.clear()

    result = backend.deploy(KEY, MODEL, "2")  # no sample: the model's own input example

    assert (result.colour, result.version, result.previous_version) == ("green", "2", "1")
    # green held 0% while it was smoke-tested, then took everything
    assert [t for _, t in workspace.traffic_history] == [{"blue": 100, "green": 0}, {"green": 100, "blue": 0}]
    assert [(n, d, len(b["input_data"]["data"])) for n, d, b in workspace.invocations] == [(NAME, "green", 3)]
    assert workspace.endpoints[NAME].tags[TAG_PREVIOUS_VERSION] == "1"
    current = backend.current(KEY)
    assert (current.colour, current.version, current.previous_version) == ("green", "2", "1")


def test_failed_smoke_request_leaves_traffic_on_the_old_colour(backend, workspace) -> None:
    backend.deploy(KEY, MODEL, "1", sample=SAMPLE)
    workspace.broken_versions.add("2")

    with pytest.raises(endpoints.DeployError, match="smoke request; traffic stays on blue") as raised:
        backend.deploy(KEY, MODEL, "2", sample=SAMPLE)

    assert "container crashed" in str(raised.value)  # the deployment's log tail
    assert workspace.traffic(NAME) == {"blue": 100, "green": 0}
    assert backend.current(KEY).version == "1"


def test_failed_deployment_leaves_traffic_on_the_old_colour(backend, workspace) -> None:
    backend.deploy(KEY, MODEL, "1", sample=SAMPLE)
    workspace.failing_deployments.add("2")

    with pytest.raises(endpoints.DeployError, match="failed to create the deployment; traffic stays on blue"):
        backend.deploy(KEY, MODEL, "2", sample=SAMPLE)

    assert workspace.traffic(NAME) == {"blue": 100}
    assert (NAME, "green") not in workspace.deployments
    assert [d for _, d, _ in workspace.invocations] == ["blue"]  # the broken one was never called


def test_rollback_moves_traffic_back_and_records_why(backend, workspace) -> None:
    backend.deploy(KEY, MODEL, "1", sample=SAMPLE)
    backend.deploy(KEY, MODEL, "2", sample=SAMPLE)
    deployments_before = dict(workspace.deployments)

    result = backend.rollback(KEY, reason="F1 dropped")

    assert (result.colour, result.version, result.previous_version) == ("blue", "1", "2")
    assert workspace.traffic(NAME) == {"blue": 100, "green": 0}
    assert workspace.deployments == deployments_before  # a traffic move, no redeploy
    assert "F1 dropped" in workspace.endpoints[NAME].tags["salesrisk.last_action"]
    assert backend.current(KEY).version == "1"


def test_rollback_redeploys_the_previous_version_when_its_colour_was_overwritten(backend, workspace) -> None:
    backend.deploy(KEY, MODEL, "1", sample=SAMPLE)  # blue
    backend.deploy(KEY, MODEL, "2", sample=SAMPLE)  # green, previous 1
    workspace.broken_versions.add("3")
    with pytest.raises(endpoints.DeployError):
        backend.deploy(KEY, MODEL, "3", sample=SAMPLE)  # overwrote blue (v1) with a broken v3 at 0%
    assert workspace.traffic(NAME) == {"green": 100, "blue": 0}

    result = backend.rollback(KEY, reason="v2 is slow")

    assert (result.colour, result.version) == ("blue", "1")
    assert workspace.deployments[(NAME, "blue")].model == f"azureml:{MODEL}:1"
    assert workspace.traffic(NAME) == {"blue": 100, "green": 0}


def test_rollback_to_a_version_and_nothing_to_roll_back(backend, workspace) -> None:
    with pytest.raises(endpoints.DeployError, match="nothing deployed"):
        backend.rollback(KEY)
    backend.deploy(KEY, MODEL, "1", sample=SAMPLE)
    with pytest.raises(endpoints.DeployError, match="no previous version"):
        backend.rollback(KEY)
    result = backend.rollback(KEY, to_version="5", reason="pin")
    assert (result.colour, result.version) == ("green", "5")
    with pytest.raises(endpoints.DeployError, match="already serves"):
        backend.rollback(KEY, to_version="5")


def test_the_serving_interface_routes_to_azure(workspace, mlflow_model, monkeypatch) -> None:
    """deployments.endpoints.deploy/current/rollback with SALESRISK_SERVING=azureml."""
    workspace.model_dir = mlflow_model
    monkeypatch.setenv("SALESRISK_SERVING", "azureml")
    assert endpoints.current(KEY) is None
    endpoints.deploy(KEY, MODEL, "1", sample=SAMPLE)
    endpoints.deploy(KEY, MODEL, "2", sample=SAMPLE)
    assert endpoints.current(KEY).colour == "green"
    assert endpoints.rollback(KEY, reason="test").version == "1"


def test_smoke_response_must_carry_predictions() -> None:
    check_response('{"predictions": [1, 0]}', 2)
    check_response("[0.1, 0.2]", 2)
    check_response('[{"risk_30": 0.1, "risk_60": 0.2, "risk_90": 0.3}]', 5)  # one trajectory per opportunity
    for bad in ("[]", '{"predictions": []}', "<html>502</html>", '{"error": "x"}'):
        with pytest.raises(endpoints.DeployError):
            check_response(bad, 2)
