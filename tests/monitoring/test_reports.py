"""Training reports: the trainers' runs carry report/*.png that open as PNG, a failing report never
fails training, and the flow's metrics artifact links the run and the model version."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from models import reports

from .conftest import WIN_FAST, anomaly_frame, assert_png, opportunity_frame, snapshot_frame, train

CASES = {
    "win_probability": (lambda: opportunity_frame(500), WIN_FAST,
                        {"reliability_diagram.png", "roc_curve.png", "shap_importance.png"}),
    "risk_scoring": (lambda: opportunity_frame(500), ("--iterations", "40"),
                     {"predicted_vs_actual.png", "residuals.png", "shap_importance.png"}),
    "anomaly": (anomaly_frame, (), {"anomaly_scores.png"}),
    "risk_trajectory": (snapshot_frame, ("--epochs", "2", "--hidden-size", "8"), {"loss_curves.png"}),
}


def run_artifacts(run_id: str, folder: str) -> dict[str, bytes]:
    import mlflow

    client = MlflowClient()
    out = {}
    for item in client.list_artifacts(run_id, folder):
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=item.path)
        out[Path(item.path).name] = Path(local).read_bytes()
    return out


@pytest.mark.parametrize("model_id", sorted(CASES))
def test_training_run_carries_its_report_plots_and_the_flow_artifact_links_them(model_id: str, isolated: Path) -> None:
    from flows.pipeline import metrics_markdown
    from tasks.refs import DataRef, ModelSummary, TrainedModel

    make, extra, expected = CASES[model_id]
    trained = train(model_id, make(), isolated / model_id, *extra)

    plots = run_artifacts(trained.run_id, reports.REPORT_PATH)
    assert set(plots) == expected
    for name, data in plots.items():
        assert_png(data)
        assert (trained.output / reports.REPORT_PATH / name).read_bytes() == data
    reference = MlflowClient().list_artifacts(trained.run_id, reports.REFERENCE_PATH)
    assert [Path(a.path).name for a in reference] == [reports.REFERENCE_FILE]

    run = MlflowClient().get_run(trained.run_id)
    model = TrainedModel(model_id, trained.model_name, str(trained.output), run.data.metrics, trained.run_id,
                         DataRef(str(isolated / model_id / "training.parquet"), "f"))
    summary = ModelSummary(model_id, trained.model_name, trained.version, run.data.metrics, "key", None, "promote: no champion")
    text = metrics_markdown(model, summary)
    ui = "http://127.0.0.1:5000"  # SALESRISK_MLFLOW_UI_URL unset: the address `make ui` serves
    assert f"({ui}/#/experiments/{run.info.experiment_id}/runs/{trained.run_id})" in text
    assert f"({ui}/#/models/{trained.model_name}/versions/{trained.version})" in text
    assert all(f"({ui}/#/experiments/{run.info.experiment_id}/runs/{trained.run_id}/artifactPath/report/{name})" in text
               for name in expected)
    assert "champion/challenger): promote: no champion" in text


def test_a_failing_report_is_a_warning_and_training_still_succeeds(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no plots today")

    monkeypatch.setattr(reports, "log_training_report", broken)
    with caplog.at_level(logging.WARNING, logger="salesrisk.trainer"):
        trained = train("anomaly", anomaly_frame(), isolated / "anomaly", register=False)
    assert (trained.output / "metrics.json").exists()
    assert "training report of anomaly-detection-isolation-forest not logged: RuntimeError: no plots today" in caplog.text
    assert MlflowClient().list_artifacts(trained.run_id, reports.REPORT_PATH) == []


def test_forecast_loss_and_drift_plots_are_png(tmp_path: Path) -> None:
    ds = pd.date_range("2025-01-01", periods=60, freq="D")
    y = 100 + np.arange(60) + 5 * np.sin(np.arange(60) / 7)
    forecast = pd.DataFrame({"ds": ds, "yhat": y + 1, "yhat_lower": y - 4, "yhat_upper": y + 6})
    components = pd.DataFrame({"ds": ds, "trend": 100 + np.arange(60.0), "season_weekly": 5 * np.sin(np.arange(60) / 7)})
    paths = [
        reports.forecast_plot(pd.DataFrame({"ds": ds, "y": y}), forecast, tmp_path / "forecast.png",
                              holdout_start=ds[-14], components=components),
        reports.loss_curves({"loss": [(1, 0.3), (2, 0.2), (3, 0.15)], "val_loss": [(1, 0.35), (2, 0.3), (3, 0.31)]},
                            tmp_path / "loss.png"),
        reports.drift_over_time(
            pl.DataFrame({"checked_at": pd.date_range("2025-01-01", periods=4, freq="D", tz="UTC").tolist() * 2,
                          "endpoint": ["win_probability"] * 8, "feature": ["amount"] * 4 + ["probability"] * 4,
                          "psi": [0.01, 0.05, 0.15, 0.3, 0.01, 0.02, 0.01, 0.02]}),
            tmp_path / "drift.png", 0.2),
    ]
    sizes = [assert_png(p.read_bytes()) for p in paths]
    assert sizes[0][1] > sizes[1][1]  # the forecast has a panel per component under it


def test_top_factors_give_a_lower_bound_of_mean_abs_shap() -> None:
    rows = ['[{"feature": "a", "contribution": -0.4}, {"feature": "b", "contribution": 0.1}]',
            '[{"feature": "a", "contribution": 0.2}]']
    assert reports.mean_abs_from_top_factors(rows) == pytest.approx({"a": 0.3, "b": 0.05})
