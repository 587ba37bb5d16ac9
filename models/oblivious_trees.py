"""CatBoost's oblivious trees evaluated with a few numpy operations, for the few-row requests of serving.

Why: CatBoost's ``predict`` has a fixed cost of about 0.25 ms per call (measured on the risk
trainer's 115-tree model, one row, one thread: 0.25 ms, where ``calc_leaf_indexes`` on the same
row takes 0.05 ms). On a one-row request that is most of the server's time. An oblivious tree is
one (feature, border) test per level and ``2**depth`` leaf values; the leaf a row reaches is the
bits ``value > border`` of its levels. For a handful of rows those tests over every tree are a
few array operations on a table built once at model load, and the prediction is CatBoost's
``scale * sum(leaf values) + bias``.

Exactness: CatBoost compares features as 32-bit floats (its pools hold float32) against 32-bit
borders, so the table does too; a missing value (NaN) takes the side the feature's
``nan_value_treatment`` gives it. :func:`compile_trees` checks the table against CatBoost's own
``calc_leaf_indexes`` and raw prediction on probe rows placed on, just below and just above every
border, and NaN in every feature, and returns ``None`` (CatBoost itself is then used) when any
leaf differs or the model has splits this does not cover (categorical or text features,
multi-dimensional leaves). Larger batches stay with CatBoost, which vectorises over rows.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# rows x trees up to which the table beats CatBoost's predict, measured one thread: 1,011 trees
# (the win model's five folds summed) 1 row 0.04 ms against 0.06 ms, 4 rows 0.16 against 0.17;
# 115 trees (risk scoring) 16 rows 0.07 ms against 0.30 ms, 64 rows 0.15 against 0.37
SMALL_CELLS = 4096
MAX_DEPTH = 16
PROBED_BORDERS = 16


@dataclass(frozen=True)
class ObliviousTrees:
    """The splits of every tree as (trees x depth) arrays, padded to the deepest tree."""

    features: np.ndarray  # int64 (trees, depth): feature tested at each level (0 on padding)
    borders: np.ndarray  # float32 (trees, depth): border at each level (+inf on padding: never true)
    nan_bits: np.ndarray  # bool (trees, depth): the side a NaN takes at each level (False on padding)
    powers: np.ndarray  # int64 (depth,): 2**level, the weight of each level's bit in the leaf index
    offsets: np.ndarray  # int64 (trees,): where each tree's leaves start in ``leaf_values``
    leaf_values: np.ndarray  # float64 (leaves,)
    scale: float
    bias: float
    n_features: int  # the model's input columns

    @property
    def n_trees(self) -> int:
        return self.features.shape[0]

    def takes(self, x: Any) -> bool:
        """Whether ``x`` is a float block small enough for the table to beat CatBoost: the table's
        work grows with rows x trees, CatBoost's is mostly a fixed cost per call."""
        return isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[0] * self.n_trees <= SMALL_CELLS

    def leaf_indexes(self, x: np.ndarray) -> np.ndarray:
        """(rows, trees) leaf index of each row in each tree, as CatBoost's ``calc_leaf_indexes``."""
        values = np.asarray(x, dtype=np.float32)[:, self.features]  # (rows, trees, depth)
        bits = values > self.borders
        missing = np.isnan(values)
        if missing.any():
            bits = np.where(missing, self.nan_bits, bits)
        return bits @ self.powers

    def raw(self, x: np.ndarray, leaves: np.ndarray | None = None) -> np.ndarray:
        """CatBoost's ``RawFormulaVal`` prediction of each row of ``x``."""
        if leaves is None:
            leaves = self.leaf_indexes(x)
        return self.leaf_values[leaves + self.offsets].sum(axis=1) * self.scale + self.bias


def compile_trees(model: Any, structure: dict[str, Any] | None = None) -> ObliviousTrees | None:
    """The table of a CatBoost model with numeric splits only and one value per leaf, checked
    against CatBoost on probe rows; ``None`` when the model is not covered or the check fails.
    ``structure``: the model's :func:`model_json`, when the caller has it already."""
    try:
        structure = structure if structure is not None else model_json(model)
        trees = _trees(structure)
    except Exception:  # a model CatBoost cannot export as JSON, or a structure this does not read
        return None
    if trees is None:
        return None
    with np.errstate(over="ignore"):  # a step above float32's largest border is +inf, as wanted
        probes = _probe_rows(trees)
    try:
        expected_leaves = np.asarray(model.calc_leaf_indexes(probes, thread_count=1), dtype=np.int64)
        expected_raw = np.asarray(model.predict(probes, prediction_type="RawFormulaVal", thread_count=1), dtype=np.float64)
    except Exception:  # CatBoost refuses the probe (e.g. a feature count it does not expect)
        return None
    leaves = trees.leaf_indexes(probes)
    if leaves.shape != expected_leaves.shape or not np.array_equal(leaves, expected_leaves):
        return None
    if not np.allclose(trees.raw(probes, leaves), expected_raw, rtol=1e-12, atol=1e-12):
        return None
    return trees


def _trees(structure: dict[str, Any]) -> ObliviousTrees | None:
    trees = structure.get("oblivious_trees")
    info = structure.get("features_info", {})
    if not trees or info.get("categorical_features") or info.get("text_features") or info.get("embedding_features"):
        return None
    splits = [tree.get("splits") or [] for tree in trees]
    if any(s.get("split_type", "FloatFeature") != "FloatFeature" for levels in splits for s in levels):
        return None
    depth = max(len(levels) for levels in splits)
    if depth > MAX_DEPTH or any(np.ndim(t["leaf_values"]) != 1 or len(t["leaf_values"]) != 2 ** len(s) for t, s in zip(trees, splits)):
        return None
    floats = info.get("float_features", [])
    n_features = 1 + max([f.get("flat_feature_index", f.get("feature_index", 0)) for f in floats] or [0])
    nan_true = np.zeros(n_features, dtype=bool)
    for feature in floats:
        nan_true[feature.get("flat_feature_index", feature.get("feature_index", 0))] = feature.get("nan_value_treatment") == "AsTrue"
    features = np.zeros((len(trees), depth), dtype=np.int64)
    borders = np.full((len(trees), depth), np.inf, dtype=np.float32)
    nan_bits = np.zeros((len(trees), depth), dtype=bool)
    for t, levels in enumerate(splits):
        for level, split in enumerate(levels):
            features[t, level] = split["float_feature_index"]
            borders[t, level] = split["border"]
            nan_bits[t, level] = nan_true[split["float_feature_index"]]
    sizes = np.array([len(t["leaf_values"]) for t in trees], dtype=np.int64)
    offsets = np.zeros(len(trees), dtype=np.int64)
    offsets[1:] = np.cumsum(sizes)[:-1]
    scale, bias = structure.get("scale_and_bias", [1.0, [0.0]])
    bias = bias[0] if isinstance(bias, list) else bias
    if isinstance(bias, list):  # multi-dimensional bias: a model with several outputs
        return None
    return ObliviousTrees(
        features=features,
        borders=borders,
        nan_bits=nan_bits,
        powers=np.left_shift(1, np.arange(depth, dtype=np.int64)),
        offsets=offsets,
        leaf_values=np.concatenate([np.asarray(t["leaf_values"], dtype=np.float64) for t in trees]),
        scale=float(scale),
        bias=float(bias),
        n_features=n_features,
    )


def _probe_rows(trees: ObliviousTrees) -> np.ndarray:
    """Rows with each feature on, just below and just above each of its borders (the other
    features drawn from theirs), and rows with one feature missing each."""
    n_features = trees.n_features
    rng = np.random.default_rng(0)
    by_feature = [np.unique(trees.borders[trees.features == j]) for j in range(n_features)]
    # up to PROBED_BORDERS of each feature's borders: the comparison is the same at every border,
    # and all of them (hundreds per feature) would make the check cost seconds on a 1,000-tree model
    by_feature = [b[np.isfinite(b)] for b in by_feature]
    by_feature = [b if len(b) <= PROBED_BORDERS else np.sort(rng.choice(b, PROBED_BORDERS, replace=False)) for b in by_feature]
    # the other features on either side of their own borders
    pool = [np.concatenate([b, np.nextafter(b, np.float32(np.inf))]) if len(b) else np.zeros(1, dtype=np.float32) for b in by_feature]
    columns = []
    for j, borders in enumerate(by_feature):
        if not len(borders):
            continue
        below = np.nextafter(borders, np.float32(-np.inf))
        above = np.nextafter(borders, np.float32(np.inf))
        # and doubles that round to the border as float32, as CatBoost's pools round them
        near = borders.astype(np.float64) + (above.astype(np.float64) - borders.astype(np.float64)) / 4
        values = np.concatenate([borders.astype(np.float64), below.astype(np.float64), above.astype(np.float64), near])
        rows = np.column_stack([rng.choice(p, len(values)).astype(np.float64) for p in pool])
        rows[:, j] = values
        columns.append(rows)
    missing = np.column_stack([rng.choice(p, n_features).astype(np.float64) for p in pool])
    missing[np.arange(n_features), np.arange(n_features)] = np.nan
    columns.append(missing)
    return np.ascontiguousarray(np.concatenate(columns))


def model_json(model: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "model.json")
        model.save_model(str(path), format="json")
        return json.loads(path.read_text())
