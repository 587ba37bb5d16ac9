"""win_probability through its command line: CatBoost on closed deals, calibrated, saved as a
pyfunc that loads in a fresh process, with the runbook's Brier and AUC_ROC (plus ECE)."""

from __future__ import annotations


import mlflow
import numpy as np
import polars as pl
import pytest

from models import tabular, win_probability
from salesrisk import catalog

pytestmark = pytest.mark.slow
FAST = ("--iterations", "80")
METRICS = {"Brier", "AUC_ROC", "ECE"}


@pytest.fixture(scope="module")
def trained(opportunities_path, trainer_cli, tmp_path_factory):
    return trainer_cli("win_probability", opportunities_path, tmp_path_factory.mktemp("win"), *FAST)


def test_cli_writes_runbook_metrics_logged_to_mlflow(trained, check_trained):
    metrics = check_trained(trained, METRICS)
    assert trained.model_name == "win-probability-model"
    assert metrics["AUC_ROC"] > 0.6  # the generated outcome depends on the features
    assert metrics["Brier"] < 0.25  # better than a coin


def test_model_loads_in_fresh_process_with_its_own_code(trained, opportunities_path, fresh_predict, tmp_path):
    answer = fresh_predict(trained.output / "model", opportunities_path, tmp_path)
    assert answer["columns"] == ["win_probability", "top_factors"]
    assert answer["rows"] == pl.read_parquet(opportunities_path).height  # open deals are scored too
    assert answer["code"].startswith(str(trained.output / "model" / "code"))
    for row in answer["head"]:
        assert 0.0 <= row["win_probability"] <= 1.0
        factors = row["top_factors"]
        assert len(factors) == 3
        assert {f["feature"] for f in factors} <= set(catalog.WIN_PROBABILITY_FEATURES)


def test_holdout_is_closed_deals_only_and_reproduces_the_metrics(trained, opportunities_path):
    data = pl.read_parquet(opportunities_path)
    closed = data.filter(pl.col("is_closed"))
    rows = win_probability.holdout(data)
    assert rows["is_closed"].all()
    assert rows.height == closed.height - round(0.8 * closed.height)  # the last fifth, in time
    assert rows["evaluation_date"].min() >= closed.sort("evaluation_date")["evaluation_date"][-rows.height]
    model = mlflow.pyfunc.load_model(str(trained.output / "model"))
    assert win_probability.evaluate(model, rows) == pytest.approx(trained.metrics)
    # evaluate applies the same filter, so the whole frame scores the same as its closed deals
    assert win_probability.evaluate(model, closed) == pytest.approx(win_probability.evaluate(model, data))


def test_auto_features_take_strings_as_categoricals(make_opportunities, trainer_main, check_trained, tmp_path):
    frame = make_opportunities(400, seed=1)
    region = np.where(frame["target_win"].to_numpy() == 1, "north", "south")  # a strong string signal
    frame = frame.with_columns(pl.Series("region", region)).drop("evaluation_date")
    data = tmp_path / "with-region.parquet"
    frame.write_parquet(data)
    run = trainer_main("win_probability", data, tmp_path, "--features", "auto", *FAST)
    metrics = check_trained(run, METRICS)
    assert metrics["AUC_ROC"] > 0.95
    model = mlflow.pyfunc.load_model(str(run.output / "model"))
    assert "region" in model.metadata.get_input_schema().input_names()
    assert "region" in model.predict(frame.head(5).to_pandas())["top_factors"][0][0]["feature"]
    rows = win_probability.holdout(frame)  # no date column: a stratified random split
    assert rows["target_win"].mean() == pytest.approx(frame.filter(pl.col("is_closed"))["target_win"].mean(), abs=0.05)


def test_cross_fitting_calibrates_out_of_fold_log_odds(make_opportunities):
    data = win_probability.training_rows(make_opportunities(400, seed=2))
    fitting, _ = win_probability.split(data)
    params = win_probability.WinParams(iterations=60, cv_folds=3)
    trained = win_probability.train(fitting, list(catalog.WIN_PROBABILITY_FEATURES), params)
    assert len(trained.model.classifiers) == 3 == len(trained.best_iterations)
    assert set(trained.calibration_brier) == {"sigmoid", "isotonic"}
    assert trained.method == min(trained.calibration_brier, key=trained.calibration_brier.get)
    assert trained.model.calibrator.method == trained.method
    x = tabular.model_frame(fitting, trained.spec)
    probability = trained.model.probability(x)
    assert ((probability >= 0) & (probability <= 1)).all()
    # calibration is monotone in the mean log-odds: the ranking is the classifiers'
    order = np.argsort(trained.model.log_odds(x))
    assert (np.diff(probability[order]) >= -1e-12).all()
    # repeatable: same data, same seed, same model
    again = win_probability.train(fitting, list(catalog.WIN_PROBABILITY_FEATURES), params)
    assert (again.model.probability(x) == probability).all()


def test_expected_calibration_error():
    y = np.array([0, 0, 1, 1])
    assert win_probability.expected_calibration_error(y, np.array([0.0, 0.0, 1.0, 1.0])) == 0.0
    assert win_probability.expected_calibration_error(y, np.full(4, 0.5)) == pytest.approx(0.0)
    assert win_probability.expected_calibration_error(y, np.array([1.0, 1.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert win_probability.expected_calibration_error(np.array([0, 1]), np.array([0.05, 0.95])) == pytest.approx(0.05)


def test_single_class_is_bad_input(make_opportunities, trainer_main, check_bad_input, tmp_path):
    data = tmp_path / "all-won.parquet"
    make_opportunities(100).with_columns(pl.lit(1, pl.Int64).alias("target_win")).write_parquet(data)
    check_bad_input(trainer_main("win_probability", data, tmp_path, *FAST), data, "target_win")


def test_missing_closed_flag_is_bad_input(make_opportunities, trainer_cli, check_bad_input, tmp_path):
    """In a real process: the exit code is what an Azure ML job or a flow sees."""
    data = tmp_path / "no-closed.parquet"
    make_opportunities(60).drop("is_closed").write_parquet(data)
    check_bad_input(trainer_cli("win_probability", data, tmp_path, *FAST), data, "is_closed")
