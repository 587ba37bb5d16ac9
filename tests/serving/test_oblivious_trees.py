"""The split table gives CatBoost's own leaves and raw predictions on the cases that are easy to get
wrong: values exactly on a border and one float32 step either side, doubles that round onto a
border, missing values sent either way, trees of different depths in one summed model; models it
does not cover are left to CatBoost, and large batches stay with CatBoost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import explain, oblivious_trees
from tests.serving.conftest import tree_data as _data


def _on_the_borders(model, n: int, seed: int) -> np.ndarray:
    """Rows whose first two features sit on one of their borders, a float32 step off it, or a
    double that rounds onto it; every fifth value of feature 1 missing."""
    rng = np.random.default_rng(seed)
    probe, _ = _data(n, seed)
    for j in (0, 1):
        borders = np.asarray(model.get_borders()[j], dtype=np.float32)
        picked = rng.choice(borders, n)
        step = rng.choice([-1, 0, 1], n)
        with np.errstate(over="ignore"):  # a step above float32's largest value is +inf
            values = np.where(step < 0, np.nextafter(picked, np.float32(-np.inf)),
                              np.where(step > 0, np.nextafter(picked, np.float32(np.inf)), picked)).astype(np.float64)
        values[::4] = picked[::4].astype(np.float64) + 1e-12  # rounds onto the border as float32
        probe[:, j] = values
    probe[::5, 1] = np.nan
    return probe


@pytest.mark.parametrize("nan_mode", ["Min", "Max"])
def test_table_gives_catboosts_leaves_and_predictions(nan_mode):
    from catboost import CatBoostRegressor

    x, y = _data(600, 1)
    x[::7, 1] = np.nan
    model = CatBoostRegressor(iterations=80, depth=6, verbose=0, allow_writing_files=False, thread_count=1,
                              random_seed=0, nan_mode=nan_mode).fit(x, y)
    trees = oblivious_trees.compile_trees(model)
    assert trees is not None
    probe = _on_the_borders(model, 400, 2)

    np.testing.assert_array_equal(trees.leaf_indexes(probe), model.calc_leaf_indexes(probe))
    np.testing.assert_allclose(trees.raw(probe), model.predict(probe), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(trees.raw(probe[3:4]), model.predict(probe[3:4]), rtol=1e-12, atol=1e-12)


def test_summed_models_of_different_depths_and_their_probabilities():
    from catboost import CatBoostClassifier, sum_models

    x, y = _data(900, 3)
    label = (y > np.median(y)).astype(int)
    folds = [CatBoostClassifier(iterations=40, depth=depth, verbose=0, allow_writing_files=False, thread_count=1,
                                random_seed=s).fit(x[s::3], label[s::3]) for s, depth in enumerate((3, 6, 4))]
    summed = sum_models(folds, weights=[1 / 3] * 3)
    trees = oblivious_trees.compile_trees(summed)
    assert trees is not None and trees.features.shape[1] == 6  # padded to the deepest tree
    probe = _on_the_borders(folds[1], 300, 4)

    np.testing.assert_array_equal(trees.leaf_indexes(probe), summed.calc_leaf_indexes(probe))
    np.testing.assert_allclose(trees.raw(probe), summed.predict(probe, prediction_type="RawFormulaVal"), rtol=1e-12, atol=1e-12)


def test_the_explainer_reads_leaves_from_the_table_and_gives_the_same_shap_values():
    from catboost import CatBoostRegressor, Pool

    x, y = _data(500, 5)
    model = CatBoostRegressor(iterations=50, depth=5, verbose=0, allow_writing_files=False, thread_count=1,
                              random_seed=0).fit(x, y)
    trees, table = explain.fast_paths(model, list("abcde"), [])
    assert isinstance(table, explain.LeafShap) and table.trees is trees is not None
    probe = _on_the_borders(model, 20, 6)
    exact = model.get_feature_importance(Pool(probe), type="ShapValues")[:, :-1]
    for rows in (slice(0, 1), slice(0, 20)):  # the table's leaves, then CatBoost's past its size
        np.testing.assert_allclose(table(probe[rows]), exact[rows], rtol=0, atol=1e-9)


def test_models_the_table_does_not_cover_are_left_to_catboost():
    from catboost import CatBoostRegressor

    x, y = _data(300, 7)
    frame = pd.DataFrame(x, columns=list("abcde")).assign(region=np.where(y > 0, "north", "south"))
    categorical = CatBoostRegressor(iterations=20, depth=4, verbose=0, allow_writing_files=False, thread_count=1,
                                    random_seed=0, cat_features=[5]).fit(frame, y)
    assert oblivious_trees.compile_trees(categorical) is None
    trees, chosen = explain.fast_paths(categorical, list(frame.columns), [5])
    assert trees is None and isinstance(chosen, explain.CatBoostShap)


def test_only_small_float_blocks_take_the_table():
    from catboost import CatBoostRegressor

    x, y = _data(300, 8)
    model = CatBoostRegressor(iterations=100, depth=4, verbose=0, allow_writing_files=False, thread_count=1,
                              random_seed=0).fit(x, y)
    trees = oblivious_trees.compile_trees(model)
    largest = oblivious_trees.SMALL_CELLS // trees.n_trees
    assert trees.takes(x[:1]) and trees.takes(x[:largest])
    assert not trees.takes(x[: largest + 1])
    assert not trees.takes(pd.DataFrame(x[:1]))
