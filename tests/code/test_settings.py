from __future__ import annotations

import pytest

from salesrisk.settings import MissingSettingError, Settings


def test_defaults_need_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SALESRISK_LAKE", "SALESRISK_COMPUTE", "MLFLOW_TRACKING_URI", "DEPLOY_INSTANCE_TYPE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.lake == "./lake"
    assert settings.compute == "local"
    assert settings.deploy_instance_type == "Standard_DS2_v2"
    assert settings.deploy_instance_count == 1
    assert settings.mlflow_tracking_uri == "sqlite:///mlflow.db"


def test_runbook_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_INSTANCE_TYPE", "Standard_F4s_v2")
    monkeypatch.setenv("DEPLOY_INSTANCE_COUNT", "3")
    monkeypatch.setenv("SALESRISK_COMPUTE", "azureml")
    settings = Settings()
    assert (settings.deploy_instance_type, settings.deploy_instance_count, settings.compute) == (
        "Standard_F4s_v2", 3, "azureml")


def test_missing_azure_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_ML_SUBSCRIPTION_ID", "sub")
    monkeypatch.setenv("AZURE_ML_RESOURCE_GROUP", "rg")
    monkeypatch.delenv("AZURE_ML_WORKSPACE_NAME", raising=False)
    with pytest.raises(MissingSettingError, match="AZURE_ML_WORKSPACE_NAME"):
        Settings().require_azure()


def test_bad_compute_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESRISK_COMPUTE", "gpu-farm")
    with pytest.raises(ValueError, match="SALESRISK_COMPUTE"):
        Settings()


def test_fields_read_only_their_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """$HOME, $LAKE or $COMPUTE of the shell must not leak into the project's settings."""
    for name in ("SALESRISK_HOME", "SALESRISK_LAKE", "SALESRISK_COMPUTE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/somewhere/else")
    monkeypatch.setenv("LAKE", "/not/the/lake")
    monkeypatch.setenv("COMPUTE", "azureml")
    settings = Settings()
    assert str(settings.home) == ".salesrisk"
    assert settings.lake == "./lake"
    assert settings.compute == "local"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SALESRISK_SERVING", "azure", "'local' or 'azureml'"),
        ("SALESRISK_COMPUTE", "gpu", "'local' or 'azureml'"),
        ("DEPLOY_INSTANCE_COUNT", "0", "greater than or equal to 1"),
        ("SALESRISK_SERVE_PORT", "eighty", "valid integer"),
        ("SALESRISK_MONITOR_AUC_MIN", "1.5", "less than or equal to 1"),
    ],
)
def test_a_bad_setting_names_its_variable_value_and_form(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    from salesrisk.settings import InvalidSettingError, get_settings

    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidSettingError) as caught:
        get_settings()
    message = str(caught.value)
    assert f"{variable}={value!r}" in message and expected in message
    assert "Traceback" not in message and "pydantic" not in message


def test_settings_follow_the_environment_between_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """get_settings reuses what it read only while the environment is unchanged."""
    from salesrisk.settings import get_settings

    monkeypatch.setenv("SALESRISK_LAKE", "/lake-one")
    first = get_settings()
    assert get_settings() is first and first.lake == "/lake-one"
    monkeypatch.setenv("SALESRISK_LAKE", "/lake-two")
    assert get_settings().lake == "/lake-two"
    monkeypatch.delenv("SALESRISK_LAKE")
    assert get_settings().lake == "./lake"
