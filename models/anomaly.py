"""Anomaly detection: a scikit-learn IsolationForest with its scaling inside one Pipeline.

``python -m models.anomaly --training-data URI --output DIR [--features LIST|auto]
[--param-contamination 0.1] [--param-n-estimators 100]``

Features default to ``auto`` (every column but identifiers, dates, targets and ``is_anomaly``):
the runbook's anomaly input is "feature columns only". Numbers are imputed (median) and scaled,
strings ordinal-encoded (unknown -> -1), all inside the saved Pipeline so serving cannot skip a
step. Rows are split 80/20 (time-ordered when a date column exists, else seeded and stratified on
``is_anomaly`` when present); the forest never sees the last part.

**Threshold and forest.** Without labels the forest is the runbook's (every feature available
to every tree) and flags the runbook's ``--param-contamination`` share. With an ``is_anomaly``
column the labels are worth using for what an unsupervised forest cannot know: where to cut, and
whether each tree should see every feature. The training part is cut into 4 stratified validation
folds; each is scored by forests fitted on the other three (labels unused), one per candidate
``max_features`` (``MAX_FEATURES_CANDIDATES``: all features, or half of them per tree). For each
candidate the share of top-scored rows that maximises F1 over the folds is found; the candidate
with the best validation F1 wins (ties keep all features), and the final forest, fitted on the
whole training part with that ``max_features``, flags its share. Chosen share, ``max_features``
and validation F1 are logged (``chosen_contamination``, ``chosen_max_features``,
``validation_F1``, and the validation F1 of every candidate in ``threshold_choice``);
``--no-tune-threshold`` keeps the runbook's forest and share. The effect on held-out F1, file by
file against plain IsolationForest: benchmarks/README.md, "Anomaly quality (ODDS)".

metrics.json: with an ``is_anomaly`` column, ``F1`` of the anomaly class on the held-out part (the
runbook's metric). Without one there is no quality to measure: it holds ``anomaly_rate``, the
share of held-out rows flagged, which should sit near ``--param-contamination`` (far off means the
held-out rows do not look like the training rows).

A file with no numeric feature (text only) is refused naming the columns it has: ordinal codes
of free text are not a distance an isolation forest can use.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl
from sklearn.metrics import f1_score

from models import forest_scoring, pyfunc_support, splits, tabular, trainer
from salesrisk import catalog

MODEL_ID = "anomaly"
LABEL = catalog.ANOMALY_LABEL
FRACTIONS = (0.8, 0.2)  # train, test
FOLDS = 4  # validation folds of the training part for choosing the threshold
MAX_CONTAMINATION = 0.5  # IsolationForest's own upper bound
MIN_ROWS = 10
MIN_VALIDATION_ANOMALIES = 2  # fewer labelled anomalies in the validation split: keep the runbook's share
MAX_FEATURES_CANDIDATES = (1.0, 0.5)  # share of features each tree draws from; the first is the runbook's forest


@dataclass(frozen=True)
class AnomalyParams:
    contamination: float | str = 0.1  # a share, or "auto" for forests that only rank (no flagged share)
    n_estimators: int = 100
    seed: int = 42
    tune_threshold: bool = True
    max_features: float = 1.0  # IsolationForest's own default; labels may choose another candidate


@dataclass
class TrainedAnomaly:
    pipeline: Any  # sklearn Pipeline(preprocess, IsolationForest)
    spec: tabular.FeatureSpec


def split(df: pl.DataFrame, seed: int = 42) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, test)."""
    train, test = splits.split_positions(df, FRACTIONS, seed, stratify=LABEL if LABEL in df.columns else None)
    return df[train], df[test]


def holdout(df: pl.DataFrame, seed: int = 42) -> pl.DataFrame:
    """Exactly the rows the forest was not fitted on (same frame, same seed)."""
    return split(df, seed)[1]


def build_pipeline(spec: tabular.FeatureSpec, params: AnomalyParams) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import IsolationForest
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder, StandardScaler

    preprocess = ColumnTransformer(
        [
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), list(spec.numeric)),
            (
                "categorical",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1),
                list(spec.categorical),
            ),
        ],
        remainder="drop",
    )
    forest = IsolationForest(
        n_estimators=params.n_estimators,
        contamination=params.contamination,
        max_features=params.max_features,
        random_state=params.seed,
    )
    return Pipeline([("preprocess", preprocess), ("forest", forest)])


def train(train_df: pl.DataFrame, features: Sequence[str], params: AnomalyParams = AnomalyParams()) -> TrainedAnomaly:
    """Fit the pipeline on ``train_df``'s features (labels are never used); pure."""
    spec = tabular.feature_spec(train_df, features)
    pipeline = build_pipeline(spec, params).fit(tabular.model_frame(train_df, spec))
    return TrainedAnomaly(pipeline, spec)


def numeric_features_or_refuse(df: pl.DataFrame, features: Sequence[str], source: str) -> tabular.FeatureSpec:
    """The feature spec, refused when no feature is numeric (naming the columns the file has)."""
    from models.contracts import DataContractError

    spec = tabular.feature_spec(df, features)
    if not [name for name in spec.columns if name not in spec.categorical]:
        raise DataContractError(
            source,
            "(features)",
            f"at least one numeric feature column (columns present: {', '.join(df.columns)}; "
            f"features considered: {', '.join(features) or 'none'})",
            df.height,
            [],
        )
    return spec


@dataclass(frozen=True)
class Threshold:
    """The contamination and ``max_features`` the final forest uses, and how they were chosen."""

    contamination: float
    validation_f1: float | None  # None: the runbook's forest and share, no labels to choose with
    how: str
    max_features: float = 1.0

    def params(self, params: AnomalyParams) -> AnomalyParams:
        """``params`` with the chosen share and ``max_features``: what the final forest is fitted with."""
        return replace(params, contamination=self.contamination, max_features=self.max_features)


def choose_contamination(train_df: pl.DataFrame, features: Sequence[str], params: AnomalyParams) -> Threshold:
    """The share of rows to flag and the forest's ``max_features``: the F1-best pair on labelled
    validation folds, else the runbook's share with every feature.

    Cross-validated (``FOLDS`` stratified folds, each scored by a forest fitted on the others, with
    labels unused by the forests) because one small validation split holds too few anomalies for a
    stable cut. A share rather than a raw score is carried over, since the final forest's scores
    are on its own scale: in each fold the top ``share`` of rows is flagged, and F1 is pooled.

    ``max_features`` is chosen on the same folds because whether trees should draw from every
    feature depends on the data: features that carry no sign of the anomalies still take splits
    and dilute path lengths; drawing half the features per tree lets the trees that miss them
    separate the anomalies sooner, at the cost of some trees that miss the informative ones. The
    labels can tell which effect dominates, for the same price as the threshold; the trees stay
    the same size, so scoring costs the same. Both candidates are fitted with the same seeds and
    judged by the same pooled F1, so the choice and the cut are made together; a tie keeps every
    feature (the runbook's forest).

    The plain F1-best share is kept on purpose. Steadier choices (repeated folds, F1 smoothed over
    neighbouring shares, a bootstrap median of the best share, the runbook's share unless clearly
    beaten) did not raise held-out F1 on the 8 ODDS files beyond seed noise, and tended to lower it
    on the smallest (wbc). Nor is the labelled prevalence a prior to shrink toward: a forest that
    ranks anomalies imperfectly often has its best F1 well above the prevalence (annthyroid and
    cardio: held-out F1 averaged over seeds peaks at shares of 0.13-0.17, outlier rates 0.07, 0.10).
    """
    from sklearn.model_selection import StratifiedKFold

    runbook = Threshold(params.contamination, None, "runbook contamination", params.max_features)
    if not params.tune_threshold or LABEL not in train_df.columns:
        return runbook
    labelled = train_df.filter(pl.col(LABEL).is_not_null())
    truth = labelled.get_column(LABEL).cast(pl.Int64).to_numpy() == 1
    if truth.sum() < FOLDS * MIN_VALIDATION_ANOMALIES or (~truth).sum() < FOLDS:
        return replace(runbook, how=f"runbook contamination (only {int(truth.sum())} labelled anomalies)")
    folds = list(StratifiedKFold(FOLDS, shuffle=True, random_state=params.seed).split(np.zeros(len(truth)), truth))
    best: Threshold | None = None
    tried = []
    for max_features in MAX_FEATURES_CANDIDATES:
        # "auto": validation forests only rank rows, so they skip scoring their own rows for a cut
        candidate = replace(params, max_features=max_features, contamination="auto")
        ranks = np.zeros(len(truth))  # within-fold rank of the score, 1 = most anomalous
        for fit_pos, val_pos in folds:
            forest = train(labelled[fit_pos], features, candidate)
            scores = -forest.pipeline.score_samples(tabular.model_frame(labelled[val_pos], forest.spec))
            ranks[val_pos] = (1 + np.argsort(np.argsort(-scores, kind="stable"), kind="stable")) / len(val_pos)
        share, f1 = best_share(ranks, truth)
        tried.append(f"max_features {max_features:g}: F1 {f1:.4f} at share {share:.4f}")
        if best is None or f1 > best.validation_f1:
            best = Threshold(share, f1, "", max_features)
    assert best is not None
    return replace(best, how=f"F1-best share and max_features over {FOLDS} validation folds ({'; '.join(tried)})")


def best_share(ranks: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The share ``s`` (at most MAX_CONTAMINATION) for which flagging ``ranks <= s`` has the best
    F1, and that F1; every distinct rank is a candidate cut, counted in one pass."""
    order = np.argsort(ranks, kind="stable")
    sorted_ranks = ranks[order]
    true_positives = np.cumsum(truth[order])
    flagged = np.arange(1, len(ranks) + 1)
    last_of_each = np.r_[sorted_ranks[1:] != sorted_ranks[:-1], True] & (sorted_ranks <= MAX_CONTAMINATION)
    if not last_of_each.any():
        return MAX_CONTAMINATION, 0.0
    f1 = 2 * true_positives / (flagged + truth.sum())
    f1 = np.where(last_of_each, f1, -1.0)
    best = int(np.argmax(f1))
    return float(sorted_ranks[best]), float(f1[best])


def score_frame(pipeline: Any, spec: tabular.FeatureSpec, frame: pd.DataFrame, scorer: Any = None) -> pd.DataFrame:
    """``anomaly_score`` (higher is more anomalous) and ``is_anomaly`` (the forest's threshold).

    Both come from one pass over the forest: ``is_anomaly`` is IsolationForest.predict's own rule,
    ``score_samples - offset_ < 0``, applied to the scores already computed. ``scorer`` (from
    ``forest_scoring.pipeline_scorer``) gives the same scores without scikit-learn's per-tree loop.
    """
    if scorer is None:
        scorer = _SklearnScorer(pipeline)
    x = frame if forest_scoring.takes_frame_as_is(scorer, frame, spec) else tabular.model_frame(frame, spec)
    scores = scorer.score_samples(x)
    return pd.DataFrame(
        {
            "anomaly_score": (-scores).astype("float64"),
            "is_anomaly": scorer.is_outlier(scores),
        }
    )


class _SklearnScorer:
    """The pipeline's own ``score_samples``, thresholded like its ``predict``."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def score_samples(self, x: pd.DataFrame) -> np.ndarray:
        return self.pipeline.score_samples(x)

    def is_outlier(self, scores: np.ndarray) -> np.ndarray:
        return (scores - self.pipeline.steps[-1][1].offset_) < 0


class AnomalyModel(mlflow.pyfunc.PythonModel):
    """The served model; the fitted Pipeline is a joblib artifact, scored by the stacked forest
    built from it at load (scikit-learn itself when the pipeline is not of the expected shape)."""

    def __init__(self, spec: tabular.FeatureSpec) -> None:
        self.spec = spec
        self._pipeline: Any = None
        self._scorer: Any = None

    def load_context(self, context: Any) -> None:
        import joblib

        self._pipeline = joblib.load(context.artifacts["model"])
        self._scorer = forest_scoring.pipeline_scorer(self._pipeline)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return score_frame(self._pipeline, self.spec, model_input, self._scorer)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pipeline": None, "_scorer": None}


def save(trained: TrainedAnomaly, model_dir: Path, example: pl.DataFrame) -> None:
    """Write ``trained`` as an MLflow pyfunc model at ``model_dir``."""
    import joblib

    with tempfile.TemporaryDirectory(dir=model_dir.parent) as tmp:
        path = Path(tmp, "pipeline.joblib")
        joblib.dump(trained.pipeline, path)
        input_example = example.select(trained.spec.columns).head(5).to_pandas()
        pyfunc_support.save_pyfunc(
            model_dir,
            AnomalyModel(trained.spec),
            {"model": str(path)},
            input_example,
            ["joblib", "numba"],  # numba compiles the stacked forest's walk (models/forest_scoring.py)
            output_example=score_frame(trained.pipeline, trained.spec, input_example),
            metadata={"model_id": MODEL_ID, "features": trained.spec.to_dict()},
        )


def evaluate(predictor: Any, df: pl.DataFrame) -> dict[str, float]:
    """``F1`` of the anomaly class when ``df`` has ``is_anomaly`` (rows without a label are
    skipped), else ``anomaly_rate`` (share flagged)."""
    if LABEL in df.columns:
        rows = df.filter(pl.col(LABEL).is_not_null())
        flagged = predictor.predict(tabular.pandas_input(rows, predictor))["is_anomaly"].to_numpy().astype(bool)
        actual = rows.get_column(LABEL).cast(pl.Boolean).to_numpy()
        return {"F1": float(f1_score(actual, flagged, pos_label=True, zero_division=0.0))}
    flagged = predictor.predict(tabular.pandas_input(df, predictor))["is_anomaly"].to_numpy().astype(bool)
    return {"anomaly_rate": float(flagged.mean())}


def fit(df: pl.DataFrame, features: list[str], args: argparse.Namespace, model_dir: Path) -> trainer.FitResult:
    from models.contracts import DataContractError

    if df.height < MIN_ROWS:
        raise DataContractError(
            args.training_data, "(rows)", f"at least {MIN_ROWS} rows (to train and test)", MIN_ROWS - df.height, [f"{df.height} row(s)"]
        )
    numeric_features_or_refuse(df, features, args.training_data)
    train_df, test_df = split(df, args.seed)
    params = AnomalyParams(args.param_contamination, args.param_n_estimators, args.seed, args.tune_threshold)
    threshold = choose_contamination(train_df, features, params)
    trained = train(train_df, features, threshold.params(params))
    save(trained, model_dir, train_df)
    metrics = evaluate(mlflow.pyfunc.load_model(str(model_dir)), test_df)
    if threshold.validation_f1 is not None:
        metrics["validation_F1"] = threshold.validation_f1
    metrics["chosen_contamination"] = threshold.contamination
    metrics["chosen_max_features"] = threshold.max_features
    time_column = splits.time_column(df)
    return trainer.FitResult(
        metrics,
        {
            "chosen_contamination": threshold.contamination,
            "chosen_max_features": threshold.max_features,
            "threshold_choice": threshold.how,
            "labelled": LABEL in df.columns,
            "categorical_features": ",".join(trained.spec.categorical),
            "split": f"time:{time_column}" if time_column else "random",
            "rows_train": train_df.height,
            "rows_test": test_df.height,
        },
    )


def contamination(text: str) -> float:
    """argparse type: IsolationForest's contamination, a share in (0, 0.5]."""
    value = float(text)
    if not 0 < value <= 0.5:
        raise ValueError(text)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = trainer.build_parser(MODEL_ID, __doc__.splitlines()[0])
    defaults = AnomalyParams()
    parser.set_defaults(features="auto")
    parser.add_argument("--param-contamination", type=contamination, default=defaults.contamination)
    parser.add_argument("--param-n-estimators", type=trainer.positive_int, default=defaults.n_estimators)
    parser.add_argument(
        "--tune-threshold",
        action=argparse.BooleanOptionalAction,
        default=defaults.tune_threshold,
        help="with is_anomaly labels, choose the flagged share on a validation split to maximise F1 (default)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return trainer.run(MODEL_ID, build_parser(), fit, (), argv)


if __name__ == "__main__":
    # Run the importable copy of this module: what it pickles (the pyfunc model, joblib artifacts)
    # must name models.anomaly, not __main__, or it will not load in another process.
    from models.anomaly import main as _main

    raise SystemExit(_main())
