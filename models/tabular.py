"""Feature frames for the tabular models: the same casting at training and at serving time.

A model trained on a polars frame is later fed pandas frames from JSON over HTTP, where an
integer may arrive as 5 or 5.0 and a missing string as None. Casting in one place, used on both
sides, keeps the two from drifting apart.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

MISSING_CATEGORY = "__missing__"


@dataclass(frozen=True)
class FeatureSpec:
    """Feature columns in model order, and which of them are categorical (strings)."""

    columns: tuple[str, ...]
    categorical: tuple[str, ...] = ()

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in self.categorical)

    @property
    def categorical_positions(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c in self.categorical]

    def to_dict(self) -> dict[str, list[str]]:
        return {"columns": list(self.columns), "categorical": list(self.categorical)}


def feature_spec(df: pl.DataFrame, features: Sequence[str]) -> FeatureSpec:
    """String, categorical and enum columns become categorical features; the rest numeric."""
    categorical = tuple(
        name for name in features if df.schema[name] in (pl.String, pl.Categorical) or isinstance(df.schema[name], pl.Enum)
    )
    return FeatureSpec(tuple(features), categorical)


def model_frame(frame: pd.DataFrame | pl.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The feature columns in model order: numbers as float64 (NaN for missing), categories as str."""
    if isinstance(frame, pl.DataFrame):
        frame = frame.select(spec.columns).to_pandas()
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise KeyError(f"input is missing feature columns {missing}")
    columns: dict[str, pd.Series] = {}
    for name in spec.columns:
        values = frame[name].reset_index(drop=True)
        if name in spec.categorical:
            columns[name] = values.astype(object).where(values.notna(), MISSING_CATEGORY).astype(str)
        else:
            try:
                columns[name] = pd.to_numeric(values, errors="raise").astype("float64")
            except (TypeError, ValueError) as error:
                raise ValueError(f"feature column {name!r}: expected numbers (or null), {error}") from None
    return pd.DataFrame(columns, index=range(len(frame)))


def column_dtypes(frame: Any) -> list:
    """A frame's column dtypes in order, from pandas' block manager when it has one:
    ``frame.dtypes`` builds a Series, which costs more than a one-row prediction."""
    try:
        return list(frame._mgr.get_dtypes())
    except AttributeError:  # another pandas layout
        return list(frame.dtypes)


def float_block(frame: Any, spec: FeatureSpec) -> np.ndarray | None:
    """The features as one float64 array in model order, the values :func:`model_frame` would
    give, or ``None`` when that takes :func:`model_frame` itself: categorical features, a feature
    missing, or a feature column that is not plain numpy integers or floats.

    The serving path's input: the endpoint server's frames are one float block already, so this
    is a view or one copy, where :func:`model_frame` rebuilds every column (about 0.25 ms each)."""
    if spec.categorical or not isinstance(frame, pd.DataFrame):
        return None
    columns = list(spec.columns)
    if list(frame.columns) != columns:
        if frame.columns.has_duplicates or not all(c in frame.columns for c in columns):
            return None
        frame = frame[columns]
    if not all(isinstance(d, np.dtype) and d.kind in "fiu" for d in column_dtypes(frame)):
        return None
    return frame.to_numpy(dtype=np.float64)


def score_column(name: str, values: np.ndarray) -> pd.DataFrame:
    """A one-column answer frame; a third of the time of ``pd.DataFrame({name: values})``, which
    builds a Series and an index first (a cost that shows on one-row requests)."""
    return pd.DataFrame(np.asarray(values).reshape(-1, 1), columns=_column_index(name), copy=False)


@functools.lru_cache(maxsize=64)
def _column_index(name: str) -> pd.Index:
    """One immutable column index per answer name, shared by every answer frame."""
    return pd.Index([name])


def pandas_input(df: pl.DataFrame, predictor: Any = None) -> pd.DataFrame:
    """A polars frame as a model's pandas input: categorical columns as plain strings, which is
    what MLflow's schema check and a JSON request both produce. With a pyfunc ``predictor``, only
    the columns its signature names (MLflow warns about every other one)."""
    schema = getattr(getattr(predictor, "metadata", None), "get_input_schema", lambda: None)()
    if schema is not None and schema.has_input_names():
        df = df.select([name for name in schema.input_names() if name in df.columns])
    casts = [
        pl.col(name).cast(pl.String)
        for name, dtype in df.schema.items()
        if dtype == pl.Categorical or isinstance(dtype, pl.Enum)
    ]
    return (df.with_columns(casts) if casts else df).to_pandas()


TOP_FACTORS = 3  # contributions returned per row
TOP_FACTORS_PARAM = "top_factors"  # predict parameter: false for the prediction alone


def factors_requested(params: dict[str, Any] | None) -> bool:
    """Whether a predict call asked for ``top_factors`` (the default) or passed
    ``{"top_factors": false}`` (a JSON false, or "false"/0 from a form or query string)."""
    if not params:
        return True
    value = params.get(TOP_FACTORS_PARAM, True)
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off")
    return bool(value)


def factors_param_schema() -> Any:
    """The model signature's params: ``top_factors`` (boolean, default true), so that MLflow's
    ``PyFuncModel.predict(..., params=...)`` passes the switch on instead of dropping it."""
    from mlflow.types.schema import ParamSchema, ParamSpec

    return ParamSchema([ParamSpec(TOP_FACTORS_PARAM, "boolean", True)])


def top_factors(contributions: np.ndarray, columns: Sequence[str], values: Any, k: int = TOP_FACTORS) -> list[list[dict[str, Any]]]:
    """Per row, the ``k`` largest contributions by size as ``{"feature", "value", "contribution"}``
    objects, largest first: the feature's name, the value the row had for it (as the model saw
    it: a number, a category string, or ``None`` when missing) and its signed contribution."""
    names = [str(c) for c in columns]
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
    picked = np.round(np.take_along_axis(contributions, order, axis=1), 6).tolist()
    if isinstance(values, pd.DataFrame):
        values = values[names].to_numpy()
    values = np.asarray(values)
    chosen = np.take_along_axis(values, order, axis=1)
    if chosen.dtype.kind == "f":  # plain floats straight from the array; NaN (missing) becomes None
        inputs = chosen.tolist()
        if np.isnan(chosen).any():
            inputs = [[None if v != v else v for v in row] for row in inputs]
    else:
        inputs = [[_plain(v) for v in row] for row in chosen.tolist()]
    return [
        [{"feature": names[j], "value": v, "contribution": c} for j, v, c in zip(idx, row_values, row)]
        for idx, row_values, row in zip(order.tolist(), inputs, picked)
    ]


def _plain(value: Any) -> Any:
    """A JSON-ready input value: NaN and the missing-category marker become ``None``."""
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, (np.floating, np.integer)):
        return _plain(value.item())
    return None if value == MISSING_CATEGORY else value
