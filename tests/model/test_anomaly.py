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
    metrics = check_trained(trained, {"F1", "validation_F1", "chosen_contamination", "chosen_max_features"})
    assert trained.model_name == "anomaly-detection-isolation-forest"
    assert metrics["F1"] > 0.7  # the generated outliers sit far from the inliers
    assert 0 < metrics["chosen_contamination"] <= 0.5
    assert metrics["chosen_max_features"] in anomaly.MAX_FEATURES_CANDIDATES


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
    assert anomaly.evaluate(model, rows) == pytest.approx({"F1": trained.metrics["F1"]})


def test_without_labels_metrics_hold_the_flagged_share(make_anomalies, trainer_main, check_trained, tmp_path):
    data = tmp_path / "unlabelled.parquet"
    make_anomalies(300, label=False).write_parquet(data)
    run = trainer_main("anomaly", data, tmp_path, "--param-contamination", "0.2", "--param-n-estimators", "30")
    metrics = check_trained(run, {"anomaly_rate", "chosen_contamination", "chosen_max_features"})
    assert metrics["chosen_contamination"] == 0.2  # no labels: the runbook's share, as given
    assert metrics["chosen_max_features"] == 1.0  # and the runbook's forest
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


def test_a_text_only_file_exits_2_naming_its_columns_and_writes_nothing(trainer_cli, check_bad_input, tmp_path):
    """Through the command line in a real process, like tests/reliability: exit code and files."""
    data = tmp_path / "text-only.parquet"
    pl.DataFrame({"comment": [f"note {i}" for i in range(60)], "owner": ["ann", "bob"] * 30}).write_parquet(data)
    run = trainer_cli("anomaly", data, tmp_path, *PARAMS)
    check_bad_input(run, data, "numeric feature")
    assert "comment" in run.done.stderr and "owner" in run.done.stderr
    assert not run.output.exists() or not any(run.output.iterdir())


def test_labels_choose_a_share_near_the_true_rate_and_beat_the_runbook_share():
    """3 % outliers: the runbook's 10 % flags three inliers per outlier; the validation folds find
    a share near the true rate, and F1 on rows no forest saw goes up."""
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(5)
    n, outliers = 2000, 60
    x = rng.normal(0, 1, (n, 4))
    x[:outliers] += rng.choice([-1, 1], (outliers, 4)) * rng.uniform(2.5, 4, (outliers, 4))
    frame = pl.DataFrame({f"x{i}": x[:, i] for i in range(4)}).with_columns(
        pl.Series("is_anomaly", (np.arange(n) < outliers).astype(np.int64))
    )
    train_df, test_df = anomaly.split(frame, 0)
    features = [f"x{i}" for i in range(4)]
    params = anomaly.AnomalyParams(n_estimators=50, seed=0)
    threshold = anomaly.choose_contamination(train_df, features, params)
    assert 0.015 <= threshold.contamination <= 0.06
    tuned = anomaly.train(train_df, features, threshold.params(params))
    truth = test_df["is_anomaly"].to_numpy() == 1
    ours = f1_score(truth, anomaly.score_frame(tuned.pipeline, tuned.spec, test_df.to_pandas())["is_anomaly"])
    plain = IsolationForest(n_estimators=50, contamination=0.1, random_state=0).fit(train_df.select(features).to_numpy())
    assert ours > f1_score(truth, plain.predict(test_df.select(features).to_numpy()) == -1)


def test_best_share_counts_ties_as_one_cut():
    share, f1 = anomaly.best_share(np.array([0.1, 0.1, 0.2, 0.3, 0.6]), np.array([True, True, False, True, False]))
    assert share == 0.3 and f1 == pytest.approx(2 * 3 / (4 + 3))  # 0.6 is above the 0.5 cap
    # two rows tie at 0.1: flagging "the first of them" is no cut a threshold can make
    share, f1 = anomaly.best_share(np.array([0.1, 0.1, 0.4]), np.array([True, False, False]))
    assert share == 0.1 and f1 == pytest.approx(2 / 3)


def _labelled_frame(seed: int, n: int = 1200, outliers: int = 60, width: int = 6) -> pl.DataFrame:
    """Outliers shifted in the first two of ``width`` features, the rest noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, width))
    x[:outliers, :2] += rng.choice([-1, 1], (outliers, 2)) * rng.uniform(2, 3.5, (outliers, 2))
    return pl.DataFrame({f"x{i}": x[:, i] for i in range(width)}).with_columns(
        pl.Series("is_anomaly", (np.arange(n) < outliers).astype(np.int64))
    )


def test_labels_choose_max_features_by_validation_f1_and_log_every_candidate():
    frame = _labelled_frame(1)
    features = [c for c in frame.columns if c != "is_anomaly"]
    params = anomaly.AnomalyParams(n_estimators=30, seed=0)
    threshold = anomaly.choose_contamination(frame, features, params)
    assert threshold.max_features in anomaly.MAX_FEATURES_CANDIDATES
    for max_features in anomaly.MAX_FEATURES_CANDIDATES:
        assert f"max_features {max_features:g}: F1 " in threshold.how
    tried = [float(part.split("F1 ")[1].split(" ")[0]) for part in threshold.how.split("; ")]
    assert threshold.validation_f1 == pytest.approx(max(tried), abs=1e-4)
    trained = anomaly.train(frame, features, threshold.params(params))
    forest = trained.pipeline.steps[-1][1]
    assert (forest.max_features, forest.contamination) == (threshold.max_features, threshold.contamination)


def test_a_tie_keeps_every_feature_and_no_labels_keep_the_runbook_forest(monkeypatch):
    frame = _labelled_frame(2)
    features = [c for c in frame.columns if c != "is_anomaly"]
    params = anomaly.AnomalyParams(n_estimators=20, seed=0)
    monkeypatch.setattr(anomaly, "best_share", lambda ranks, truth: (0.05, 0.5))
    assert anomaly.choose_contamination(frame, features, params).max_features == 1.0
    unlabelled = anomaly.choose_contamination(frame.drop("is_anomaly"), features, params)
    assert (unlabelled.max_features, unlabelled.contamination, unlabelled.validation_f1) == (1.0, 0.1, None)


def test_a_half_features_forest_is_served_exactly_by_the_stacked_scorer():
    from models import forest_scoring

    frame = _labelled_frame(3)
    features = [c for c in frame.columns if c != "is_anomaly"]
    trained = anomaly.train(frame, features, anomaly.AnomalyParams(n_estimators=40, max_features=0.5))
    scorer = forest_scoring.pipeline_scorer(trained.pipeline)
    assert scorer is not None  # the stacked forest, not the scikit-learn fallback
    rows = frame.drop("is_anomaly").to_pandas()
    fast = anomaly.score_frame(trained.pipeline, trained.spec, rows, scorer)
    slow = anomaly.score_frame(trained.pipeline, trained.spec, rows)
    np.testing.assert_allclose(fast["anomaly_score"], slow["anomaly_score"], rtol=1e-12, atol=1e-12)
    assert (fast["is_anomaly"] == slow["is_anomaly"]).all()
