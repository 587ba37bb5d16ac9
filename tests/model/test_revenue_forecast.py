"""The revenue trainer: command line, backtest choice, saved model in a fresh process, input forms."""

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

FAST = ["--epochs", "10", "--origins", "3", "--calibration-origins", "6"]
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


def test_metrics_json_has_runbook_backtest_and_baseline_figures(trained_dir: Path) -> None:
    metrics = json.loads((trained_dir / "metrics.json").read_text())
    assert RUNBOOK <= set(metrics)
    for prefix in ("backtest_", "naive_", "seasonal_naive_", "neuralprophet_"):
        assert {f"{prefix}{name}" for name in RUNBOOK} <= set(metrics), prefix
        assert {f"{prefix}MAPE_h{step:02d}" for step in range(1, 14)} <= set(metrics), prefix  # weekly horizon 13
    assert all(math.isfinite(v) and v >= 0 for v in metrics.values()), metrics
    assert metrics["MAE"] <= metrics["RMSE"] and metrics["backtest_MAE"] <= metrics["backtest_RMSE"]
    assert metrics["MAPE"] < 50  # percent; a fraction would be below 1 even for a useless model
    assert 0 < metrics["interval_coverage"] <= 1
    widths = [metrics[f"interval_half_width_h{step:02d}"] for step in range(1, 14)]
    assert (np.diff(widths) > -1e-12).all() and widths[-1] > widths[0]  # wider further ahead


def test_the_served_method_is_the_backtest_winner_and_is_logged(trained_dir: Path) -> None:
    import os

    from mlflow.tracking import MlflowClient

    metrics = json.loads((trained_dir / "metrics.json").read_text())
    run = json.loads((trained_dir / "run.json").read_text())
    params = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(run["run_id"]).data.params
    candidates = {k[len("backtest_"):-len("_MAPE")]: v for k, v in metrics.items() if k.startswith("backtest_") and k.endswith("_MAPE") and k != "backtest_MAPE"}
    assert "neuralprophet" in candidates and "seasonal_naive" in candidates and "auto_ets" in candidates
    servable = {k: v for k, v in candidates.items() if k != "naive"}
    best = min(servable.values())
    assert metrics["backtest_MAPE"] == pytest.approx(best)
    meta = yaml_metadata(trained_dir / "model")
    assert rf._metric_name(meta["served_model"]) in {k for k, v in servable.items() if v == best}
    assert params["served_model"] == meta["served_model"]
    assert params["selection_reason"].startswith("lowest backtest MAPE") and "neuralprophet" in params["selection_reason"]


def yaml_metadata(model_dir: Path) -> dict:
    import yaml

    return yaml.safe_load((model_dir / "MLmodel").read_text())["metadata"]


def test_evaluate_on_holdout_reproduces_the_runbook_metrics(trained_dir: Path, revenue_path: Path) -> None:
    """The gate's fairness: the held-out rows are answered by a fit that never saw them."""
    import mlflow

    metrics = json.loads((trained_dir / "metrics.json").read_text())
    model = mlflow.pyfunc.load_model(str(trained_dir / "model"))
    held = rf.holdout(pl.read_parquet(revenue_path))
    assert held.height == 13
    scored = rf.evaluate(model, held)
    for name in RUNBOOK:
        assert scored[name] == pytest.approx(metrics[name], rel=1e-6)


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
    by_date = sorted(records, key=lambda r: r["ds"])
    shares = [(r["yhat_upper"] - r["yhat_lower"]) / r["yhat"] for r in by_date]
    assert (np.diff(shares) > -1e-9).all() and shares[-1] > shares[0]  # the band widens with the horizon


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


def _dates(kind: str, n: int) -> list[dt.datetime]:
    if kind == "monthly":
        return [dt.datetime(2015 + m // 12, m % 12 + 1, 1) for m in range(n)]
    if kind == "quarterly":
        return [dt.datetime(2010 + q // 4, 3 * (q % 4) + 1, 1) for q in range(n)]
    step = {"daily": dt.timedelta(days=1), "weekly": dt.timedelta(weeks=1), "fortnightly": dt.timedelta(weeks=2)}[kind]
    return [dt.datetime(2022, 1, 7) + i * step for i in range(n)]


@pytest.mark.parametrize("expected", ["daily", "weekly", "monthly", "quarterly"])
def test_frequency_is_detected_from_the_dates(expected: str) -> None:
    dates = _dates(expected, 40)
    dates.pop(5)  # a missing period does not change the answer
    assert rf.detect_frequency(pl.Series("ds", dates)).name == expected


def test_month_and_quarter_start_dates_map_to_one_period_each() -> None:
    for kind, np_freq in (("monthly", "MS"), ("quarterly", "QS-JAN"), ("weekly", "W-FRI")):
        dates = pd.Series(_dates(kind, 30))
        grid = rf.Grid.for_dates(rf.detect_frequency(pl.Series("ds", dates.tolist())), dates)
        ordinals = grid.ordinals(dates)
        assert grid.np_freq == np_freq
        assert (np.diff(ordinals) == 1).all()
        assert list(grid.timestamps(ordinals)) == list(pd.to_datetime(dates))


def test_an_unsupported_frequency_exits_2_naming_file_column_and_gap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "fortnightly.parquet"
    dates = _dates("fortnightly", 60)
    pl.DataFrame({"date": dates, "revenue": np.linspace(100.0, 200.0, 60)}).write_parquet(data)
    output = tmp_path / "out"
    assert rf.main(["--training-data", str(data), "--output", str(output), *FAST]) == 2
    err = capsys.readouterr().err
    assert str(data) in err and "'date'" in err and "median gap found: 14 days" in err
    assert not output.exists()


def test_a_month_start_series_trains_and_forecasts_a_year(tmp_path: Path) -> None:
    """The runbook's (ds, y) form with month-start dates: NeuralProphet's freq="auto" crashed on it."""
    n = 48
    t = np.arange(n)
    y = 1000 + 8 * t + 120 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(3).normal(0, 10, n)
    data = tmp_path / "monthly.parquet"
    pl.DataFrame({"ds": _dates("monthly", n), "y": y}).write_parquet(data)
    done = run_trainer("revenue_forecast", ["--training-data", data, "--output", tmp_path / "out", *FAST, "--origins", "2"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {f"backtest_MAPE_h{step:02d}" for step in range(1, 13)} <= set(metrics)
    assert metrics["backtest_MAPE"] < metrics["naive_MAPE"]  # a seasonal series: something beats the last value


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


def test_without_refit_the_last_origin_fit_serves_and_holdout_matches() -> None:
    frame = rf.normalise(revenue_frame(120, "daily", seed=1, columns=("ds", "y"), promotion=True))
    params = rf.ForecastParams(epochs=5, refit=False, horizon=20, origins=2)
    trained = rf.fit_forecast(frame, ["Holiday_Flag", "promotion"], params)
    held = rf.holdout(frame, horizon=20)
    assert held.height == 20 and held.get_column("ds").to_list() == frame.get_column("ds").tail(20).to_list()
    answer = rf.forecast_frame(trained, held.drop("y").to_pandas())
    for name in RUNBOOK:
        assert rf.scores(held.get_column("y").to_numpy(), answer["yhat"].to_numpy())[name] == pytest.approx(trained.metrics[name], rel=1e-6)
    assert trained.rows["fit"] == 100 and trained.rows["origins"] == 2


def test_a_statistical_method_is_calibrated_on_more_origins_than_it_was_chosen_on() -> None:
    from models import backtest
    from models.forecasters import BY_NAME

    frame = rf.normalise(revenue_frame(150, "weekly", seed=2, columns=("ds", "y")))
    frequency = BY_NAME["weekly"]
    series = rf.regular_series(frame, frequency, (), "test")
    params = rf.ForecastParams()
    cuts = backtest.origins(len(series.y), frequency.horizon, 2 * frequency.horizon)
    chosen = backtest.run(lambda: rf.statistical("auto_ets", frequency, cuts[0]), series, cuts, frequency.horizon)
    calibration = rf.calibration_backtest("auto_ets", {"auto_ets": chosen}, series, frequency.horizon, params)
    assert len(calibration.cuts) > len(cuts) and set(cuts) <= set(calibration.cuts)
    again = [calibration.cuts.index(cut) for cut in cuts]
    np.testing.assert_allclose(calibration.predicted[again], chosen.predicted)  # same model, same origins
    # NeuralProphet's refits are slow: a method with it keeps its selection origins
    named = backtest.Backtest("neuralprophet", chosen.actual, chosen.predicted, chosen.last_fit, chosen.cuts)
    assert rf.calibration_backtest("neuralprophet", {"neuralprophet": named}, series, frequency.horizon, params) is named
    # --calibration-origins at or below the selection origins: no refit
    fewer = rf.ForecastParams(calibration_origins=len(cuts))
    assert rf.calibration_backtest("auto_ets", {"auto_ets": chosen}, series, frequency.horizon, fewer) is chosen
