"""Exact IsolationForest scores in one pass, without scikit-learn's joblib loop over the trees.

scikit-learn scores a forest one tree at a time through joblib, which costs about a millisecond per
ten trees whatever the number of rows: most of a served request. Here every tree's nodes are stacked
once, at model load, into flat arrays, and all rows walk all trees together, one tree level per
numpy step; from ``APPLY_FROM_ROWS`` rows, where that walk is slower, each tree's own compiled
``apply`` finds the leaves instead (a plain loop, no joblib). The walk mirrors ``Tree.apply`` (a
float32 feature against the float64 threshold, NaN following ``missing_go_to_left``), and the leaf
values and score formula are scikit-learn's own (``IsolationForest._compute_score_samples``, 1.9),
summed over the trees in the same order, so the scores are the same floats. A forest of another
shape (not fitted, a pipeline whose last step is not an IsolationForest) gets ``None`` from the
builders, and callers keep scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

APPLY_FROM_ROWS = 256  # from this many rows, each tree's compiled apply beats the numpy walk


@dataclass(frozen=True)
class StackedForest:
    """All trees of a fitted IsolationForest as flat node arrays (node ids are global).

    ``children[2 * node + go_right]`` is the next node; a leaf points to itself both ways, so every
    row can take ``depth`` steps whatever leaf it reaches first.
    """

    roots: np.ndarray  # (n_trees,) first node of each tree
    children: np.ndarray  # (2 * n_nodes,) left, right of each node
    feature: np.ndarray  # (n_nodes,) column of the forest's input each node splits on (0 at leaves)
    threshold: np.ndarray  # (n_nodes,) float64, go left when value <= threshold
    missing_left: np.ndarray  # (n_nodes,) where a NaN goes
    leaf_depth: np.ndarray  # (n_nodes,) the path length a row ending at this node adds
    depth: int  # the deepest tree's depth: steps needed for every row to reach a leaf
    n_features: int
    denominator: np.ndarray  # n_trees * average path length of max_samples, shape (1,)
    offset: float  # the forest's ``offset_``: predict flags score_samples - offset < 0
    trees: tuple[Any, ...]  # the fitted ExtraTreeRegressors, for ``leaves_by_tree``
    tree_columns: tuple[np.ndarray | None, ...]  # each tree's input columns (None: all, in order)

    def score_samples(self, x: Any) -> np.ndarray:
        """``IsolationForest.score_samples`` (lower is more abnormal) of a dense 2-D array."""
        values = np.asarray(x, dtype=np.float32)  # the dtype scikit-learn's validation gives the trees
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise ValueError(f"X has {values.shape[-1]} features, but the forest expects {self.n_features}")
        if values.shape[0] >= APPLY_FROM_ROWS:
            node = self.leaves_by_tree(values)
        else:
            node = self.leaves_by_walk(values)
        per_tree = self.leaf_depth.take(node)
        # Summed tree after tree, as scikit-learn's ``depths +=`` does (a reduce over the first axis
        # adds whole rows in order; no pairwise reordering).
        depths = np.add.reduce(per_tree, axis=0)
        scores = 2 ** (
            -np.divide(depths, self.denominator, out=np.ones_like(depths), where=self.denominator != 0)
        )
        return -scores

    def leaves_by_walk(self, values: np.ndarray) -> np.ndarray:
        """(n_trees, n_rows) global leaf ids: all trees and rows one level per numpy step."""
        n_rows = values.shape[0]
        flat = values.astype(np.float64).ravel()  # exact: float32 -> float64, as Tree.apply compares
        nan_rows = np.isnan(flat).any()
        row_start = (np.arange(n_rows, dtype=np.intp) * self.n_features)[None, :]
        node = np.repeat(self.roots[:, None], n_rows, axis=1)
        for _ in range(self.depth):
            value = flat.take(row_start + self.feature.take(node))
            go_right = value > self.threshold.take(node)
            if nan_rows:
                go_right = np.where(np.isnan(value), ~self.missing_left.take(node), go_right)
            node = self.children.take(2 * node + go_right)
        return node

    def leaves_by_tree(self, values: np.ndarray) -> np.ndarray:
        """The same leaf ids from each tree's own compiled ``apply``: per-tree call overhead, but
        faster than the numpy walk from a few hundred rows."""
        node = np.empty((len(self.trees), values.shape[0]), dtype=np.intp)
        for i, (tree, columns) in enumerate(zip(self.trees, self.tree_columns)):
            node[i] = tree.apply(values if columns is None else values[:, columns], check_input=False)
        node += self.roots[:, None]
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
    if not estimators or len({len(estimators), len(features), len(path_lengths), len(average_lengths)}) != 1:
        return None

    roots, children, feature, threshold, missing_left, leaf_depth = [], [], [], [], [], []
    base = 0
    for tree, columns, path_length, average_length in zip(estimators, features, path_lengths, average_lengths):
        t = tree.tree_
        n_nodes = t.node_count
        ids = np.arange(base, base + n_nodes, dtype=np.intp)
        leaf = t.children_left == -1
        left = np.where(leaf, ids, t.children_left + base)
        right = np.where(leaf, ids, t.children_right + base)
        columns = np.asarray(columns, dtype=np.intp)
        split_on = np.where(leaf, 0, t.feature).astype(np.intp)
        roots.append(base)
        children.append(np.stack([left, right], axis=1).ravel())
        feature.append(columns[split_on] if subsample else split_on)
        threshold.append(np.asarray(t.threshold, dtype=np.float64))
        missing_left.append(np.asarray(t.missing_go_to_left, dtype=bool))
        # The same expression scikit-learn applies to each row's leaf, here once per node.
        leaf_depth.append(np.asarray(path_length, dtype=np.float64) + np.asarray(average_length, dtype=np.float64) - 1.0)
        base += n_nodes
    return StackedForest(
        roots=np.asarray(roots, dtype=np.intp),
        children=np.concatenate(children).astype(np.intp),
        feature=np.concatenate(feature).astype(np.intp),
        threshold=np.concatenate(threshold),
        missing_left=np.concatenate(missing_left),
        leaf_depth=np.concatenate(leaf_depth),
        depth=max(int(tree.tree_.max_depth) for tree in estimators),
        n_features=n_features,
        denominator=len(estimators) * _average_path_length([max_samples]),
        offset=offset,
        trees=tuple(estimators),
        tree_columns=tuple(np.asarray(c, dtype=np.intp) if subsample else None for c in features),
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
            x = frame[list(self.numeric)].to_numpy(dtype=np.float64, copy=True)
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
    columns = frame.columns
    if not all(name in columns for name in spec.columns):
        return False
    dtypes = frame.dtypes
    return all(
        isinstance(dtypes[name], np.dtype) and dtypes[name].kind in "fiu" for name in scorer.preprocess.numeric
    )
