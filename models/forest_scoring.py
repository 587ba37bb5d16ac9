"""Exact IsolationForest scores without scikit-learn's per-tree Python loop.

scikit-learn scores a forest one tree at a time through joblib, which costs about a millisecond per
ten trees whatever the number of rows: most of a served request. Here every tree's nodes are stacked
once, at model load, into flat arrays, and all rows walk all trees together, one tree level per
numpy step. Each step mirrors ``Tree.apply`` (a float32 feature against the float64 threshold, NaN
following ``missing_go_to_left``) and the leaf values and score formula are scikit-learn's own
(``IsolationForest._compute_score_samples``, 1.9), summed over the trees in the same order, so the
scores are the same floats. A forest of another shape (not fitted, sparse input, a pipeline whose
last step is not an IsolationForest) gets ``None`` from the builders, and callers keep scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


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

    def score_samples(self, x: Any) -> np.ndarray:
        """``IsolationForest.score_samples`` (lower is more abnormal) of a dense 2-D array."""
        values = np.asarray(x, dtype=np.float32)  # the dtype scikit-learn's validation gives the trees
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise ValueError(f"X has {values.shape[-1]} features, but the forest expects {self.n_features}")
        n_rows = values.shape[0]
        flat = values.astype(np.float64).ravel()  # exact: float32 -> float64, as Tree.apply compares
        nan_rows = np.isnan(flat).any()
        row_start = (np.arange(n_rows, dtype=np.intp) * self.n_features)[None, :]
        node = np.repeat(self.roots[:, None], n_rows, axis=1)  # (n_trees, n_rows)
        for _ in range(self.depth):
            value = flat.take(row_start + self.feature.take(node))
            go_right = value > self.threshold.take(node)
            if nan_rows:
                missing = np.isnan(value)
                go_right = np.where(missing, ~self.missing_left.take(node), go_right)
            node = self.children.take(2 * node + go_right)
        per_tree = self.leaf_depth.take(node)
        # Summed tree after tree, as scikit-learn's ``depths +=`` does (a reduce over the first axis
        # adds whole rows in order; no pairwise reordering).
        depths = np.add.reduce(per_tree, axis=0) if per_tree.shape[0] else np.zeros(n_rows)
        scores = 2 ** (
            -np.divide(depths, self.denominator, out=np.ones_like(depths), where=self.denominator != 0)
        )
        return -scores

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
    )


@dataclass(frozen=True)
class PipelineScorer:
    """A fitted ``Pipeline(..., IsolationForest)``: its preprocessing steps as fitted, then the
    stacked forest."""

    preprocess: Any  # the pipeline without its last step (may be an empty-step passthrough)
    forest: StackedForest

    def score_samples(self, frame: Any) -> np.ndarray:
        """``pipeline.score_samples(frame)``; sparse preprocessing output is refused (TypeError)."""
        x = self.preprocess.transform(frame) if self.preprocess is not None else frame
        if hasattr(x, "toarray"):
            raise TypeError("sparse input: use the pipeline itself")
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
    return PipelineScorer(preprocess, forest)
