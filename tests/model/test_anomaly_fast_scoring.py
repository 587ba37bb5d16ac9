"""The served anomaly model scores with the stacked forest (models/forest_scoring.py): the same
floats as scikit-learn's ``score_samples`` (bit for bit) and the same flags as its ``predict``, on
the trainer's own model and on forests of other shapes; anything else falls back to scikit-learn."""

from __future__ import annotations

import argparse

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from models import anomaly, forest_scoring, tabular

TOLERANCE = 0.0  # the same floats: the same leaf values, summed in scikit-learn's order


def check_same(forest: IsolationForest, x: np.ndarray) -> None:
    stacked = forest_scoring.stack_forest(forest)
    assert stacked is not None
    ours = stacked.score_samples(x)
    np.testing.assert_allclose(ours, forest.score_samples(x), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(ours - stacked.offset, forest.decision_function(x), rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(stacked.is_outlier(ours), forest.predict(x) == -1)


def per_tree_path_lengths(forest: IsolationForest, x: np.ndarray) -> np.ndarray:
    """(n_trees, n_rows): what each fitted tree's own ``apply`` adds to each row's depth."""
    values = np.asarray(x, dtype=np.float32)
    out = []
    for tree, columns, lengths, averages in zip(
        forest.estimators_, forest.estimators_features_, forest._decision_path_lengths, forest._average_path_length_per_tree
    ):
        leaf = tree.apply(values[:, columns] if forest._max_features != values.shape[1] else values)
        out.append(lengths[leaf] + averages[leaf] - 1.0)
    return np.array(out)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"max_features": 0.5},  # each tree sees its own subset of columns
        {"max_features": 3, "bootstrap": True, "contamination": "auto"},
        {"max_samples": 40, "contamination": 0.05},
        {"max_samples": 1.0, "n_estimators": 7},  # deeper trees than the default 256 rows give
        {"max_samples": 2},  # trees of depth 1
        {"max_samples": 1},  # every tree a single leaf (depth 0)
    ],
)
def test_random_forests_score_like_sklearn(options):
    rng = np.random.default_rng(3)
    train = rng.normal(size=(600, 5)) * [1, 10, 0.1, 1, 3]
    forest = IsolationForest(**{"n_estimators": 60, "random_state": 4, **options}).fit(train)
    unseen = rng.standard_t(2, size=(500, 5)) * 4
    check_same(forest, unseen)
    check_same(forest, train)  # includes the rows offset_ was cut from: a tie must stay a tie
    for rows in (1, 2, 3):  # small requests, summed in the same order
        check_same(forest, unseen[:rows])


def test_missing_values_follow_the_trees_like_sklearn():
    rng = np.random.default_rng(8)
    train = rng.normal(size=(400, 4))
    train[::9, 1] = np.nan
    forest = IsolationForest(n_estimators=40, random_state=0).fit(train)
    unseen = rng.normal(size=(300, 4)) * 2
    unseen[::5, 0] = np.nan
    unseen[::7, 1] = np.nan
    check_same(forest, unseen)


def test_large_requests_score_like_sklearn():
    """Tens of thousands of rows in one call, with and without missing values."""
    rng = np.random.default_rng(5)
    train = rng.normal(size=(2000, 6))
    train[::13, 2] = np.nan
    forest = IsolationForest(n_estimators=50, max_features=0.7, random_state=1).fit(train)
    many = rng.standard_t(3, size=(30_000, 6)) * 2
    check_same(forest, many)
    many[::17, 2] = np.nan
    many[::29, 4] = np.nan
    check_same(forest, many)


def test_requests_never_compile_once_the_forest_is_built():
    """numba compiles the walk for the argument types of its first call, made by ``stack_forest``:
    inputs of any dtype, order or writability are brought to those types, so no request compiles."""
    rng = np.random.default_rng(2)
    forest = IsolationForest(n_estimators=20, random_state=0).fit(rng.normal(size=(200, 3)))
    stacked = forest_scoring.stack_forest(forest)
    compiled = forest_scoring._compiled_walk().signatures
    x = rng.normal(size=(40, 3))
    read_only = x.astype(np.float32)
    read_only.flags.writeable = False
    wide = np.hstack([x, x])
    batch = np.tile(x, (10, 1))  # walked in two halves, each a slice of the batch
    assert len(batch) >= forest_scoring.SPLIT_ROWS
    for rows in (x, np.asfortranarray(x), read_only, x.round().astype(np.int64), wide[:, ::2], x[:1], pd.DataFrame(x), batch):
        np.testing.assert_allclose(stacked.score_samples(rows), forest.score_samples(np.asarray(rows)), rtol=0, atol=TOLERANCE)
    stacked.leaves(x)
    assert forest_scoring._compiled_walk().signatures == compiled


def test_a_batch_walked_in_two_halves_scores_as_one_walk(monkeypatch):
    """From ``SPLIT_ROWS`` rows the second half is walked by the helper thread: the same floats,
    each row in its place, for odd row counts and rows with missing values too."""
    rng = np.random.default_rng(6)
    train = rng.normal(size=(500, 4))
    train[::11, 3] = np.nan
    forest = IsolationForest(n_estimators=30, random_state=2).fit(train)
    stacked = forest_scoring.stack_forest(forest)
    rows = rng.normal(size=(301, 4)) * 2
    rows[::4, 3] = np.nan
    monkeypatch.setattr(forest_scoring, "SPLIT_ROWS", 10**9)
    whole = stacked.score_samples(rows)
    monkeypatch.setattr(forest_scoring, "SPLIT_ROWS", 2)
    for n in (2, 3, 301):
        np.testing.assert_array_equal(stacked.score_samples(rows[:n]), whole[:n])
    np.testing.assert_array_equal(whole, forest.score_samples(rows))


def test_wrong_width_is_refused():
    forest = IsolationForest(n_estimators=5, random_state=0).fit(np.random.default_rng(0).normal(size=(50, 3)))
    with pytest.raises(ValueError, match="3"):
        forest_scoring.stack_forest(forest).score_samples(np.zeros((2, 4)))


def test_other_shapes_fall_back_to_sklearn():
    x = np.random.default_rng(1).normal(size=(80, 3))
    assert forest_scoring.stack_forest(IsolationForest()) is None  # not fitted
    assert forest_scoring.pipeline_scorer(Pipeline([("scale", StandardScaler().fit(x))])) is None
    assert forest_scoring.pipeline_scorer("not a pipeline") is None


@pytest.fixture(scope="module")
def trained_model_dir(make_anomalies, tmp_path_factory):
    """The trainer's own model, through ``fit`` (threshold chosen on labels), saved."""
    frame = make_anomalies(400).with_columns(
        pl.Series("segment", np.where(np.arange(400) % 3 == 0, "a", "b")),
    )
    out = tmp_path_factory.mktemp("anomaly-fast") / "model"
    args = argparse.Namespace(
        training_data="memory", seed=42, param_contamination=0.1, param_n_estimators=50, tune_threshold=True
    )
    anomaly.fit(frame, ["x0", "x1", "x2", "x3", "segment"], args, out)
    return frame, out


@pytest.fixture(scope="module")
def trained_model(trained_model_dir):
    """The trainer's own model, reloaded."""
    frame, out = trained_model_dir
    return frame, mlflow.pyfunc.load_model(str(out))


def test_the_saved_model_requires_the_numba_it_was_tested_with(trained_model_dir):
    """A server built from the model's own requirements (Azure ML, ``mlflow models serve``) can
    compile the walk: numba is pinned there beside scikit-learn."""
    from importlib.metadata import version

    _, out = trained_model_dir
    requirements = (out / "requirements.txt").read_text().split()
    assert f"numba=={version('numba')}" in requirements
    assert f"scikit-learn=={version('scikit-learn')}" in requirements


def test_the_trainers_model_serves_sklearns_answer(trained_model):
    frame, model = trained_model
    python_model = model.unwrap_python_model()
    pipeline, spec = python_model._pipeline, python_model.spec
    assert python_model._scorer is not None  # the fast path is the one being served
    rng = np.random.default_rng(11)
    inputs = frame.drop("is_anomaly").to_pandas()
    random_rows = pd.DataFrame({name: rng.normal(0, 3, 300) for name in ["x0", "x1", "x2", "x3"]})
    random_rows.loc[::7, "x2"] = np.nan
    random_rows["segment"] = rng.choice(["a", "b", "never-seen", None], 300)
    for rows in (inputs, random_rows, inputs.head(1)):
        served = model.predict(rows)
        x = tabular.model_frame(rows, spec)
        np.testing.assert_allclose(served["anomaly_score"], -pipeline.score_samples(x), rtol=0, atol=TOLERANCE)
        np.testing.assert_array_equal(served["is_anomaly"].to_numpy(), pipeline.predict(x) == -1)
        expected = anomaly.score_frame(pipeline, spec, rows)  # no scorer: scikit-learn itself
        pd.testing.assert_frame_equal(served, expected, check_exact=False, rtol=0, atol=TOLERANCE)
    flagged = model.predict(inputs)["is_anomaly"]
    assert 0 < flagged.sum() < len(flagged)  # the threshold cuts somewhere inside this data


def test_preprocessing_still_runs(trained_model):
    """Scaling and the category codes happen before the trees: skipping them changes the answer."""
    frame, model = trained_model
    python_model = model.unwrap_python_model()
    x = tabular.model_frame(frame.drop("is_anomaly").to_pandas(), python_model.spec)
    raw = x.assign(segment=(x["segment"] == "b").astype(float)).to_numpy()
    stacked = python_model._scorer.forest
    assert not np.allclose(stacked.score_samples(raw), python_model._scorer.score_samples(x))


def test_the_trainers_preprocessing_is_reproduced_exactly(trained_model):
    frame, model = trained_model
    python_model = model.unwrap_python_model()
    fast = python_model._scorer.preprocess
    assert isinstance(fast, forest_scoring.TabularPreprocess)
    rows = frame.drop("is_anomaly").to_pandas()
    rows.loc[::4, "x1"] = np.nan
    rows.loc[::5, "segment"] = "never-seen"
    rows.loc[::6, "segment"] = None
    x = tabular.model_frame(rows, python_model.spec)
    np.testing.assert_array_equal(fast.transform(x), python_model._pipeline[:-1].transform(x))


def test_other_preprocessing_is_left_to_sklearn():
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "s": ["x", "y", "x"]})
    other = ColumnTransformer([("numeric", StandardScaler(), ["a"]), ("categorical", OneHotEncoder(), ["s"])]).fit(frame)
    assert forest_scoring.tabular_preprocess(other) is None
    pipeline = Pipeline([("preprocess", other), ("forest", IsolationForest(n_estimators=5, random_state=0))]).fit(frame)
    scorer = forest_scoring.pipeline_scorer(pipeline)
    assert scorer.preprocess is not None and not isinstance(scorer.preprocess, forest_scoring.TabularPreprocess)
    np.testing.assert_allclose(scorer.score_samples(frame), pipeline.score_samples(frame), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("options", [{}, {"max_features": 0.5}, {"max_samples": 1.0}])
def test_every_tree_finds_the_leaf_its_own_apply_finds(options):
    """The level walk over the complete layout reaches, in every tree, a leaf worth what the tree's
    own ``apply`` gives: on shallow leaves (padded) and missing values, either way."""
    rng = np.random.default_rng(21)
    train = rng.normal(size=(300, 4))
    train[::11, 3] = np.nan  # the trees learn where NaN goes, both ways
    forest = IsolationForest(n_estimators=30, random_state=2, **options).fit(train)
    stacked = forest_scoring.stack_forest(forest)
    assert stacked.sends_missing_right and not stacked.missing_right.all()
    x = (rng.normal(size=(300, 4)) * 3).astype(np.float32)
    x[::6, 2] = np.nan
    x[::5, 3] = np.nan
    x[7] = [1e30, -1e30, 0.0, np.nan]
    np.testing.assert_array_equal(stacked.leaf_depth.take(stacked.leaves(x)), per_tree_path_lengths(forest, x))
    check_same(forest, x)
    check_same(forest, x[:1])


def test_forests_too_deep_to_lay_out_are_left_to_sklearn(monkeypatch):
    forest = IsolationForest(n_estimators=10, max_samples=1.0, random_state=0).fit(np.random.default_rng(0).normal(size=(500, 3)))
    depth = max(tree.tree_.max_depth for tree in forest.estimators_)
    monkeypatch.setattr(forest_scoring, "MAX_LEAVES", (10 << depth) - 1)
    assert forest_scoring.stack_forest(forest) is None
    monkeypatch.setattr(forest_scoring, "MAX_LEAVES", 10 << depth)
    check_same(forest, np.random.default_rng(1).normal(size=(50, 3)))


def test_numeric_frames_skip_model_frame_with_the_same_answer(make_anomalies, tmp_path):
    """A numbers-only model reads float and int columns as they come (JSON turns 5.0 into 5); any
    other column type still goes through tabular.model_frame."""
    frame = make_anomalies(300)
    features = ["x0", "x1", "x2", "x3"]
    trained = anomaly.train(frame, features, anomaly.AnomalyParams(n_estimators=30))
    scorer = forest_scoring.pipeline_scorer(trained.pipeline)
    rows = frame.select(features).to_pandas()
    rows["x1"] = rows["x1"].round().astype("int64")
    rows.loc[::5, "x2"] = np.nan
    assert forest_scoring.takes_frame_as_is(scorer, rows, trained.spec)
    as_objects = rows.astype(object)
    assert not forest_scoring.takes_frame_as_is(scorer, as_objects, trained.spec)
    assert not forest_scoring.takes_frame_as_is(scorer, rows.drop(columns="x0"), trained.spec)
    expected = anomaly.score_frame(trained.pipeline, trained.spec, rows)  # scikit-learn, via model_frame
    pd.testing.assert_frame_equal(anomaly.score_frame(trained.pipeline, trained.spec, rows, scorer), expected, rtol=0, atol=TOLERANCE)
    pd.testing.assert_frame_equal(anomaly.score_frame(trained.pipeline, trained.spec, as_objects, scorer), expected, rtol=0, atol=TOLERANCE)
    with pytest.raises(KeyError, match="x0"):
        anomaly.score_frame(trained.pipeline, trained.spec, rows.drop(columns="x0"), scorer)
