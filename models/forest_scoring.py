"""Exact IsolationForest scores in one compiled pass, without scikit-learn's joblib loop over the trees.

scikit-learn scores a forest one tree at a time through joblib, which costs about a millisecond per
ten trees whatever the number of rows: most of a served request. Here every tree is laid out once,
at model load, as a complete binary tree of the forest's depth (a leaf above the last level is
padded with nodes that always go left, down to copies of its value), level by level: the nodes of
level ``l`` of all trees sit one after the other, level after level, in one flat array per field,
tree ``t``'s node at position ``p`` of level ``l`` at ``n_trees * (2**l - 1) + t * 2**l + p``. A
node's children at the next level are then ``2 * i`` and ``2 * i + 1`` within that level, so a walk
needs no child table; the arrays are small (100 trees of depth 8: 25,500 nodes) and stay in cache.

The walk is compiled with numba (a numpy walk over all (tree, row) pairs took 3/4 of a served
1,000-row request). Its loop order is the fast one measured: tree after tree, level after level,
every row steps down branch-free (``node = 2 * node + (value > threshold)``); the rows are
independent chains the CPU overlaps, where a row-at-a-time walk with a branch per node mispredicts
and is as slow as numpy. Walking the rows in cache-sized blocks measured no faster, even at 100,000
rows, and ``parallel=True`` was slower (see :func:`_compiled_walk`); a batch of ``SPLIT_ROWS`` or more
is instead cut in two halves walked side by side by two threads (see :func:`_helper`), the walk
holding no GIL. Float32 thresholds, 32-bit node indexes, a tree-major layout or feature-major
values each measured within 10 % of this walk. numba compiles a function on its
first call (about 0.6 s): :func:`stack_forest` makes that call, so it is paid at model load, never
by a request, and nothing is cached on disk.

The walk mirrors ``Tree.apply`` (a float32 feature against the float64 threshold, NaN following
``missing_go_to_left``), and the leaf values and score formula are scikit-learn's own
(``IsolationForest._compute_score_samples``, 1.9), each row's path lengths summed tree after tree as
its ``depths +=`` does, so the scores are the same floats. A forest of another shape (not fitted, a
pipeline whose last step is not an IsolationForest, or trees so deep that the complete layout would
exceed ``MAX_LEAVES``) gets ``None`` from the builders, and callers keep scikit-learn.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from models import tabular

MAX_LEAVES = 1 << 21  # trees x 2**depth; deeper forests (max_samples of many thousands) keep scikit-learn
SPLIT_ROWS = 256  # from this many rows, score_samples walks half of them on a second core


@dataclass(frozen=True)
class StackedForest:
    """All trees of a fitted IsolationForest as complete binary trees, stored level by level.

    Level ``l`` holds ``n_trees * 2**l`` nodes, starting at ``n_trees * (2**l - 1)``; padding nodes
    split on column 0 at ``+inf`` with NaN going left, so every row goes left through them whatever
    its value.
    """

    feature: np.ndarray  # (n_nodes,) intp: column of the forest's input each node splits on
    threshold: np.ndarray  # (n_nodes,) float64: go left when value <= threshold
    missing_right: np.ndarray  # (n_nodes,) bool: where a NaN goes right
    sends_missing_right: bool  # missing_right.any(): otherwise NaN goes left everywhere, like a small value
    leaf_depth: np.ndarray  # (n_trees * 2**depth,) the path length a row ending at that leaf adds
    n_trees: int
    depth: int
    n_features: int
    denominator: np.ndarray  # n_trees * average path length of max_samples, shape (1,)
    offset: float  # the forest's ``offset_``: predict flags score_samples - offset < 0

    def score_samples(self, x: Any) -> np.ndarray:
        """``IsolationForest.score_samples`` (lower is more abnormal) of a dense 2-D array."""
        values = self._values(x)
        depths = np.empty(len(values), dtype=np.float64)
        no_leaves = np.empty((0, 0), dtype=np.intp)
        helper = _helper() if len(values) >= SPLIT_ROWS else None
        if helper is None:
            self._walk(values, depths, no_leaves)
        else:
            half = len(values) // 2
            second = helper.submit(self._walk, values[half:], depths[half:], no_leaves)
            self._walk(values[:half], depths[:half], no_leaves)
            second.result()
        scores = 2 ** (
            -np.divide(depths, self.denominator, out=np.ones_like(depths), where=self.denominator != 0)
        )
        return -scores

    def leaves(self, x: Any) -> np.ndarray:
        """(n_trees, n_rows) index into ``leaf_depth`` of the leaf each row reaches in each tree."""
        values = self._values(x)
        leaves = np.empty((self.n_trees, len(values)), dtype=np.intp)
        self._walk(values, np.empty(len(values), dtype=np.float64), leaves)
        return leaves

    def _values(self, x: Any) -> np.ndarray:
        # The dtype scikit-learn's validation gives the trees, row-major and writable: every request
        # then has the argument types of the call made at load, so numba never compiles again.
        values = np.require(x, dtype=np.float32, requirements=["C", "W"])
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise ValueError(f"X has {values.shape[-1]} features, but the forest expects {self.n_features}")
        return values

    def _walk(self, values: np.ndarray, depths: np.ndarray, leaves: np.ndarray) -> None:
        _compiled_walk()(
            values,
            self.feature,
            self.threshold,
            self.missing_right,
            self.sends_missing_right,
            self.leaf_depth,
            self.n_trees,
            self.depth,
            depths,
            leaves,
        )

    def is_outlier(self, score_samples: np.ndarray) -> np.ndarray:
        """``predict(X) == -1`` from the scores already computed: ``decision_function < 0``."""
        return (score_samples - self.offset) < 0


@functools.cache
def _helper() -> ThreadPoolExecutor | None:
    """One worker thread for the second half of a large batch, or ``None`` on a single core.

    The walk releases the GIL, so the halves run side by side and a hand-off costs about 0.03 ms.
    On the 2-core machine, 1,000 rows of the trainer's forest (100 trees of depth 8), the two ways
    interleaved 60 times: median 1.69 ms against 1.94 ms in one thread, tenth percentile 0.88
    against 1.54 ms (the second core is not always free). The served 1,000-row request, the two
    ways alternated: p50 3.91-4.76 ms against 5.29-5.48 ms. One helper, not one per core:
    concurrent requests already keep the other cores busy."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="forest-walk") if cores > 1 else None


if hasattr(os, "register_at_fork"):  # a forked child has the executor but not its thread: it makes its own
    os.register_at_fork(after_in_child=_helper.cache_clear)


@functools.cache
def _compiled_walk() -> Callable[..., None]:
    """The numba walk; numba is imported here, at the first forest built, not by every import of
    ``models`` (importing it takes about 0.25 s).

    One thread, the request's own (``nogil``: concurrent requests run side by side). ``parallel=True``
    with ``prange`` over row blocks was measured on the 2-core machine while other work ran: with
    numba's default OpenMP layer a 1-row call took 8 ms instead of 0.02 ms (a worker thread waits
    for a busy core) and 1,000 rows 8 ms instead of 1.8 ms; with its workqueue layer 1 row took
    0.05 ms and 1,000 rows 1.1-1.8 ms, no gain, and that layer aborts the process when two threads
    enter it at once. It also doubled the compile time at load."""
    import numba

    @numba.njit(nogil=True, boundscheck=False)
    def walk(values, feature, threshold, missing_right, sends_missing_right, leaf_depth, n_trees, depth, depths, leaves):
        """Fill ``depths`` (each row's path length summed over the trees in their order) and, when
        ``leaves`` has rows, ``leaves[t, r]`` (the leaf row ``r`` reaches in tree ``t``)."""
        n_rows = values.shape[0]
        record = leaves.shape[0] > 0
        # NaN can only go right where some node sends it there and the rows hold one; the walk
        # without that test is about a third faster
        check_nan = sends_missing_right and np.isnan(values).any()
        node = np.empty(n_rows, dtype=np.intp)
        depths[:] = 0.0
        for t in range(n_trees):
            node[:] = t
            start = 0  # where the current level begins
            for level in range(depth):
                if check_nan:
                    for r in range(n_rows):
                        i = start + node[r]
                        value = values[r, feature[i]]
                        node[r] = 2 * node[r] + ((value > threshold[i]) | (np.isnan(value) & missing_right[i]))
                else:
                    for r in range(n_rows):
                        i = start + node[r]
                        node[r] = 2 * node[r] + (values[r, feature[i]] > threshold[i])
                start += n_trees << level
            for r in range(n_rows):
                depths[r] += leaf_depth[node[r]]
            if record:
                leaves[t] = node

    return walk


def stack_forest(forest: Any) -> StackedForest | None:
    """The stacked form of a fitted ``sklearn.ensemble.IsolationForest``, or ``None`` when it is
    not one of the shape this module reproduces (then keep calling scikit-learn).

    The walk is compiled here (a first call on one row), so no request pays for it."""
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

    n_nodes = n_trees * ((1 << depth) - 1)
    feature = np.zeros(n_nodes, dtype=np.intp)
    threshold = np.full(n_nodes, np.inf)
    missing_right = np.zeros(n_nodes, dtype=bool)
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
            at = n_trees * ((1 << level) - 1) + (t << level) + position
            split_on = nodes.feature[ids].astype(np.intp)
            feature[at] = columns[split_on] if subsample else split_on
            threshold[at] = nodes.threshold[ids]
            missing_right[at] = ~np.asarray(nodes.missing_go_to_left[ids], dtype=bool)
            ids = np.stack([left[ids], right[ids]], axis=1).ravel()
            position = np.stack([2 * position, 2 * position + 1], axis=1).ravel()
    stacked = StackedForest(
        feature=feature,
        threshold=threshold,
        missing_right=missing_right,
        sends_missing_right=bool(missing_right.any()),
        leaf_depth=leaf_depth,
        n_trees=n_trees,
        depth=depth,
        n_features=n_features,
        denominator=n_trees * _average_path_length([max_samples]),
        offset=offset,
    )
    stacked.score_samples(np.zeros((1, n_features), dtype=np.float32))  # compiles the walk, once per process
    return stacked


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
    dtypes = dict(zip(frame.columns, tabular.column_dtypes(frame)))  # one lookup per column, no Series built
    if not all(name in dtypes for name in spec.columns):
        return False
    return all(
        isinstance(dtypes[name], np.dtype) and dtypes[name].kind in "fiu" for name in scorer.preprocess.numeric
    )
