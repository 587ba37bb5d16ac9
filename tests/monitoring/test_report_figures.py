"""The figures in a training report's plot titles are the metrics its run logged.

Each trainer runs through its command line with MLflow on SQLite; the figures it draws are caught
as they are saved and their titles and legends read. The numbers (and row counts) must equal the
run's logged metrics (and ``rows_test``), i.e. the plots were drawn from exactly the rows the
metrics used, not from a sample or a different split.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from models import reports

from .conftest import WIN_FAST, anomaly_frame, opportunity_frame, train


@pytest.fixture()
def drawn_texts(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """File name -> every title, legend and figure text of the figures the report saves."""
    texts: dict[str, str] = {}
    save = reports._save

    def catch(figure, path: Path) -> Path:
        found = [t.get_text() for t in figure.texts]
        for ax in figure.axes:
            found.append(ax.get_title())
            if ax.get_legend() is not None:
                found += [t.get_text() for t in ax.get_legend().get_texts()]
        texts[Path(path).name] = "\n".join(found)
        return save(figure, path)

    monkeypatch.setattr(reports, "_save", catch)
    return texts


def logged(run_id: str) -> tuple[dict[str, float], dict[str, str]]:
    data = MlflowClient().get_run(run_id).data
    return data.metrics, data.params


def shown(text: str, name: str) -> float:
    match = re.search(rf"{name} (-?\d+\.\d+)", text)
    assert match, f"no {name} in {text!r}"
    return float(match.group(1))


def test_win_probability_plots_show_the_logged_auc_and_brier(isolated: Path, drawn_texts: dict[str, str]) -> None:
    open_deals = opportunity_frame(200, seed=1).with_columns(pl.lit(0, pl.Int64).alias("is_closed"))
    trained = train("win_probability", pl.concat([opportunity_frame(1500), open_deals]), isolated / "win", *WIN_FAST)
    metrics, params = logged(trained.run_id)
    roc, reliability = drawn_texts["roc_curve.png"], drawn_texts["reliability_diagram.png"]
    assert shown(roc, "AUC_ROC") == round(metrics["AUC_ROC"], 4)
    assert shown(reliability, "Brier") == round(metrics["Brier"], 4)
    assert f"({params['rows_test']} held-out deals)" in roc and f"({params['rows_test']} held-out deals)" in reliability


def test_risk_scoring_plots_show_the_logged_rmse_and_r2_when_only_a_sample_is_drawn(
    isolated: Path, drawn_texts: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reports, "DRAW_POINTS", 50)  # fewer points drawn than rows: titles still use all
    trained = train("risk_scoring", opportunity_frame(1200), isolated / "risk", "--iterations", "40")
    metrics, params = logged(trained.run_id)
    title = drawn_texts["predicted_vs_actual.png"]
    assert shown(title, "RMSE") == round(metrics["RMSE"], 4)
    assert shown(title, "R2") == round(metrics["R2"], 4)
    assert f"({params['rows_test']} held-out rows, 50 drawn)" in title
    assert int(params["rows_test"]) > 50


def test_anomaly_plot_shows_the_logged_f1_on_more_rows_than_a_sample_would_take(
    isolated: Path, drawn_texts: dict[str, str]
) -> None:
    trained = train("anomaly", anomaly_frame(6000), isolated / "anomaly", register=False)
    metrics, params = logged(trained.run_id)
    title = drawn_texts["anomaly_scores.png"]
    assert shown(title, "F1") == round(metrics["F1"], 4)
    assert int(params["rows_test"]) > 1000  # more than the 1,000-row sample reports used to take
    assert f"({params['rows_test']} held-out rows)" in title
