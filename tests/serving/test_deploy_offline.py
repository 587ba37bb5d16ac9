"""deploy / rollback / current with no server running: the smoke test runs in process."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from deployments import endpoint_map, endpoints
from deployments.local import keys
from deployments.local import state as st
from salesrisk.settings import MissingSettingError


pytestmark = pytest.mark.slow  # trains real models

def _state(home: Path) -> dict:
    return json.loads((home / "home" / "endpoints" / "state.json").read_text())


def test_first_deploy_goes_blue_and_writes_the_endpoint_map(offline, registered):
    win = registered["win_probability"]
    result = endpoints.deploy("win_probability", win.name, win.versions[0], sample=win.sample)

    assert (result.colour, result.version, result.previous_version) == ("blue", win.versions[0], None)
    port = os.environ["SALESRISK_SERVE_PORT"]
    assert result.scoring_url == f"http://127.0.0.1:{port}/score/win_probability"
    ep = _state(offline)["endpoints"]["win_probability"]
    assert ep["traffic"] == {"blue": 100}
    assert ep["deployments"]["blue"]["version"] == win.versions[0]
    assert (Path(ep["deployments"]["blue"]["path"]) / "MLmodel").exists()
    document = yaml.safe_load((offline / "config" / "endpoints.yaml").read_text())
    assert document == {"azure_ml": {"endpoints": {"win_probability": result.scoring_url}}}
    assert endpoints.current("win_probability") == result


def test_second_deploy_goes_green_and_rollback_returns_to_blue(offline, registered):
    win = registered["win_probability"]
    endpoints.deploy("win_probability", win.name, win.versions[0])  # default sample: the input example
    second = endpoints.deploy("win_probability", win.name, win.versions[1])
    assert (second.colour, second.version, second.previous_version) == ("green", win.versions[1], win.versions[0])

    back = endpoints.rollback("win_probability", reason="AUC dropped in monitoring")
    assert (back.colour, back.version, back.previous_version) == ("blue", win.versions[0], win.versions[1])
    ep = _state(offline)["endpoints"]["win_probability"]
    assert ep["traffic"] == {"blue": 100, "green": 0}
    assert ep["history"][-1]["action"] == "rollback"
    assert ep["history"][-1]["reason"] == "AUC dropped in monitoring"
    assert endpoints.current("win_probability").version == win.versions[0]


def test_rollback_to_a_registered_version_deploys_it(offline, registered):
    win = registered["win_probability"]
    endpoints.deploy("win_probability", win.name, win.versions[0])
    endpoints.deploy("win_probability", win.name, win.versions[1])
    endpoints.deploy("win_probability", win.name, win.versions[1])  # both colours hold v2 now

    result = endpoints.rollback("win_probability", to_version=win.versions[0], reason="pin v1")
    assert result.version == win.versions[0]
    history = _state(offline)["endpoints"]["win_probability"]["history"]
    assert history[-1]["action"] == "rollback" and history[-1]["reason"] == "pin v1"


def test_failed_smoke_test_leaves_traffic_and_the_standby_as_they_were(offline, registered):
    win = registered["win_probability"]
    endpoints.deploy("win_probability", win.name, win.versions[0])
    endpoints.deploy("win_probability", win.name, win.versions[1])
    before = _state(offline)["endpoints"]["win_probability"]

    with pytest.raises(endpoints.DeployError, match="smoke test"):
        endpoints.deploy("win_probability", win.name, win.versions[2])  # the broken version

    after = _state(offline)["endpoints"]["win_probability"]
    assert after["traffic"] == before["traffic"] == {"green": 100, "blue": 0}
    assert after["deployments"] == before["deployments"]
    assert after["history"][-1]["action"] == "deploy-failed"
    assert endpoints.current("win_probability").version == win.versions[1]
    # the standby still holds v1, so a rollback still finds it
    assert endpoints.rollback("win_probability", reason="after failed deploy").version == win.versions[0]


def test_first_deploy_failing_its_smoke_test_leaves_nothing_deployed(offline, registered):
    win = registered["win_probability"]
    with pytest.raises(endpoints.DeployError):
        endpoints.deploy("win_probability", win.name, win.versions[2])
    assert endpoints.current("win_probability") is None
    assert _state(offline)["endpoints"]["win_probability"]["deployments"] == {}


def test_rollback_without_a_previous_deployment_says_so(offline, registered):
    with pytest.raises(endpoints.DeployError, match="nothing deployed"):
        endpoints.rollback("anomaly")
    reg = registered["anomaly"]
    endpoints.deploy("anomaly", reg.name, reg.versions[0])
    with pytest.raises(endpoints.DeployError, match="no previous deployment"):
        endpoints.rollback("anomaly")


def test_unknown_key_unknown_version_and_unconfigured_backend_are_clear_errors(offline, registered, monkeypatch):
    with pytest.raises(endpoints.DeployError, match="unknown endpoint key 'nope'"):
        endpoints.deploy("nope", "x", "1")
    with pytest.raises(endpoints.DeployError, match="win-probability-model"):
        endpoints.deploy("win_probability", "win-probability-model", "999")
    monkeypatch.setenv("SALESRISK_SERVING", "azureml")  # with no AZURE_ML_* workspace set
    with pytest.raises(MissingSettingError, match="AZURE_ML_SUBSCRIPTION_ID"):
        endpoints.current("win_probability")
    with pytest.raises(endpoints.DeployError, match="'nowhere' is unknown"):
        endpoints.backend("nowhere")


def test_backends_plug_in_by_name(offline, monkeypatch):
    seen = []

    class Fake:
        def current(self, key):
            seen.append(key)
            return None

    monkeypatch.setitem(endpoints.BACKENDS, "azureml", Fake)
    monkeypatch.setenv("SALESRISK_SERVING", "azureml")
    assert endpoints.current("anomaly") is None and seen == ["anomaly"]


def test_endpoint_map_merges_and_prints_env_lines(offline):
    path = offline / "config" / "endpoints.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({"other": {"keep": 1}, "azure_ml": {"endpoints": {"anomaly": "http://a"}}}))

    lines = endpoint_map.update({"win_probability": "http://w"})

    assert lines == ["AZURE_ML_ENDPOINT_ANOMALY=http://a", "AZURE_ML_ENDPOINT_WIN_PROBABILITY=http://w"]
    document = yaml.safe_load(path.read_text())
    assert document["other"] == {"keep": 1}
    assert endpoint_map.read() == {"anomaly": "http://a", "win_probability": "http://w"}
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_endpoint_map_refuses_a_file_of_the_wrong_shape(offline):
    path = offline / "config" / "endpoints.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("- just\n- a list\n")
    with pytest.raises(endpoint_map.EndpointMapError, match="endpoints.yaml"):
        endpoint_map.update({"anomaly": "http://a"})
    assert path.read_text() == "- just\n- a list\n"


def test_generated_key_is_stored_owner_only_and_reused(offline, monkeypatch):
    monkeypatch.delenv("SALESRISK_ENDPOINT_KEY", raising=False)
    first = keys.endpoint_key()
    assert len(first) >= 32 and keys.endpoint_key() == first
    assert stat.S_IMODE(keys.key_path().stat().st_mode) == 0o600
    monkeypatch.setenv("SALESRISK_ENDPOINT_KEY", "from-settings")
    assert keys.endpoint_key() == "from-settings"


def test_state_file_is_rewritten_atomically_with_a_growing_revision(offline, registered):
    reg = registered["anomaly"]
    endpoints.deploy("anomaly", reg.name, reg.versions[0])
    first = st.load().revision
    endpoints.deploy("anomaly", reg.name, reg.versions[0])
    assert st.load().revision > first
    folder = st.state_path().parent
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_rollback_to_a_copy_from_a_replaced_store_leaves_the_champion_alone(offline, registered):
    """A store deleted or replaced at the same URI numbers its versions from 1 again: rolling back
    to a colour whose copy came from the old store must not make this store's same-numbered
    version (another model) the champion."""
    from prefect.logging import disable_run_logger

    from salesrisk import registry
    from tasks.promote import record_serving

    win = registered["win_probability"]
    first = endpoints.deploy("win_probability", win.name, win.versions[0])
    assert first.registration == registry.registration(win.name, win.versions[0])
    endpoints.deploy("win_probability", win.name, win.versions[1])
    blue = Path(_state(offline)["endpoints"]["win_probability"]["deployments"]["blue"]["path"])
    old_store = "0123456789abcdef mlflow-artifacts:/1/0123456789abcdef/artifacts/model"
    (blue / ".registered-from").write_text(old_store)  # what a copy of the replaced store's v1 holds

    back = endpoints.rollback("win_probability", reason="bad week")
    assert (back.colour, back.version, back.registration) == ("blue", win.versions[0], old_store)
    assert endpoints.current("win_probability").registration == old_store

    registry.client().set_registered_model_alias(win.name, registry.CHAMPION, win.versions[1])
    with disable_run_logger():
        assert record_serving(back, "rollback", "bad week") is None
    assert registry.alias_version(win.name, registry.CHAMPION) == win.versions[1]
