"""The promotion ledger on a real MLflow registry (SQLite): append-only, and safe to retry."""

from __future__ import annotations

from pathlib import Path

import pytest

from salesrisk import registry


@pytest.fixture()
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("SALESRISK_HOME", str(tmp_path / "home"))
    client = registry.client()
    name = "ledger-test-model"
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, source=(tmp_path / "model").as_uri())
    return name


def test_promote_appends_once_per_move_and_a_retry_after_a_failed_alias_does_not_duplicate(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = registry.promote(model, "1", action="deploy", reason="first", metrics={"F1": 0.5}, flow_run="run-a")
    assert first is not None and (first.number, first.from_version, first.to_version) == (1, None, "1")
    assert registry.promote(model, "1", action="deploy", reason="again") is None  # already the champion

    real = registry.set_alias
    calls = []

    def fails_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, "set_alias", fails_once)
    with pytest.raises(RuntimeError):
        registry.promote(model, "2", action="deploy", reason="better", flow_run="run-b")
    assert registry.alias_version(model, registry.CHAMPION) == "1"
    retried = registry.promote(model, "2", action="deploy", reason="better", flow_run="run-b")
    assert registry.alias_version(model, registry.CHAMPION) == "2"
    assert [(e.number, e.from_version, e.to_version) for e in registry.ledger(model)] == [(1, None, "1"), (2, "1", "2")]
    assert retried == registry.ledger(model)[-1]

    back = registry.promote(model, "1", action="rollback", reason="bad week")
    assert (back.number, back.from_version, back.to_version, back.action) == (3, "2", "1", "rollback")
    assert registry.ledger(model)[0] == first  # earlier entries read as written


def test_the_cli_prints_the_ledger_and_the_aliases(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    registry.promote(model, "2", action="deploy", reason="no champion serving: promote the first version",
                     metrics={"AUC_ROC": 0.74})
    registry.set_alias(model, registry.CHALLENGER, "2")
    assert registry.main(["ledger", model]) == 0
    out = capsys.readouterr().out
    assert "v- -> v2" in out and "no champion serving" in out and "AUC_ROC=0.74" in out
    assert registry.main(["aliases"]) == 0
    assert f"{model}: champion v2, challenger v2" in capsys.readouterr().out
