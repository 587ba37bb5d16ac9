"""The text of the artifacts, on decisions built by the gate itself (no flow run needed)."""

from __future__ import annotations

import re

import pytest

from models import gate
from tasks import artifacts
from tasks.refs import DataRef, ModelSummary, TrainedModel

NAME = "win-probability-model"


def summary(decision: str, version: str | None = "2", scoring_url: str | None = None) -> ModelSummary:
    return ModelSummary("win_probability", NAME, version, {"AUC_ROC": 0.74, "Brier": 0.205}, "win_probability",
                        scoring_url, decision)


def trained() -> TrainedModel:
    return TrainedModel("win_probability", NAME, "/tmp/out", {"AUC_ROC": 0.74, "Brier": 0.205, "ECE": 0.03}, None,
                        DataRef("/lake/prepared.parquet", "f"), compute="azureml")


def test_a_metric_only_one_side_has_is_a_dash_not_nan() -> None:
    decision = gate.decide({"AUC_ROC": 0.74, "Brier": 0.205, "ECE": 0.03}, {"AUC_ROC": 0.75, "Brier": 0.2})
    text = artifacts.decision_markdown(trained(), decision)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    assert "| ECE | 0.0300 | - |" in text
    assert "| Brier | 0.2050 | 0.2000 |" in text


def test_decision_column_says_promoted_kept_or_cached_with_the_reason() -> None:
    blocked = gate.decide({"AUC_ROC": 0.70}, {"AUC_ROC": 0.75})
    rows = artifacts.summary_rows({
        "win_probability": summary(blocked.reason),
        "anomaly": summary("version 1 from this very run is already serving", version="1"),
        "risk_scoring": RuntimeError("train failed: no rows"),
    })
    assert rows[0]["decision"].startswith("nothing served; v2 blocked: AUC_ROC (higher is better)")
    assert "-> block" in rows[0]["decision"]
    printed = artifacts.format_table(rows).splitlines()[2]  # the terminal clips a long decision
    whole = rows[0]["decision"]
    assert len(whole) > artifacts.TERMINAL_DECISION
    assert whole[: artifacts.TERMINAL_DECISION - 1] + "\u2026" in printed and whole not in printed
    assert rows[1]["decision"] == "cached: v1 already serving"
    assert rows[2]["decision"] == "FAILED: train failed: no rows"


def test_links_are_absolute_to_the_configured_mlflow_ui_and_the_scoring_url_is_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESRISK_MLFLOW_UI_URL", "https://mlflow.example.org/")
    [row] = artifacts.summary_rows({"win_probability": summary("no champion serving: promote the first version",
                                                                scoring_url="http://127.0.0.1:8765/score/win_probability")})
    assert row["MLflow"] == f"[v2](https://mlflow.example.org/#/models/{NAME}/versions/2)"
    assert row["scoring URL"] == "`POST http://127.0.0.1:8765/score/win_probability`"
    table = artifacts.format_table([row])
    assert "https://mlflow.example.org/#/models/win-probability-model/versions/2" in table
    assert "`" not in table and "](" not in table
    assert artifacts.run_url("3", "abc", "report/roc_curve.png") == \
        "https://mlflow.example.org/#/experiments/3/runs/abc/artifactPath/report/roc_curve.png"


def test_default_mlflow_ui_is_the_address_make_ui_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SALESRISK_MLFLOW_UI_URL", raising=False)
    assert artifacts.model_version_url("risk-scoring-global", "1") == "http://127.0.0.1:5000/#/models/risk-scoring-global/versions/1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://tracking.example.org")
    assert artifacts.mlflow_ui() == "https://tracking.example.org"
