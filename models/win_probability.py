"""Win probability: CatBoost on closed deals, cross-fitted, then a calibration chosen by Brier.

``python -m models.win_probability --training-data URI --output DIR [--features LIST|auto]
[--iterations N] [--learning-rate X] [--depth D] [--early-stopping-rounds N] [--cv-folds 5]``

Closed deals (``is_closed``) are split 80/20 into a cross-fitting part and a test part: in time
order by ``evaluation_date`` when present, else at random stratified on ``target_win`` (so with the
default seed the test part equals scikit-learn's ``train_test_split(test_size=0.2, stratify=y,
random_state=42)``). The test part is touched only for the reported Brier, AUC_ROC and ECE.

Why cross-fitting: deals are few (the runbook's minimum is 5k) and a fixed train/calibration cut
leaves both the classifier and the calibrator short of data. Instead, ``--cv-folds`` classifiers
each train on all but one fold of the cross-fitting part, stopping early on the fold they left
out, and score that fold; those out-of-fold log-odds are the held-out calibration data for every
row. Isotonic or sigmoid (Platt scaling on log-odds, which leaves an already calibrated model
alone) is chosen by cross-validated Brier on them (a method fitted and scored on the same rows
would always pick isotonic), then fitted on all of them. Served: the calibrated mean log-odds of
the fold classifiers; ``top_factors`` are their mean SHAP contributions to that log-odds.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import brier_score_loss, roc_auc_score

from models import pyfunc_support, splits, tabular, trainer
from salesrisk import catalog

MODEL_ID = "win_probability"
TARGET = catalog.WIN_TARGET
FRACTIONS = (0.8, 0.2)  # cross-fitting (train + calibrate), test
CALIBRATION_METHODS = ("sigmoid", "isotonic")  # on a tie the first, simpler one wins
CALIBRATION_FOLDS = 5  # for choosing the method on the out-of-fold log-odds
ECE_BINS = 10
PARALLEL_ROWS = 512  # from this many rows a served prediction uses two CatBoost threads (see FastProbability.log_odds)


@dataclass(frozen=True)
class WinParams:
    iterations: int = 1000
    learning_rate: float = 0.03
    depth: int = 6
    early_stopping_rounds: int = 100
    cv_folds: int = 5
    seed: int = 42


class LogOdds(ClassifierMixin, BaseEstimator):
    """A classifier whose decision function is its one input column, the log-odds of a win.

    It lets scikit-learn's ``CalibratedClassifierCV`` (around a ``FrozenEstimator``) fit its
    calibrator on out-of-fold log-odds, and makes its sigmoid method true Platt scaling: given only
    ``predict_proba`` it would fit the sigmoid on probabilities, a poor form for rare wins.
    """

    def fit(self, X: Any, y: Any) -> LogOdds:
        self.classes_ = np.unique(y)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        return np.asarray(X, dtype="float64")[:, 0]

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


@dataclass
class WinModel:
    """The fold classifiers and the calibrator of their mean log-odds: everything serving needs."""

    classifiers: list[Any]  # catboost.CatBoostClassifier, one per fold
    calibrator: Any  # CalibratedClassifierCV(FrozenEstimator(LogOdds))
    spec: tabular.FeatureSpec

    def log_odds(self, x: pd.DataFrame) -> np.ndarray:
        return np.mean([m.predict(x, prediction_type="RawFormulaVal") for m in self.classifiers], axis=0)

    def probability(self, x: pd.DataFrame) -> np.ndarray:
        return self.calibrator.predict_proba(self.log_odds(x).reshape(-1, 1))[:, 1]

    def contributions(self, x: pd.DataFrame) -> np.ndarray:
        """Mean SHAP values over the fold classifiers (additive, so they explain the mean log-odds)."""
        from catboost import Pool

        pool = Pool(x, cat_features=self.spec.categorical_positions)
        return np.mean([m.get_feature_importance(pool, type="ShapValues")[:, :-1] for m in self.classifiers], axis=0)


@dataclass
class TrainedWin:
    model: WinModel
    method: str
    calibration_brier: dict[str, float]
    best_iterations: list[int]

    @property
    def spec(self) -> tabular.FeatureSpec:
        return self.model.spec


def training_rows(df: pl.DataFrame) -> pl.DataFrame:
    """Closed deals with a known outcome, ``target_win`` as 0/1."""
    if catalog.IS_CLOSED in df.columns:
        df = df.filter(pl.col(catalog.IS_CLOSED).cast(pl.Boolean).fill_null(False))
    return df.filter(pl.col(TARGET).is_not_null()).with_columns(pl.col(TARGET).cast(pl.Int64))


def split(df: pl.DataFrame, seed: int = 42) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(cross-fitting part, test part) of already-filtered rows."""
    fitting, test = splits.split_positions(df, FRACTIONS, seed, stratify=TARGET)
    return df[fitting], df[test]


def holdout(df: pl.DataFrame, seed: int = 42) -> pl.DataFrame:
    """Exactly the closed deals the trainer tested on and never trained or calibrated on."""
    return split(training_rows(df), seed)[1]


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, bins: int = ECE_BINS) -> float:
    """Share-weighted gap between mean predicted probability and observed win rate, over
    equal-width probability bins (the usual ECE; scikit-learn has no function for it)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(y_prob, edges[1:-1], right=False), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(float(y_prob[mask].mean()) - float(y_true[mask].mean()))
    return float(total)


def choose_calibration(log_odds: np.ndarray, y: np.ndarray, seed: int) -> dict[str, float]:
    """Cross-validated Brier of each calibration method on out-of-fold log-odds."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x = log_odds.reshape(-1, 1)
    folds = max(2, min(CALIBRATION_FOLDS, int(np.bincount(y).min())))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return {
        method: float(-cross_val_score(calibrator(method), x, y, cv=cv, scoring="neg_brier_score").mean())
        for method in CALIBRATION_METHODS
    }


def calibrator(method: str) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    return CalibratedClassifierCV(FrozenEstimator(LogOdds().fit(None, np.array([0, 1]))), method=method)


def train(fitting_df: pl.DataFrame, features: Sequence[str], params: WinParams = WinParams()) -> TrainedWin:
    """Cross-fit the classifiers, then choose and fit the calibration; pure (no files, no tracking)."""
    from catboost import CatBoostClassifier
    from sklearn.model_selection import StratifiedKFold

    spec = tabular.feature_spec(fitting_df, features)
    x, y = tabular.model_frame(fitting_df, spec), fitting_df.get_column(TARGET).to_numpy()
    out_of_fold = np.zeros(len(y))
    classifiers, best = [], []
    folds = StratifiedKFold(n_splits=params.cv_folds, shuffle=True, random_state=params.seed)
    for fit_rows, score_rows in folds.split(x, y):
        classifier = CatBoostClassifier(
            loss_function="Logloss",
            iterations=params.iterations,
            learning_rate=params.learning_rate,
            depth=params.depth,
            random_seed=params.seed,
            thread_count=2,
            allow_writing_files=False,
            verbose=False,
            cat_features=spec.categorical_positions,
        )
        classifier.fit(
            x.iloc[fit_rows],
            y[fit_rows],
            eval_set=(x.iloc[score_rows], y[score_rows]),
            early_stopping_rounds=params.early_stopping_rounds,
            use_best_model=True,
        )
        out_of_fold[score_rows] = classifier.predict(x.iloc[score_rows], prediction_type="RawFormulaVal")
        classifiers.append(classifier)
        best.append(int(classifier.get_best_iteration() or 0))
    briers = choose_calibration(out_of_fold, y, params.seed)
    method = min(CALIBRATION_METHODS, key=lambda m: briers[m])
    fitted = calibrator(method).fit(out_of_fold.reshape(-1, 1), y)
    return TrainedWin(WinModel(classifiers, fitted, spec), method, briers, best)


FACTOR_UNITS = (
    "log-odds of a win: each contribution is the feature's exact SHAP value (CatBoost, path-dependent) "
    "in the mean log-odds of the fold classifiers, before calibration; positive raises the win probability"
)


def score_frame(model: WinModel, frame: pd.DataFrame) -> pd.DataFrame:
    """``win_probability`` (calibrated) and ``top_factors`` per row."""
    x = tabular.model_frame(frame, model.spec)
    return pd.DataFrame(
        {
            "win_probability": model.probability(x).astype("float64"),
            "top_factors": tabular.top_factors(model.contributions(x), model.spec.columns, x),
        }
    )


class WinProbabilityModel(mlflow.pyfunc.PythonModel):
    """The served model; the :class:`WinModel` is a joblib artifact.

    ``top_factors`` are exact SHAP values of the served log-odds, the same numbers
    :meth:`WinModel.contributions` gives, looked up in a per-leaf table built once at load
    (``models.explain``): CatBoost's own call rebuilds that table on every call, which cost 14 ms
    for one row and 319 ms for 100 with the five fold classifiers. The fold classifiers summed
    into one model (weights 1/k) have the same SHAP values as their mean, so one table serves.
    A caller that needs only the probability passes ``params={"top_factors": False}`` (in an HTTP
    request ``"params": {"top_factors": false}``), declared in the signature so MLflow passes it on.
    Probability speed: the summed model predicts on one thread (CatBoost's default of every core
    was 4x slower on this shared 2-core machine), from a float block when every feature is numeric
    and already float (``tabular.model_frame`` costs 8 ms on one row), through the fitted
    calibration function itself (``CalibratedClassifierCV.predict_proba`` adds 1.4 ms per call).
    """

    def __init__(self) -> None:
        self._model: WinModel | None = None
        self._fast: FastProbability | None = None

    def load_context(self, context: Any) -> None:
        import joblib

        self._model = joblib.load(context.artifacts["model"])
        self._fast = FastProbability(self._model, explain=True)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        model = self._model
        if self._fast is None:  # unpickled without load_context
            self._fast = FastProbability(model, explain=True)
        x = self._fast.features(model_input)
        probability = self._fast.probability(x)
        if not tabular.factors_requested(params):
            return tabular.score_column("win_probability", probability)
        factors = tabular.top_factors(self._fast.contributions(x), model.spec.columns, x)
        return pd.DataFrame({"win_probability": probability, "top_factors": factors})

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None, "_fast": None}


class FastProbability:
    """:meth:`WinModel.probability`, computed the same way (checked at construction) but cheaply."""

    def __init__(self, model: WinModel, explain: bool = False) -> None:
        self.model = model
        self.columns = list(model.spec.columns)
        # CatBoost sums the folds' trees but not their categorical statistics (measured on UCI bank
        # marketing: log-odds 0.06 off the folds' mean), so a model with categories keeps its folds
        self.summed = None if model.spec.categorical else _summed(model.classifiers)
        self._explain = None
        self.trees = None  # the summed model's split table, for few-row predictions (models.oblivious_trees)
        if explain and self.summed is not None:
            from models import explain as explain_mod

            self.trees, self._explain = explain_mod.fast_paths(self.summed, self.columns, model.spec.categorical_positions)
        self.calibrators = _calibration_functions(model.calibrator)
        if self.calibrators is not None:  # fall back to the calibrator itself unless identical
            grid = np.linspace(-12.0, 12.0, 241)
            expected = model.calibrator.predict_proba(grid.reshape(-1, 1))[:, 1]
            if not np.allclose(self._calibrate(grid), expected, rtol=0, atol=1e-12):
                self.calibrators = None

    def features(self, frame: pd.DataFrame) -> pd.DataFrame | np.ndarray:
        """A float block in model order when every feature is numeric, else the model frame."""
        block = tabular.float_block(frame, self.model.spec)
        return block if block is not None else tabular.model_frame(frame, self.model.spec)

    def log_odds(self, x: pd.DataFrame | np.ndarray) -> np.ndarray:
        if self.trees is not None and self.trees.takes(x):
            return self.trees.raw(x)
        # CatBoost's second thread pays off on large batches only: 1,000 rows of the make-run model
        # (1,011 summed trees), 80 calls interleaved, median 1.39 ms with two threads against 1.67 ms
        # with one (p90 1.47 against 2.15); at 200 rows and below it measured the same or slower.
        threads = 2 if len(x) >= PARALLEL_ROWS else 1
        if self.summed is None:
            return np.mean(
                [m.predict(x, prediction_type="RawFormulaVal", thread_count=threads) for m in self.model.classifiers], axis=0
            )
        return self.summed.predict(x, prediction_type="RawFormulaVal", thread_count=threads)

    def probability(self, x: pd.DataFrame | np.ndarray) -> np.ndarray:
        log_odds = np.asarray(self.log_odds(x), dtype=np.float64)
        if self.calibrators is None:
            return self.model.calibrator.predict_proba(log_odds.reshape(-1, 1))[:, 1].astype("float64")
        return self._calibrate(log_odds)

    def contributions(self, x: pd.DataFrame | np.ndarray) -> np.ndarray:
        """:meth:`WinModel.contributions` (exact SHAP of the mean log-odds), from the kept table."""
        if self._explain is None:
            frame = x if isinstance(x, pd.DataFrame) else pd.DataFrame(x, columns=self.columns)
            return self.model.contributions(frame)
        return self._explain(x)

    def _calibrate(self, log_odds: np.ndarray) -> np.ndarray:
        if len(self.calibrators) == 1:  # type: ignore[arg-type]
            p = self.calibrators[0](log_odds)  # type: ignore[index]
        else:
            p = np.mean([calibrate(log_odds) for calibrate in self.calibrators], axis=0)  # type: ignore[union-attr]
        p[(p > 1.0) & (p <= 1.0 + 1e-5)] = 1.0  # as CalibratedClassifierCV does
        return p.astype("float64")


def _summed(classifiers: list[Any]) -> Any | None:
    """The fold classifiers as one CatBoost model with weights 1/k, or ``None`` when they cannot be summed."""
    from catboost import CatBoostError, sum_models

    if len(classifiers) < 2:
        return classifiers[0] if classifiers else None
    try:
        return sum_models(classifiers, weights=[1.0 / len(classifiers)] * len(classifiers))
    except CatBoostError:  # e.g. categorical statistics that cannot be merged
        return None


def _calibration_functions(calibrated: Any) -> list[Callable[[np.ndarray], np.ndarray]] | None:
    """The fitted sigmoid or isotonic function of each calibrated classifier (binary case)."""
    try:
        return [_calibration_function(c.calibrators[0]) for c in calibrated.calibrated_classifiers_]
    except (AttributeError, IndexError, TypeError):
        return None


def _calibration_function(calibrator: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``calibrator.predict`` on a float64 array of log-odds, as scikit-learn computes it, without
    its input checks (about 0.1 ms a call, more than the rest of a one-row prediction). Checked
    against ``predict`` itself by :class:`FastProbability`."""
    from scipy.special import expit
    from sklearn.calibration import _SigmoidCalibration
    from sklearn.isotonic import IsotonicRegression

    if type(calibrator) is _SigmoidCalibration:
        a, b = calibrator.a_, calibrator.b_
        return lambda t: expit(-(a * t + b))
    if type(calibrator) is IsotonicRegression and calibrator.X_thresholds_.dtype == np.float64:
        clip = calibrator.out_of_bounds == "clip"
        low, high, f = calibrator.X_min_, calibrator.X_max_, calibrator.f_
        return lambda t: f(np.clip(t, low, high) if clip else t).astype(np.float64)
    return calibrator.predict


def save(trained: TrainedWin, model_dir: Path, example: pl.DataFrame) -> None:
    """Write ``trained`` as an MLflow pyfunc model at ``model_dir``."""
    import joblib

    with tempfile.TemporaryDirectory(dir=model_dir.parent) as tmp:
        path = Path(tmp, "win_model.joblib")
        joblib.dump(trained.model, path)
        input_example = example.select(trained.spec.columns).head(5).to_pandas()
        pyfunc_support.save_pyfunc(
            model_dir,
            WinProbabilityModel(),
            {"model": str(path)},
            input_example,
            ["catboost", "joblib"],
            output_example=score_frame(trained.model, input_example),
            params=tabular.factors_param_schema(),
            metadata={
                "model_id": MODEL_ID,
                "target": TARGET,
                "calibration": trained.method,
                "features": trained.spec.to_dict(),
                "top_factors_units": FACTOR_UNITS,
            },
        )


def evaluate(predictor: Any, df: pl.DataFrame) -> dict[str, float]:
    """Brier, AUC_ROC and ECE of ``predictor.predict`` on the closed, labelled deals of ``df``."""
    rows = training_rows(df)
    predicted = predictor.predict(tabular.pandas_input(rows, predictor))["win_probability"].to_numpy(dtype="float64")
    actual = rows.get_column(TARGET).to_numpy()
    return {
        "Brier": float(brier_score_loss(actual, predicted)),
        "AUC_ROC": float(roc_auc_score(actual, predicted)),
        "ECE": expected_calibration_error(actual, predicted),
    }


def _require_both_classes(source: str, parts: dict[str, tuple[pl.DataFrame, int]]) -> None:
    from models.contracts import DataContractError

    for name, (part, needed) in parts.items():
        counts = part.get_column(TARGET).value_counts()
        if counts.height < 2 or counts.get_column("count").min() < needed:
            raise DataContractError(
                source,
                TARGET,
                f"at least {needed} wins and {needed} losses among closed deals ({catalog.IS_CLOSED} true) "
                f"in the {name} part of the split",
                part.height,
                [f"{dict(counts.iter_rows())} of {part.height} row(s)"],
            )


def fit(df: pl.DataFrame, features: list[str], args: argparse.Namespace, model_dir: Path) -> trainer.FitResult:
    rows = training_rows(df)
    fitting_df, test_df = split(rows, args.seed)
    _require_both_classes(args.training_data, {"cross-fitting": (fitting_df, args.cv_folds), "test": (test_df, 2)})
    params = WinParams(args.iterations, args.learning_rate, args.depth, args.early_stopping_rounds, args.cv_folds, args.seed)
    trained = train(fitting_df, features, params)
    save(trained, model_dir, fitting_df)
    metrics = evaluate(mlflow.pyfunc.load_model(str(model_dir)), test_df)
    time_column = splits.time_column(rows)
    return trainer.FitResult(
        metrics,
        {
            "calibration": trained.method,
            **{f"calibration_brier_{m}": round(b, 6) for m, b in trained.calibration_brier.items()},
            "best_iterations": ",".join(map(str, trained.best_iterations)),
            "categorical_features": ",".join(trained.spec.categorical),
            "split": f"time:{time_column}" if time_column else "random-stratified",
            "rows_cross_fitting": fitting_df.height,
            "rows_test": test_df.height,
        },
    )


def build_parser() -> argparse.ArgumentParser:
    parser = trainer.build_parser(MODEL_ID, __doc__.splitlines()[0])
    defaults = WinParams()
    parser.add_argument("--iterations", type=trainer.positive_int, default=defaults.iterations)
    parser.add_argument("--learning-rate", type=trainer.positive_float, default=defaults.learning_rate)
    parser.add_argument("--depth", type=trainer.positive_int, default=defaults.depth)
    parser.add_argument("--early-stopping-rounds", type=trainer.positive_int, default=defaults.early_stopping_rounds)
    parser.add_argument("--cv-folds", type=cv_folds, default=defaults.cv_folds, help="cross-fitting folds (>= 2)")
    return parser


def cv_folds(text: str) -> int:
    """argparse type: at least two folds."""
    value = int(text)
    if value < 2:
        raise ValueError(text)
    return value


def main(argv: Sequence[str] | None = None) -> int:
    return trainer.run(MODEL_ID, build_parser(), fit, catalog.WIN_PROBABILITY_FEATURES, argv)


if __name__ == "__main__":
    # Run the importable copy of this module: what it pickles (the pyfunc model, joblib artifacts)
    # must name models.win_probability, not __main__, or it will not load in another process.
    from models.win_probability import main as _main

    raise SystemExit(_main())
