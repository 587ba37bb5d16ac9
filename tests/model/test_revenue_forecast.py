"""The NeuralProphet revenue trainer: command line, saved model in a fresh process, input forms."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from models import revenue_forecast as rf
from sequence_data import predict_in_fresh_process, revenue_frame, run_trainer

pytestmark = pytest.mark.slow

FAST = ["--epochs", "10"]
RUNBOOK = {"MAPE", "RMSE", "MAE"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("revenue-cwd")


@pytest.fixture(scope="module")
def revenue_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("revenue-data") / "revenue.parquet"
    revenue_frame(160, "weekly", seed=0, promotion=True).write_parquet(path)
    return path


@pytest.fixture(scope="module")
def trained_dir(revenue_path: Path, workdir: Path) -> Path:
    output = workdir.parent / "revenue-out"
    args = ["--training-data", revenue_path, "--output", output, "--holidays", "Holiday_Flag", "--regressors", "promotion"]
    done = run_trainer("revenue_forecast", [*args, *FAST], workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def test_metrics_json_has_runbook_and_holdout_names_with_finite_values(trained_dir: Path) -> None:
    metrics = json.loads((trained_dir / "metrics.json").read_text())
    assert set(metrics) == RUNBOOK | {f"holdout_{name}" for name in RUNBOOK}
    assert all(math.isfinite(v) and v >= 0 for v in metrics.values()), metrics
    assert metrics["MAE"] <= metrics["RMSE"] and metrics["holdout_MAE"] <= metrics["holdout_RMSE"]
    assert metrics["MAPE"] < 50  # percent; a fraction would be below 1 even for a useless model


def test_saved_model_forecasts_future_dates_in_a_fresh_process(trained_dir: Path, workdir: Path) -> None:
    future = pd.DataFrame(
        {
            "ds": [str(dt.date(2024, 1, 26) + dt.timedelta(weeks=i)) for i in range(6)],
            "Holiday_Flag": [0, 0, 1, 0, 0, 0],
            "promotion": [0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        }
    )
    inputs = workdir / "future.parquet"
    future.iloc[::-1].to_parquet(inputs)  # any order: answers come back in the input's order
    answer = predict_in_fresh_process(trained_dir / "model", inputs, workdir)
    assert answer["columns"] == ["ds", "yhat", "yhat_lower", "yhat_upper"]
    records = answer["records"]
    assert [r["ds"][:10] for r in records] == list(future["ds"][::-1])
    assert all(r["yhat_lower"] < r["yhat"] < r["yhat_upper"] for r in records)
    assert all(5e5 < r["yhat"] < 5e6 for r in records)  # the generated series lives near 1e6


def test_no_lightning_logs_in_the_working_directory(trained_dir: Path, workdir: Path) -> None:
    assert not (workdir / "lightning_logs").exists()
    assert not (trained_dir / "lightning_logs").exists()
    assert not Path("lightning_logs").exists()


def test_missing_value_column_exits_2_naming_file_and_column(
    revenue_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "amounts.parquet"
    pl.read_parquet(revenue_path).rename({"revenue": "amount"}).write_parquet(bad)
    output = tmp_path / "out"
    assert rf.main(["--training-data", str(bad), "--output", str(output), *FAST]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "revenue" in err and "(ds, y)" in err
    assert not (output / "model").exists()


def test_non_binary_holiday_flag_exits_2_naming_the_column(
    revenue_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "holiday-2.parquet"
    pl.read_parquet(revenue_path).with_columns(pl.col("Holiday_Flag") * 2).write_parquet(bad)
    output = tmp_path / "out"
    assert rf.main(["--training-data", str(bad), "--output", str(output), "--holidays", "Holiday_Flag", *FAST]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Holiday_Flag" in err and "0/1" in err
    assert not (output / "model").exists()


@pytest.mark.parametrize(
    ("step", "expected"),
    [(dt.timedelta(days=1), "daily"), (dt.timedelta(weeks=1), "weekly"), (None, "monthly")],
)
def test_frequency_is_detected_from_the_dates(step: dt.timedelta | None, expected: str) -> None:
    start = dt.datetime(2022, 1, 1)
    if step is None:
        dates = [dt.datetime(2022 + m // 12, m % 12 + 1, 1) for m in range(24)]
    else:
        dates = [start + i * step for i in range(40)]
    dates.pop(5)  # a missing period does not change the answer
    assert rf.detect_frequency(pl.Series("ds", dates)).name == expected


def test_every_accepted_column_pair_becomes_ds_and_y() -> None:
    for date_col, value_col in rf.catalog.REVENUE_COLUMN_PAIRS:
        frame = revenue_frame(20, columns=(date_col, value_col))
        out = rf.normalise(frame.reverse())
        assert out.columns[:2] == ["ds", "y"] and out.get_column("ds").is_sorted()
        assert out.get_column("y").to_list() == frame.get_column(value_col).to_list()


def test_conformal_half_width_covers_the_level() -> None:
    errors = np.arange(1, 20, dtype=float)  # 19 errors: rank ceil(20 * 0.9) = 18
    assert rf.conformal_half_width(-errors, 0.9) == 18.0
    assert rf.conformal_half_width(errors[:5], 0.9) == 5.0  # too few: the largest


class _Served:
    def __init__(self, trained: rf.TrainedForecast) -> None:
        self.trained = trained

    def predict(self, frame):  # noqa: ANN001, ANN201 (pandas in, pandas out, like a pyfunc)
        return rf.forecast_frame(self.trained.model, self.trained.interval, frame)


def test_without_refit_evaluate_on_holdout_reproduces_the_holdout_metrics() -> None:
    frame = rf.normalise(revenue_frame(120, "daily", seed=1, columns=("ds", "y"), promotion=True))
    params = rf.ForecastParams(epochs=5, refit=False, horizon=20)
    trained = rf.fit_forecast(frame, ["Holiday_Flag", "promotion"], params)
    assert trained.regressors == ("promotion",)  # no holiday in January to April: constant, left out
    held = rf.holdout(frame, horizon=20)
    assert held.height == 20 and held.get_column("ds").to_list() == frame.get_column("ds").tail(20).to_list()
    scored = rf.evaluate(_Served(trained), held)
    for name in RUNBOOK:
        assert scored[name] == pytest.approx(trained.metrics[f"holdout_{name}"], rel=1e-6)
    assert trained.rows == {"fit": 100, "holdout": 20}
