"""anomaly through its command line: an IsolationForest Pipeline saved as a pyfunc that loads in a
fresh process, with the runbook's F1 when ``is_anomaly`` is present."""

from __future__ import annotations

import mlflow
import numpy as np
import polars as pl
import pytest

from models import anomaly

pytestmark = pytest.mark.slow
PARAMS = ("--param-contamination", "0.1", "--param-n-estimators", "50")


@pytest.fixture(scope="module")
def trained(anomaly_path, trainer_cli, tmp_path_factory):
    return trainer_cli("anomaly", anomaly_path, tmp_path_factory.mktemp("anomaly"), *PARAMS)


def test_cli_writes_runbook_metrics_logged_to_mlflow(trained, check_trained):
    metrics = check_trained(trained, {"F1"})
    assert trained.model_name == "anomaly-detection-isolation-forest"
    assert metrics["F1"] > 0.7  # the generated outliers sit far from the inliers


def test_model_loads_in_fresh_process_with_its_own_code(trained, anomaly_path, fresh_predict, tmp_path):
    answer = fresh_predict(trained.output / "model", anomaly_path, tmp_path)
    assert answer["columns"] == ["anomaly_score", "is_anomaly"]
    assert answer["rows"] == pl.read_parquet(anomaly_path).height
    assert answer["code"].startswith(str(trained.output / "model" / "code"))
    assert all(isinstance(row["is_anomaly"], bool) for row in answer["head"])


def test_scores_rank_outliers_first_and_holdout_reproduces_f1(trained, anomaly_path):
    data = pl.read_parquet(anomaly_path)
    model = mlflow.pyfunc.load_model(str(trained.output / "model"))
    out = model.predict(data.drop("is_anomaly").to_pandas())
    truth = data["is_anomaly"].to_numpy()
    assert out["anomaly_score"][truth].mean() > out["anomaly_score"][~truth].mean()
    flagged = out["is_anomaly"].to_numpy()
    assert out["anomaly_score"][flagged].min() >= out["anomaly_score"][~flagged].max()  # one threshold
    rows = anomaly.holdout(data)
    assert rows.height == round(0.2 * data.height)
    assert rows["is_anomaly"].sum() == pytest.approx(0.2 * truth.sum(), abs=1)  # stratified
    assert anomaly.evaluate(model, rows) == pytest.approx(trained.metrics)


def test_without_labels_metrics_hold_the_flagged_share(make_anomalies, trainer_main, check_trained, tmp_path):
    data = tmp_path / "unlabelled.parquet"
    make_anomalies(300, label=False).write_parquet(data)
    run = trainer_main("anomaly", data, tmp_path, "--param-contamination", "0.2", "--param-n-estimators", "30")
    metrics = check_trained(run, {"anomaly_rate"})
    assert 0.05 <= metrics["anomaly_rate"] <= 0.4


def test_strings_are_encoded_inside_the_pipeline(make_anomalies):
    frame = make_anomalies(200).with_columns(pl.Series("segment", np.where(np.arange(200) % 2 == 0, "a", "b")))
    trained = anomaly.train(frame, ["x0", "x1", "segment"], anomaly.AnomalyParams(n_estimators=20))
    assert trained.spec.categorical == ("segment",)
    unseen = frame.head(3).with_columns(pl.lit("never-seen").alias("segment")).to_pandas()
    out = anomaly.score_frame(trained.pipeline, trained.spec, unseen)
    assert np.isfinite(out["anomaly_score"]).all()


def test_training_is_repeatable(make_anomalies):
    frame = make_anomalies(200)
    features = ["x0", "x1", "x2", "x3"]
    first = anomaly.train(frame, features, anomaly.AnomalyParams(n_estimators=20))
    again = anomaly.train(frame, features, anomaly.AnomalyParams(n_estimators=20))
    x = frame.select(features).to_pandas()
    assert (first.pipeline.score_samples(x) == again.pipeline.score_samples(x)).all()


def test_out_of_range_contamination_is_a_usage_error(anomaly_path, trainer_main, tmp_path):
    run = trainer_main("anomaly", anomaly_path, tmp_path, "--param-contamination", "0.9")
    assert run.done.returncode == 2
    assert "--param-contamination" in run.done.stderr


def test_non_numeric_label_is_bad_input(make_anomalies, trainer_cli, check_bad_input, tmp_path):
    """In a real process: the exit code is what an Azure ML job or a flow sees."""
    data = tmp_path / "bad-label.parquet"
    make_anomalies(60).with_columns(pl.lit("yes").alias("is_anomaly")).write_parquet(data)
    check_bad_input(trainer_cli("anomaly", data, tmp_path, *PARAMS), data, "is_anomaly")
