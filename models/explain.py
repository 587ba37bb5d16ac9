"""Exact SHAP values of a CatBoost model at serving speed: CatBoost's precalculation, kept.

Why: ``get_feature_importance(type="ShapValues")`` rebuilds, on every call, a table of each
tree's SHAP values per leaf (its "precalculation"), then looks every row up in it. On the
trainers' models that rebuild is most of the cost (hundreds of milliseconds per call, whether one
row is asked or a thousand), and CatBoost offers no way to keep it between calls. For an
oblivious tree the path-dependent SHAP values of a row depend only on the leaf the row reaches, so
:class:`LeafShap` builds the same table once, when the model loads, and a call is then CatBoost's
own ``calc_leaf_indexes`` plus one sparse sum over the trees. The values are CatBoost's exact
("Regular") SHAP values; the tests compare them with CatBoost's on held-out rows.

The table is built from the model's JSON export (leaf values, leaf weights as node covers, and
the feature of each level), with the Shapley sum taken over the features each tree uses (at most
its depth; a feature used on several levels is one player). Models this does not cover (splits on
categorical or text features, depth above :data:`MAX_DEPTH`) are explained by CatBoost itself,
through :func:`explainer`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models.oblivious_trees import ObliviousTrees, compile_trees, model_json

MAX_DEPTH = 8  # the table holds 2**depth rows per tree; deeper trees go to CatBoost itself
_CHUNK = 128  # trees built together (bounds the temporary arrays to a few tens of MB at depth 6)


class LeafShap:
    """Per-leaf SHAP table of a CatBoost model whose splits are all on numeric features."""

    def __init__(self, model: Any, n_features: int, structure: dict[str, Any] | None = None,
                 split_table: ObliviousTrees | None = None) -> None:
        self.model = model
        self.n_features = n_features
        self.trees = split_table  # leaf indexes of a few rows without CatBoost's per-call cost
        structure = structure if structure is not None else model_json(model)
        trees = structure["oblivious_trees"]
        scale = float(structure.get("scale_and_bias", [1.0, [0.0]])[0])
        self.n_trees = len(trees)
        self.offsets = np.zeros(self.n_trees, dtype=np.int64)
        by_depth: dict[int, list[int]] = {}
        for t, tree in enumerate(trees):
            by_depth.setdefault(len(tree.get("splits") or ()), []).append(t)
        sizes = [2 ** len(tree.get("splits") or ()) for tree in trees]
        self.offsets[1:] = np.cumsum(sizes)[:-1]
        table = np.zeros((int(sum(sizes)), n_features), dtype=np.float64)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # small matrix products: threads only contend on a shared machine
            self._fill(table, trees, by_depth, sizes, scale, n_features)
        self.table = table

    def _fill(self, table: np.ndarray, trees: list, by_depth: dict[int, list[int]], sizes: list[int], scale: float, n_features: int) -> None:
        for depth, members in by_depth.items():
            for start in range(0, len(members), _CHUNK):
                chunk = members[start : start + _CHUNK]
                values = np.array([trees[t]["leaf_values"] for t in chunk], dtype=np.float64) * scale
                weights = np.array([trees[t]["leaf_weights"] for t in chunk], dtype=np.float64)
                features = np.array(
                    [[s["float_feature_index"] for s in trees[t]["splits"]] for t in chunk], dtype=np.int64
                ).reshape(len(chunk), depth)
                shap = _tree_tables(values, weights, features, n_features)  # (trees, leaves, features)
                for i, t in enumerate(chunk):
                    table[self.offsets[t] : self.offsets[t] + sizes[t]] = shap[i]

    def __call__(self, x: Any) -> np.ndarray:
        """SHAP values (rows x features, without the expected value) of the rows of ``x``."""
        from scipy.sparse import csr_matrix

        if self.trees is not None and self.trees.takes(x):
            leaves = self.trees.leaf_indexes(x)
        else:
            leaves = np.asarray(self.model.calc_leaf_indexes(x, thread_count=1), dtype=np.int64)
        rows = leaves.shape[0]
        if rows == 1:
            return self.table[leaves[0] + self.offsets].sum(axis=0, keepdims=True)
        picks = csr_matrix(
            (np.ones(leaves.size), (leaves + self.offsets).ravel(), np.arange(0, leaves.size + 1, self.n_trees)),
            shape=(rows, self.table.shape[0]),
        )
        return np.asarray(picks @ self.table)


def covered(model: Any, structure: dict[str, Any] | None = None) -> bool:
    """Whether :class:`LeafShap` explains ``model`` exactly: oblivious trees, numeric splits only."""
    try:
        structure = structure if structure is not None else model_json(model)
    except Exception:  # e.g. a model CatBoost cannot export as JSON (categorical statistics)
        return False
    trees = structure.get("oblivious_trees")
    if not trees or structure.get("features_info", {}).get("categorical_features"):
        return False
    return all(
        len(tree.get("splits") or ()) <= MAX_DEPTH
        and all(s.get("split_type", "FloatFeature") == "FloatFeature" for s in tree.get("splits") or ())
        and np.ndim(tree["leaf_values"]) == 1
        and len(tree["leaf_values"]) == 2 ** len(tree.get("splits") or ())
        for tree in trees
    )


class CatBoostShap:
    """CatBoost's own exact SHAP, per call: the fallback for models :class:`LeafShap` does not cover."""

    def __init__(self, model: Any, categorical_positions: list[int]) -> None:
        self.model = model
        self.categorical = categorical_positions

    def __call__(self, x: Any) -> np.ndarray:
        from catboost import Pool

        pool = Pool(x, cat_features=self.categorical)
        return self.model.get_feature_importance(pool, type="ShapValues", thread_count=1)[:, :-1]


def explainer(model: Any, columns: list[str], categorical_positions: list[int], structure: dict[str, Any] | None = None,
              trees: ObliviousTrees | None = None) -> LeafShap | CatBoostShap:
    """The fastest exact SHAP explainer for ``model``: the kept table when it applies.
    ``structure`` is the model's JSON export when the caller has it already (:func:`model_json`;
    exporting a 1,000-tree model takes 0.2 s), ``trees`` its split table when built."""
    if not categorical_positions:
        try:
            structure = structure if structure is not None else model_json(model)
        except Exception:  # e.g. a model CatBoost cannot export as JSON (categorical statistics)
            structure = None
        if structure is not None and covered(model, structure):
            return LeafShap(model, len(columns), structure, trees)
    return CatBoostShap(model, categorical_positions)


def _shapley_coefficients(players: int) -> np.ndarray:
    """``C[i, S]`` with phi_i = sum_S C[i, S] v(S) over all subsets S (bitmasks) of ``players``."""
    subsets = np.arange(2**players)
    sizes = np.array([bin(s).count("1") for s in subsets])
    factorial = [math.factorial(k) for k in range(players + 1)]
    coefficients = np.zeros((players, subsets.size))
    for i in range(players):
        has = (subsets >> i) & 1 == 1
        # S containing i: weight of S minus i, positive; S without i: its own weight, negative
        without = sizes - has
        weight = np.array([factorial[k] * factorial[players - k - 1] / factorial[players] for k in without])
        coefficients[i] = np.where(has, weight, -weight)
    return coefficients


def _tree_tables(values: np.ndarray, weights: np.ndarray, features: np.ndarray, n_features: int) -> np.ndarray:
    """Path-dependent SHAP values per leaf for trees of one depth: (trees, leaves, n_features).

    Leaf index bit ``d`` is the outcome of the tree's split ``d``; the root is split ``D-1`` (the
    last one listed), as CatBoost evaluates them. ``v(m, x)``, the expected output given the
    outcomes of the levels in bitmask ``m`` as for a row in leaf ``x``, averages the other levels
    by cover, node by node along the path.
    """
    trees, leaves = values.shape
    depth = features.shape[1]
    if depth == 0:
        return np.zeros((trees, 1, n_features))
    leaf_ids = np.arange(leaves)
    bits = (leaf_ids[:, None] >> np.arange(depth)[None, :]) & 1  # (leaves, depth)
    # cover of the node at each level on a leaf's path, root = last split
    order = list(range(depth - 1, -1, -1))
    ratios = np.ones((trees, leaves, depth))
    prefix_mask = 0
    cover_above = np.broadcast_to(weights.sum(axis=1, keepdims=True), (trees, leaves))
    for level in order:
        prefix_mask |= 1 << level
        same = ((leaf_ids[:, None] ^ leaf_ids[None, :]) & prefix_mask) == 0  # (leaves, leaves)
        cover_here = weights @ same.T.astype(np.float64)  # (trees, leaves): cover of the child on the path
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[:, :, level] = np.where(cover_above > 0, cover_here / cover_above, 0.0)
        cover_above = cover_here
    masks = np.arange(2**depth)
    free = ((masks[:, None] >> np.arange(depth)[None, :]) & 1) == 0  # (masks, depth): level not fixed
    # P[t, m, l] = product over free levels of the cover ratio on leaf l's path
    # as a sum of logs (one matrix product); a zero ratio on a free level zeroes the path
    zero = (ratios <= 0).astype(np.float64) @ free.T.astype(np.float64)  # (trees, leaves, masks)
    with np.errstate(divide="ignore"):
        logs = np.where(ratios > 0, np.log(np.where(ratios > 0, ratios, 1.0)), 0.0)
    path = np.where(zero > 0, 0.0, np.exp(logs @ free.T.astype(np.float64))).transpose(0, 2, 1)
    weighted = np.ascontiguousarray((values[:, None, :] * path).transpose(1, 0, 2))  # (masks, trees, leaves)
    agree = (((leaf_ids[None, :, None] ^ leaf_ids[None, None, :]) & masks[:, None, None]) == 0).astype(np.float64)
    expected = np.stack([weighted[m] @ agree[m] for m in masks], axis=1)  # (trees, masks, leaves x)
    # players: the distinct features of each tree, in slots; a slot's levels form its bitmask
    slot_levels = np.zeros((trees, depth), dtype=np.int64)
    slot_feature = np.full((trees, depth), -1, dtype=np.int64)
    for t in range(trees):
        for slot, feature in enumerate(dict.fromkeys(features[t].tolist())):
            slot_feature[t, slot] = feature
            slot_levels[t, slot] = int(sum(1 << d for d in range(depth) if features[t, d] == feature))
    subsets = np.arange(2**depth)
    members = ((subsets[:, None] >> np.arange(depth)[None, :]) & 1).astype(bool)  # (subsets, slots)
    level_mask = np.bitwise_or.reduce(np.where(members[None, :, :], slot_levels[:, None, :], 0), axis=2)  # (trees, subsets)
    # phi[slot] = sum over slot subsets S of C[slot, S] * v(levels of S): gathered per tree as
    # coefficients on the level masks, then one batched product with v
    onehot = (level_mask[:, :, None] == masks[None, None, :]).astype(np.float64)  # (trees, subsets, masks)
    on_masks = np.matmul(_shapley_coefficients(depth), onehot)  # (trees, slots, masks)
    per_slot = np.matmul(on_masks, expected).transpose(0, 2, 1)  # (trees, leaves, slots)
    out = np.zeros((trees, leaves, n_features))
    for slot in range(depth):
        used = slot_feature[:, slot] >= 0
        if used.any():
            t_idx = np.nonzero(used)[0]
            np.add.at(out, (t_idx[:, None], leaf_ids[None, :], slot_feature[t_idx, slot][:, None]), per_slot[t_idx, :, slot])
    return out


def fast_paths(model: Any, columns: list[str], categorical_positions: list[int]) -> tuple[ObliviousTrees | None, LeafShap | CatBoostShap]:
    """What a served CatBoost model keeps from load: its split table for few-row predictions
    (``None`` when :func:`models.oblivious_trees.compile_trees` does not cover it) and its SHAP
    explainer, both from one JSON export of the model."""
    try:
        structure = model_json(model)
    except Exception:  # e.g. categorical statistics CatBoost cannot export as JSON
        return None, explainer(model, columns, categorical_positions)
    trees = None if categorical_positions else compile_trees(model, structure)
    return trees, explainer(model, columns, categorical_positions, structure, trees)
