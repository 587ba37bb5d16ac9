"""Exact IsolationForest scores in one pass, without scikit-learn's joblib loop over the trees.

scikit-learn scores a forest one tree at a time through joblib, which costs about a millisecond per
ten trees whatever the number of rows: most of a served request. Here every tree is laid out once,
at model load, as a complete binary tree of the forest's depth (a leaf above the last level is
padded with nodes that always go left, down to copies of its value), level by level: the nodes of
level ``l`` of all trees form one array in which tree ``t``'s node at position ``p`` sits at ``t *
2**l + p``, so a node's children at the next level are ``2 * i`` and ``2 * i + 1``. All (tree, row)
pairs then walk together, one level per handful of numpy calls, with no child table to look up;
the level arrays are small (100 trees of depth 8: 25,500 nodes) and stay in cache.

The walk mirrors ``Tree.apply`` (a float32 feature against the float64 threshold, NaN following
``missing_go_to_left``), and the leaf values and score formula are scikit-learn's own
(``IsolationForest._compute_score_samples``, 1.9), summed over the trees in the same order, so the
scores are the same floats. A forest of another shape (not fitted, a pipeline whose last step is
not an IsolationForest, or trees so deep that the complete layout would exceed ``MAX_LEAVES``)
gets ``None`` from the builders, and callers keep scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_LEAVES = 1 << 21  # trees x 2**depth; deeper forests (max_samples of many thousands) keep scikit-learn
CHUNK_PAIRS = 1 << 15  # (tree, row) pairs walked at once: each working array 256 kB, all of them within L2
# Indices are in range by construction: ``take(mode="wrap")`` skips the bounds check (about 13% of the walk).


@dataclass(frozen=True)
class StackedForest:
    """All trees of a fitted IsolationForest as complete binary trees, stored level by level.

    Level ``l`` arrays hold ``n_trees * 2**l`` nodes; padding nodes split on column 0 at ``+inf``
    with NaN going left, so every row goes left through them whatever its value.
    """

    feature: tuple[np.ndarray, ...]  # per level: column of the forest's input each node splits on
    threshold: tuple[np.ndarray, ...]  # per level: float64, go left when value <= threshold
    missing_right: tuple[np.ndarray | None, ...]  # per level: where a NaN goes right (None: nowhere)
    leaf_depth: np.ndarray  # (n_trees * 2**depth,) the path length a row ending at that leaf adds
    n_trees: int
    depth: int
    n_features: int
    denominator: np.ndarray  # n_trees * average path length of max_samples, shape (1,)
    offset: float  # the forest's ``offset_``: predict flags score_samples - offset < 0

    def score_samples(self, x: Any) -> np.ndarray:
        """``IsolationForest.score_samples`` (lower is more abnormal) of a dense 2-D array."""
        # the dtype scikit-learn's validation gives the trees; row-major, so each chunk of rows is
        # one contiguous block (a column-major request frame would be copied once per chunk)
        values = np.ascontiguousarray(x, dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise ValueError(f"X has {values.shape[-1]} features, but the forest expects {self.n_features}")
        depths = np.concatenate([self._depths(chunk) for chunk in self._chunks(values)])
        scores = 2 ** (
            -np.divide(depths, self.denominator, out=np.ones_like(depths), where=self.denominator != 0)
        )
        return -scores

    def _depths(self, values: np.ndarray) -> np.ndarray:
        """Each row's path length summed over the trees.

        Summed tree after tree, as scikit-learn's ``depths +=`` does. Over the first axis of
        several rows a reduce adds whole rows in that order; a single row's column is contiguous,
        and a reduce over it may add pairwise (another last bit), so it is accumulated instead."""
        per_tree = self.leaf_depth.take(self._walk(values), mode="wrap")
        if per_tree.shape[1] > 1:
            return np.add.reduce(per_tree, axis=0)
        return np.add.accumulate(per_tree[:, 0])[-1:]

    def _chunks(self, values: np.ndarray) -> list[np.ndarray]:
        """The rows in chunks of at most CHUNK_PAIRS (tree, row) pairs, each walked while its
        leaves are still in cache; one chunk (the array itself) for a usual request."""
        step = max(1, CHUNK_PAIRS // self.n_trees)
        return [values[start : start + step] for start in range(0, max(len(values), 1), step)]

    def leaves(self, values: np.ndarray) -> np.ndarray:
        """(n_trees, n_rows) index into ``leaf_depth`` of the leaf each row reaches in each tree."""
        return np.concatenate([self._walk(chunk) for chunk in self._chunks(values)], axis=1)

    def _walk(self, values: np.ndarray) -> np.ndarray:
        n_rows = values.shape[0]
        if self.depth == 0:  # every tree is one leaf
            return np.repeat(np.arange(self.n_trees, dtype=np.intp)[:, None], n_rows, axis=1)
        flat = values.astype(np.float64).ravel()  # exact: float32 -> float64, as Tree.apply compares
        nan_rows = bool(np.isnan(flat).any())
        row_start = np.arange(0, n_rows * self.n_features, self.n_features, dtype=np.intp)
        shape = (self.n_trees, n_rows)
        index = np.empty(shape, dtype=np.intp)  # flat position of the value each pair compares
        value = np.empty(shape, dtype=np.float64)
        limit = np.empty(shape, dtype=np.float64)
        right = np.empty(shape, dtype=bool)
        # Level 0: pair (t, r) is at tree t's root, node t.
        np.add(self.feature[0][:, None], row_start, out=index)
        flat.take(index, out=value, mode="wrap")
        np.greater(value, self.threshold[0][:, None], out=right)
        if nan_rows and self.missing_right[0] is not None:
            right |= np.isnan(value) & self.missing_right[0][:, None]
        node = np.empty(shape, dtype=np.intp)
        node[:] = np.arange(0, 2 * self.n_trees, 2, dtype=np.intp)[:, None]
        np.add(node, right, out=node, casting="unsafe")
        for level in range(1, self.depth):
            self.feature[level].take(node, out=index, mode="wrap")
            index += row_start
            flat.take(index, out=value, mode="wrap")
            self.threshold[level].take(node, out=limit, mode="wrap")
            np.greater(value, limit, out=right)
            missing_right = self.missing_right[level]
            if nan_rows and missing_right is not None:
                right |= np.isnan(value) & missing_right.take(node, mode="wrap")
            node += node
            np.add(node, right, out=node, casting="unsafe")
        return node

    def is_outlier(self, score_samples: np.ndarray) -> np.ndarray:
        """``predict(X) == -1`` from the scores already computed: ``decision_function < 0``."""
        return (score_samples - self.offset) < 0


def stack_forest(forest: Any) -> StackedForest | None:
    """The stacked form of a fitted ``sklearn.ensemble.IsolationForest``, or ``None`` when it is
    not one of the shape this module reproduces (then keep calling scikit-learn)."""
    from sklearn.ensemble import IsolationForest
    from sklearn.ensemble._iforest import _average_path_length

    if type(forest) is not IsolationForest:
        return None
    try:
        estimators = list(forest.estimators_)
        features = list(forest.estimators_features_)
        path_lengths = list(forest._decision_path_lengths)
        average_lengths = list(forest._average_path_length_per_tree)
        n_features = int(forest.n_features_in_)
        subsample = forest._max_features != n_features
        max_samples = forest._max_samples
        offset = float(forest.offset_)
    except AttributeError:
        return None
    n_trees = len(estimators)
    if not n_trees or len({n_trees, len(features), len(path_lengths), len(average_lengths)}) != 1:
        return None
    depth = max(int(tree.tree_.max_depth) for tree in estimators)
    if n_trees << depth > MAX_LEAVES:
        return None

    feature = [np.zeros(n_trees << level, dtype=np.intp) for level in range(depth)]
    threshold = [np.full(n_trees << level, np.inf) for level in range(depth)]
    missing_right = [np.zeros(n_trees << level, dtype=bool) for level in range(depth)]
    leaf_depth = np.zeros(n_trees << depth, dtype=np.float64)
    for t, (tree, columns, path_length, average_length) in enumerate(zip(estimators, features, path_lengths, average_lengths)):
        nodes = tree.tree_
        left, right = nodes.children_left, nodes.children_right
        columns = np.asarray(columns, dtype=np.intp)
        # The same expression scikit-learn applies to each row's leaf, here once per node.
        reached = np.asarray(path_length, dtype=np.float64) + np.asarray(average_length, dtype=np.float64) - 1.0
        ids, position = np.zeros(1, dtype=np.intp), np.zeros(1, dtype=np.intp)
        for level in range(depth + 1):
            leaf = left[ids] == -1
            span = 1 << (depth - level)
            start = (t << depth) + position[leaf] * span  # the leaf's copies fill its padded subtree
            leaf_depth[(start[:, None] + np.arange(span)).ravel()] = np.repeat(reached[ids[leaf]], span)
            ids, position = ids[~leaf], position[~leaf]
            if not len(ids):
                break
            at = (t << level) + position
            split_on = nodes.feature[ids].astype(np.intp)
            feature[level][at] = columns[split_on] if subsample else split_on
            threshold[level][at] = nodes.threshold[ids]
            missing_right[level][at] = ~np.asarray(nodes.missing_go_to_left[ids], dtype=bool)
            ids = np.stack([left[ids], right[ids]], axis=1).ravel()
            position = np.stack([2 * position, 2 * position + 1], axis=1).ravel()
    return StackedForest(
        feature=tuple(feature),
        threshold=tuple(threshold),
        missing_right=tuple(m if m.any() else None for m in missing_right),
        leaf_depth=leaf_depth,
        n_trees=n_trees,
        depth=depth,
        n_features=n_features,
        denominator=n_trees * _average_path_length([max_samples]),
        offset=offset,
    )


@dataclass(frozen=True)
class TabularPreprocess:
    """The anomaly trainer's ColumnTransformer, applied without scikit-learn's per-call checks.

    ``ColumnTransformer.transform`` spends about 2 ms validating and splitting even one row. For
    the exact shape models/anomaly.py builds (median SimpleImputer then StandardScaler on numbers,
    OrdinalEncoder with -1 for unknown and missing on strings, the rest dropped) the fitted
    statistics are applied with the same float64 operations, in the same column order.
    """

    numeric: tuple[str, ...]
    fill: np.ndarray  # SimpleImputer.statistics_
    mean: np.ndarray | None  # StandardScaler.mean_ (None: with_mean=False)
    scale: np.ndarray | None  # StandardScaler.scale_ (None: with_std=False)
    categorical: tuple[str, ...]
    codes: tuple[dict[str, float], ...]  # category -> OrdinalEncoder code, per column

    def transform(self, frame: Any) -> np.ndarray:
        parts = []
        if self.numeric:
            # a frame of exactly the numeric columns (the server's request frame) is read whole:
            # selecting the same columns by name costs more than imputing and scaling them
            whole = not self.categorical and frame.columns.tolist() == list(self.numeric)
            x = (frame if whole else frame[list(self.numeric)]).to_numpy(dtype=np.float64, copy=True)
            missing = np.isnan(x)
            if missing.any():
                x[missing] = np.broadcast_to(self.fill, x.shape)[missing]
            if self.mean is not None:
                x -= self.mean
            if self.scale is not None:
                x /= self.scale
            parts.append(x)
        for name, codes in zip(self.categorical, self.codes):
            parts.append(np.array([codes.get(v, -1.0) for v in frame[name].tolist()], dtype=np.float64)[:, None])
        return np.hstack(parts) if len(parts) > 1 else parts[0]


def tabular_preprocess(preprocess: Any) -> TabularPreprocess | None:
    """The fast form of a fitted ``Pipeline([("preprocess", ColumnTransformer(...))])`` of the
    anomaly trainer's exact shape, else ``None`` (keep calling its ``transform``)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder, StandardScaler

    if isinstance(preprocess, Pipeline) and len(preprocess.steps) == 1:
        preprocess = preprocess.steps[0][1]
    if type(preprocess) is not ColumnTransformer or not hasattr(preprocess, "transformers_"):
        return None
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    fill = mean = scale = None
    codes: list[dict[str, float]] = []
    for name, step, columns in preprocess.transformers_:
        if name == "remainder":
            if step != "drop":
                return None
            continue
        columns = tuple(columns)
        if not columns:  # skipped by ColumnTransformer.transform
            continue
        if name == "numeric" and type(step) is Pipeline and [type(s) for _, s in step.steps] == [SimpleImputer, StandardScaler]:
            imputer, scaler = step.steps[0][1], step.steps[1][1]
            statistics = np.asarray(imputer.statistics_, dtype=np.float64)
            if (
                not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values))
                or imputer.add_indicator
                or np.isnan(statistics).any()  # such a column is dropped by the imputer
                or numeric
                or categorical  # the output puts numbers first
            ):
                return None
            numeric, fill = columns, statistics
            mean = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else None
            scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else None
        elif name == "categorical" and type(step) is OrdinalEncoder:
            if (
                step.handle_unknown != "use_encoded_value"
                or step.unknown_value != -1
                or step.encoded_missing_value != -1
                or step.dtype is not np.float64
                or getattr(step, "_infrequent_enabled", False)
                or categorical
            ):
                return None
            categories = list(step.categories_)
            if not all(isinstance(v, str) for values in categories for v in values):
                return None
            categorical = columns
            codes = [{v: float(i) for i, v in enumerate(values)} for values in categories]
        else:
            return None
    if not (numeric or categorical):
        return None
    return TabularPreprocess(numeric, fill, mean, scale, categorical, tuple(codes))


@dataclass(frozen=True)
class PipelineScorer:
    """A fitted ``Pipeline(..., IsolationForest)``: its preprocessing as fitted, then the stacked
    forest."""

    preprocess: Any  # an object with .transform: the pipeline's steps, or their TabularPreprocess
    forest: StackedForest

    def score_samples(self, frame: Any) -> np.ndarray:
        """``pipeline.score_samples(frame)``."""
        x = self.preprocess.transform(frame) if self.preprocess is not None else frame
        if hasattr(x, "toarray"):  # a sparse matrix: the same values, densified
            x = x.toarray()
        return self.forest.score_samples(x)

    def is_outlier(self, score_samples: np.ndarray) -> np.ndarray:
        return self.forest.is_outlier(score_samples)


def pipeline_scorer(pipeline: Any) -> PipelineScorer | None:
    """The fast scorer of a fitted sklearn Pipeline ending in an IsolationForest, else ``None``."""
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline) or not pipeline.steps:
        return None
    forest = stack_forest(pipeline.steps[-1][1])
    if forest is None:
        return None
    preprocess = pipeline[:-1] if len(pipeline.steps) > 1 else None
    if preprocess is not None:
        preprocess = tabular_preprocess(preprocess) or preprocess
    return PipelineScorer(preprocess, forest)


def takes_frame_as_is(scorer: Any, frame: Any, spec: Any) -> bool:
    """Whether ``scorer`` can read ``frame`` without ``tabular.model_frame`` (about 0.25 ms per
    column): a fast scorer of numbers only, every feature present as a plain numpy int or float
    column, which it converts to float64 exactly as ``model_frame`` would."""
    if not isinstance(scorer, PipelineScorer) or not isinstance(scorer.preprocess, TabularPreprocess):
        return False
    if scorer.preprocess.categorical or spec.categorical or not hasattr(frame, "dtypes"):
        return False
    dtypes = dict(zip(frame.columns, _dtypes(frame)))  # one lookup per column, no Series built
    if not all(name in dtypes for name in spec.columns):
        return False
    return all(
        isinstance(dtypes[name], np.dtype) and dtypes[name].kind in "fiu" for name in scorer.preprocess.numeric
    )


def _dtypes(frame: Any) -> list:
    """The column dtypes in order, from pandas' block manager when it has one (``frame.dtypes``
    builds a Series, which costs more than this whole check)."""
    try:
        return list(frame._mgr.get_dtypes())
    except AttributeError:  # another pandas layout
        return list(frame.dtypes)
