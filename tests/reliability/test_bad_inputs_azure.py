"""Bad Azure references and missing Azure settings: one clear error naming the reference or the
variable, raised before anything touches the network (every case runs under ``no_network``,
which refuses and records any connection or name lookup beyond loopback)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.reliability import frames
from tests.reliability.bad_input_support import (  # noqa: F401  (fixtures)
    assert_rejected,
    assert_unchanged,
    files_under,
    isolated_env,
    no_network,
    run_main,
    snapshot,
)

AZURE_VARIABLES = ("AZURE_ML_SUBSCRIPTION_ID", "AZURE_ML_RESOURCE_GROUP", "AZURE_ML_WORKSPACE_NAME")


@pytest.mark.parametrize(
    "reference",
    [
        "azureml:risk_evaluations",
        "azureml:risk_evaluations:v3",
        "azureml::3",
        "azureml:risk evaluations:3",
        "azureml:risk_evaluations:3:extra",
    ],
    ids=["no-version", "version-not-a-number", "no-name", "space-in-name", "extra-part"],
)
def test_bad_azureml_reference_is_named_by_fetch(reference: str, no_network: list[str]) -> None:
    from tasks.fetch import fetch

    with pytest.raises(ValueError) as raised:
        asyncio.run(fetch.fn(reference))
    assert str(raised.value).startswith(f"{reference}: ")
    assert "expected azureml:<name>:<version>" in str(raised.value)
    assert no_network == []


def test_good_azureml_reference_resolves_offline(no_network: list[str]) -> None:
    """The control for the cases above: a well-formed reference is its own fingerprint, no lookup."""
    from tasks.fetch import fetch

    ref = asyncio.run(fetch.fn("azureml:risk_evaluations:3"))
    assert (ref.uri, ref.fingerprint) == ("azureml:risk_evaluations:3", "azureml:risk_evaluations:3")
    assert no_network == []


@pytest.mark.parametrize("missing", AZURE_VARIABLES)
def test_missing_workspace_setting_is_named_by_the_client(missing: str, no_network: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from deployments.azureml import client
    from salesrisk.settings import MissingSettingError

    for name in AZURE_VARIABLES:
        monkeypatch.setenv(name, f"value-of-{name.lower()}")
    monkeypatch.delenv(missing)
    with pytest.raises(MissingSettingError) as raised:
        client.get_ml_client()
    assert missing in str(raised.value)
    assert [name for name in AZURE_VARIABLES if name in str(raised.value)] == [missing]
    assert no_network == []


def test_deploy_to_azure_without_workspace_fails_before_training(
    isolated_env: Path, no_network: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``--deploy`` with SALESRISK_SERVING=azureml and AZURE_ML_SUBSCRIPTION_ID unset: exit 2 before
    the data is read, rather than a traceback after training and registering."""
    monkeypatch.setenv("SALESRISK_SERVING", "azureml")
    monkeypatch.setenv("AZURE_ML_RESOURCE_GROUP", "rg-sales")
    monkeypatch.setenv("AZURE_ML_WORKSPACE_NAME", "ws-sales")
    monkeypatch.delenv("AZURE_ML_SUBSCRIPTION_ID", raising=False)
    data = tmp_path / "prepared.parquet"
    frames.anomalies().write_parquet(data)
    out = tmp_path / "out"
    before = snapshot()

    result = run_main("models.anomaly", ["--training-data", data, "--output", out, "--deploy"], tmp_path)

    assert_rejected(result, "AZURE_ML_SUBSCRIPTION_ID", "is not set")
    assert not out.exists()
    assert_unchanged(before)
    assert no_network == []


def test_lake_uri_without_account_or_connection_string(no_network: list[str], tmp_path: Path) -> None:
    """An abfs:// lake with no account in it and SALESRISK_AZURE_STORAGE_CONNECTION_STRING unset."""
    result = run_main("models.synthetic", ["--output-path", "abfs://lake/sales", "--n-opportunities", "20"], tmp_path)
    assert_rejected(result, "abfs://lake/sales", "SALESRISK_AZURE_STORAGE_CONNECTION_STRING", "abfs://<container>@<account>")
    assert files_under(tmp_path) == []
    assert no_network == []
