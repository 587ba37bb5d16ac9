"""Feature casting and splits shared by the tabular trainers (risk_scoring, win_probability, anomaly)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.model_selection import train_test_split

from models import splits, tabular


def test_model_frame_casts_like_json_input_would_arrive():
    spec = tabular.FeatureSpec(("n", "s"), ("s",))
    out = tabular.model_frame(pd.DataFrame({"s": ["x", None, "z"], "n": [1, None, "3"], "extra": 0}), spec)
    assert list(out.columns) == ["n", "s"]
    assert out["n"].dtype == "float64" and np.isnan(out["n"][1]) and out["n"][2] == 3.0
    assert out["s"].tolist() == ["x", tabular.MISSING_CATEGORY, "z"]
    with pytest.raises(ValueError, match="'n'"):
        tabular.model_frame(pd.DataFrame({"n": [1, "abc"], "s": ["x", "y"]}), spec)
    with pytest.raises(KeyError, match="'s'"):
        tabular.model_frame(pd.DataFrame({"n": [1]}), spec)


def test_feature_spec_takes_strings_as_categorical():
    frame = pl.DataFrame({"a": [1.0], "b": ["x"], "c": pl.Series(["y"], dtype=pl.Categorical), "d": [True]})
    assert tabular.feature_spec(frame, ["a", "b", "c", "d"]).categorical == ("b", "c")


def test_top_factors_are_the_largest_by_size_with_their_sign():
    contributions = np.array([[0.1, -0.5, 0.3, 0.0], [0.0, 0.0, 0.0, 2.0]])
    values = np.array([[1.0, np.nan, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    rows = tabular.top_factors(contributions, ["a", "b", "c", "d"], values)
    assert [f["feature"] for f in rows[0]] == ["b", "c", "a"]
    assert rows[0][0] == {"feature": "b", "value": None, "contribution": -0.5}  # a missing value is null
    assert rows[1][0] == {"feature": "d", "value": 8.0, "contribution": 2.0}


def test_random_split_equals_scikit_learn_stratified_split():
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"x": rng.normal(size=500), "y": (rng.random(500) < 0.1).astype(int)})
    train, test = splits.split_positions(frame, (0.8, 0.2), 42, stratify="y")
    _, expected = train_test_split(np.arange(500), test_size=0.2, stratify=frame["y"].to_numpy(), random_state=42)
    assert (test == np.sort(expected)).all()
    assert sorted([*train, *test]) == list(range(500))


def test_time_split_puts_the_latest_rows_last_whatever_the_row_order():
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=int(d)) for d in np.random.default_rng(1).permutation(100)]
    frame = pl.DataFrame({"evaluation_date": days, "x": range(100)})
    train, valid, test = splits.split_positions(frame, (0.6, 0.2, 0.2), seed=0)
    dates = frame["evaluation_date"]
    assert (len(train), len(valid), len(test)) == (60, 20, 20)
    assert dates[train].max() < dates[valid].min() and dates[valid].max() < dates[test].min()
    assert splits.time_column(frame.with_columns(pl.col("evaluation_date").cast(pl.String))) == "evaluation_date"
    assert splits.time_column(frame.drop("evaluation_date")) is None
