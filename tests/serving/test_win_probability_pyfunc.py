"""The served win-probability pyfunc's fast paths give the trainer's answer (``score_frame``)."""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import polars as pl
import pytest

from models import win_probability as wp
from salesrisk import catalog
from tests.serving.conftest import _features

FEATURES = list(catalog.WIN_PROBABILITY_FEATURES)


@pytest.fixture(scope="module")
def trained():
    x = _features(600, 11)
    rng = np.random.default_rng(11)
    y = (rng.uniform(0, 1, len(x)) < 1 / (1 + np.exp(-(4 * x["probability"] - 2)))).astype(int)
    frame = pl.from_pandas(x).with_columns(pl.Series(catalog.WIN_TARGET, y))
    return wp.train(frame, FEATURES, wp.WinParams(iterations=40, cv_folds=3)), frame


@pytest.mark.parametrize("method", wp.CALIBRATION_METHODS)
def test_fast_probability_equals_the_trainers_for_either_calibration(trained, method):
    result, frame = trained
    x = frame.select(FEATURES).to_pandas()
    log_odds = result.model.log_odds(x)
    model = wp.WinModel(result.model.classifiers, wp.calibrator(method).fit(log_odds.reshape(-1, 1), frame[catalog.WIN_TARGET].to_numpy()), result.spec)
    fast = wp.FastProbability(model)

    assert fast.summed is not None and fast.calibrators is not None  # the fast paths were taken
    assert len(x) >= wp.PARALLEL_ROWS  # predicted with two CatBoost threads
    np.testing.assert_allclose(fast.probability(fast.features(x)), model.probability(x), rtol=0, atol=1e-12)
    # integers and column order as JSON delivers them go the careful way and agree too
    shuffled = x[FEATURES[::-1]].astype({"stage_encoded": "int64"})
    np.testing.assert_allclose(fast.probability(fast.features(shuffled)), model.probability(x), rtol=0, atol=1e-12)


def test_saved_model_answers_with_factors_by_default_and_without_when_asked(trained, tmp_path):
    result, frame = trained
    wp.save(result, tmp_path / "model", frame)
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    x = frame.select(FEATURES).head(40).to_pandas()
    expected = wp.score_frame(result.model, x)

    full = loaded.predict(x)
    assert list(full.columns) == ["win_probability", "top_factors"]
    np.testing.assert_allclose(full["win_probability"], expected["win_probability"], rtol=0, atol=1e-12)
    assert full["top_factors"].tolist() == expected["top_factors"].tolist()

    lean = loaded._model_impl.predict(x, params={"top_factors": False})
    assert list(lean.columns) == ["win_probability"]
    np.testing.assert_allclose(lean["win_probability"], expected["win_probability"], rtol=0, atol=1e-12)
    assert set(loaded.metadata.metadata["numeric_inputs"]) == set(FEATURES)


def test_a_model_with_categories_is_served_from_its_folds_as_the_trainer_scores():
    """CatBoost's sum of fold models does not merge their categorical statistics: a model with
    categories answers from its folds, equal to the trainer's probability and contributions."""
    x = _features(600, 12)
    rng = np.random.default_rng(12)
    region = rng.choice(["north", "south", "east", "west"], len(x))
    logit = 4 * x["probability"] - 2 + np.where(region == "north", 1.0, -0.5)
    y = (rng.uniform(0, 1, len(x)) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pl.from_pandas(x).with_columns(pl.Series("region", region), pl.Series(catalog.WIN_TARGET, y))
    result = wp.train(frame, [*FEATURES, "region"], wp.WinParams(iterations=40, cv_folds=3))
    fast = wp.FastProbability(result.model, explain=True)
    rows = frame.select(*FEATURES, "region").to_pandas().head(50)

    assert result.spec.categorical == ("region",) and fast.summed is None
    np.testing.assert_allclose(fast.probability(fast.features(rows)), result.model.probability(rows), rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.contributions(fast.features(rows)), result.model.contributions(rows), rtol=0, atol=1e-12)
    every = frame.select(*FEATURES, "region").to_pandas()  # the folds predicted with two CatBoost threads
    assert len(every) >= wp.PARALLEL_ROWS
    np.testing.assert_allclose(fast.probability(fast.features(every)), result.model.probability(every), rtol=0, atol=1e-12)
