"""The kept per-leaf SHAP table gives CatBoost's own exact SHAP values, on the cases that are easy
to get wrong: a feature split on at several levels of one tree, missing values, leaves no training
row reached, shallow and deep trees, a summed model; models it cannot cover go to CatBoost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import explain
from tests.serving.conftest import tree_data as _data


def _exact(model, x) -> np.ndarray:
    from catboost import Pool

    return model.get_feature_importance(Pool(x), type="ShapValues")[:, :-1]


@pytest.mark.parametrize("depth", [2, 6, 8])
def test_table_equals_catboost_exact_shap(depth):
    from catboost import CatBoostRegressor

    x, y = _data(600, depth)
    x[::7, 1] = np.nan  # missing values at training and scoring time
    model = CatBoostRegressor(iterations=60, depth=depth, verbose=0, allow_writing_files=False, thread_count=1,
                              random_seed=0).fit(x, y)
    probe, _ = _data(300, 100 + depth)
    probe[::5, 1] = np.nan
    probe[::11, 0] = 25.0  # far outside the training range: leaves few or no training rows reached
    table = explain.LeafShap(model, x.shape[1])

    assert explain.covered(model)
    np.testing.assert_allclose(table(probe), _exact(model, probe), rtol=0, atol=1e-9)
    np.testing.assert_allclose(table(probe[:1]), _exact(model, probe[:1]), rtol=0, atol=1e-9)  # the one-row path


def test_summed_classifiers_have_the_mean_of_their_shap_values():
    from catboost import CatBoostClassifier, sum_models

    x, y = _data(800, 3)
    label = (y > np.median(y)).astype(int)
    folds = [CatBoostClassifier(iterations=40, depth=4, verbose=0, allow_writing_files=False, thread_count=1,
                                random_seed=s).fit(x[s::3], label[s::3]) for s in range(3)]
    summed = sum_models(folds, weights=[1 / 3] * 3)
    probe, _ = _data(200, 9)
    mean = np.mean([_exact(m, probe) for m in folds], axis=0)
    np.testing.assert_allclose(explain.explainer(summed, list("abcde"), [])(probe), mean, rtol=0, atol=1e-9)


def test_categorical_models_are_explained_by_catboost_itself():
    from catboost import CatBoostRegressor, Pool

    x, y = _data(400, 4)
    frame = pd.DataFrame(x, columns=list("abcde")).assign(region=np.where(y > 0, "north", "south"))
    model = CatBoostRegressor(iterations=30, depth=4, verbose=0, allow_writing_files=False, thread_count=1,
                              random_seed=0, cat_features=[5]).fit(frame, y)
    chosen = explain.explainer(model, list(frame.columns), [5])
    assert isinstance(chosen, explain.CatBoostShap)
    expected = model.get_feature_importance(Pool(frame, cat_features=[5]), type="ShapValues")[:, :-1]
    np.testing.assert_allclose(chosen(frame), expected, rtol=0, atol=1e-12)
