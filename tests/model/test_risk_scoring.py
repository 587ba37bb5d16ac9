"""risk_scoring through its command line: a CatBoost regressor saved as a pyfunc that loads in a
fresh process, scored on rows it never saw, with the runbook's RMSE/MAE/R2."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from models import risk_scoring
from salesrisk import catalog

pytestmark = pytest.mark.slow
FAST = ("--iterations", "80")


@pytest.fixture(scope="module")
def trained(opportunities_path, trainer_cli, tmp_path_factory):
    return trainer_cli("risk_scoring", opportunities_path, tmp_path_factory.mktemp("risk"), *FAST)


def test_cli_writes_runbook_metrics_logged_to_mlflow(trained, check_trained):
    metrics = check_trained(trained, {"RMSE", "MAE", "R2"})
    assert trained.model_name == "risk-scoring-global"
    assert metrics["R2"] > 0.5  # the generated target is a smooth function of the features


def test_model_loads_in_fresh_process_with_its_own_code(trained, opportunities_path, fresh_predict, tmp_path):
    answer = fresh_predict(trained.output / "model", opportunities_path, tmp_path)
    assert answer["columns"] == ["risk_score", "top_factors"]
    assert answer["rows"] == pl.read_parquet(opportunities_path).height
    assert answer["code"].startswith(str(trained.output / "model" / "code"))
    for row in answer["head"]:
        assert 0.0 <= row["risk_score"] <= 1.0
        factors = row["top_factors"]
        assert len(factors) == 3
        assert {f["feature"] for f in factors} <= set(catalog.RISK_SCORING_FEATURES)
        sizes = [abs(f["contribution"]) for f in factors]
        assert sizes == sorted(sizes, reverse=True)


def test_holdout_and_evaluate_reproduce_the_reported_metrics(trained, opportunities_path):
    data = pl.read_parquet(opportunities_path)
    rows = risk_scoring.holdout(data)
    assert rows.height == round(0.2 * data.height)
    assert rows["evaluation_date"].min() >= data.sort("evaluation_date")["evaluation_date"][-rows.height]
    model = mlflow.pyfunc.load_model(str(trained.output / "model"))
    assert risk_scoring.evaluate(model, rows) == pytest.approx(trained.metrics)


def test_industry_model_trains_one_industry_under_its_own_name(opportunities_path, trainer_main, check_trained, tmp_path):
    run = trainer_main("risk_scoring", opportunities_path, tmp_path, "--industry-id", "ind-2", *FAST)
    check_trained(run, {"RMSE", "MAE", "R2"})
    assert run.model_name == "risk-scoring-ind-2"
    logged = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(run.run_id).data.params
    assert logged["industry_start"] == "global" and int(logged["rows_train_base"]) > int(logged["rows_train"])
    data = pl.read_parquet(opportunities_path)
    one = data.filter(pl.col("industry_id") == "ind-2")
    rows = risk_scoring.holdout(data, industry_id="ind-2")
    assert rows.equals(risk_scoring.holdout(one))  # the gate may pass either frame
    assert rows.height == round(0.2 * one.height)
    model = mlflow.pyfunc.load_model(str(run.output / "model"))
    assert risk_scoring.evaluate(model, rows) == pytest.approx(run.metrics)


def test_from_scratch_industry_model_fits_its_rows_alone(opportunities_path, trainer_main, check_trained, tmp_path):
    run = trainer_main("risk_scoring", opportunities_path, tmp_path, "--industry-id", "ind-2", "--from-scratch", *FAST)
    check_trained(run, {"RMSE", "MAE", "R2"})
    logged = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(run.run_id).data.params
    assert logged["industry_start"] == "scratch" and "rows_train_base" not in logged
    model = mlflow.pyfunc.load_model(str(run.output / "model"))
    assert risk_scoring.evaluate(model, risk_scoring.holdout(pl.read_parquet(opportunities_path), industry_id="ind-2")) == pytest.approx(run.metrics)


def test_industry_base_never_fits_the_industrys_validation_or_test_rows(make_opportunities):
    data = make_opportunities(400, seed=5)
    own_train, own_valid, own_test = risk_scoring.split(risk_scoring.training_rows(data, "ind-1"))
    base_train, base_valid = risk_scoring.base_split(data, "ind-1")
    assert base_train.join(pl.concat([own_valid, own_test]), on="opportunity_id", how="semi").is_empty()
    assert base_valid.join(own_test, on="opportunity_id", how="semi").is_empty()
    # otherwise the global model's own split: every other industry's training rows, and the
    # industry's training rows that fall in the global training part
    global_train, global_valid, _ = risk_scoring.split(risk_scoring.training_rows(data))
    assert base_train.equals(global_train.join(pl.concat([own_valid, own_test]), on="opportunity_id", how="anti"))
    assert base_valid.equals(global_valid.join(own_test, on="opportunity_id", how="anti"))
    assert set(base_train["industry_id"]) == {"ind-0", "ind-1", "ind-2", "ind-3"}


def test_industry_model_is_the_base_plus_a_correction(make_opportunities):
    """Warm start: the first trees are the base's, unchanged; the rest are learnt on the industry's rows."""
    data = make_opportunities(400, seed=5)
    features = list(catalog.RISK_SCORING_FEATURES)
    params = risk_scoring.RiskParams(iterations=60)
    base = risk_scoring.train(*risk_scoring.base_split(data, "ind-1"), features, params)
    train, valid, test = risk_scoring.split(risk_scoring.training_rows(data, "ind-1"))
    model = risk_scoring.train(train, valid, features, params, base)
    x = test.select(features).to_pandas()
    assert model.model.tree_count_ == base.model.tree_count_ + model.best_iteration + 1
    head = model.model.copy()
    head.shrink(base.model.tree_count_)
    assert head.predict(x) == pytest.approx(base.model.predict(x))
    assert model.model.predict(x) != pytest.approx(base.model.predict(x))
    assert model.target_range[0] <= base.target_range[0] and model.target_range[1] >= base.target_range[1]


def test_unknown_industry_is_bad_input(opportunities_path, trainer_main, check_bad_input, tmp_path):
    run = trainer_main("risk_scoring", opportunities_path, tmp_path, "--industry-id", "nope", *FAST)
    check_bad_input(run, opportunities_path, "industry_id")


def test_industry_without_industry_column_is_bad_input(make_opportunities, trainer_main, check_bad_input, tmp_path):
    data = tmp_path / "no-industry.parquet"
    make_opportunities(60).drop("industry_id").write_parquet(data)
    check_bad_input(trainer_main("risk_scoring", data, tmp_path, "--industry-id", "ind-1", *FAST), data, "industry_id")


def test_missing_feature_column_is_bad_input(make_opportunities, trainer_cli, check_bad_input, tmp_path):
    """In a real process: the exit code is what an Azure ML job or a flow sees."""
    data = tmp_path / "no-amount.parquet"
    make_opportunities(60).drop("amount").write_parquet(data)
    check_bad_input(trainer_cli("risk_scoring", data, tmp_path, *FAST), data, "amount")


def test_training_is_repeatable(make_opportunities):
    data = make_opportunities(200, seed=3)
    train, valid, test = risk_scoring.split(data)
    params = risk_scoring.RiskParams(iterations=60)
    features = list(catalog.RISK_SCORING_FEATURES)
    first = risk_scoring.train(train, valid, features, params).model.predict(test.select(features).to_pandas())
    again = risk_scoring.train(train, valid, features, params).model.predict(test.select(features).to_pandas())
    assert (first == again).all()
