"""Risk scoring: a CatBoost regressor on ``target_risk``, global or for one industry.

``python -m models.risk_scoring --training-data URI --output DIR [--industry-id ID [--from-scratch]]
[--iterations N] [--learning-rate X] [--depth D] [--early-stopping-rounds N]``

Rows are split 64/16/20 into train, validation (early stopping only) and test, in time order by
``evaluation_date`` when present, so the reported RMSE, MAE and R2 are on rows later than any the
model saw. The served model explains each score with its three largest signed SHAP contributions,
because a risk score a seller cannot act on is not much use.

An industry model (``--industry-id``) is split, validated and tested on its industry's rows only,
but it does not start from nothing: it first fits a global model on the rows the global model
trains on (less the industry's validation and test rows), then keeps boosting on the industry's
training rows, early-stopped on the industry's validation rows (CatBoost ``init_model``). An
industry has a few hundred closed deals; fitted on those alone a model relearns, noisily, what
every industry's deals show (how activity, stage and size relate to risk) and loses to the global
model. Warm-started, it adds trees only where its industry differs, and few when nothing does.
The base is refitted inside the job from the same training data rather than passed in, so the
trainer runs the same as a local process and as an Azure ML command job. ``--from-scratch`` fits
the industry's rows alone, for comparison. See docs/industry-models.md.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from models import explain, pyfunc_support, splits, tabular, trainer
from salesrisk import catalog

MODEL_ID = "risk_scoring"
TARGET = catalog.RISK_TARGET
FRACTIONS = (0.64, 0.16, 0.20)  # train, validation (early stopping), test
MIN_ROWS = 20
_ROW = "__risk_row"


@dataclass(frozen=True)
class RiskParams:
    iterations: int = 500
    learning_rate: float = 0.05
    depth: int = 6
    early_stopping_rounds: int = 50
    seed: int = 42


@dataclass
class TrainedRisk:
    """A fitted regressor with what serving needs to reproduce its inputs and range."""

    model: Any  # catboost.CatBoostRegressor
    spec: tabular.FeatureSpec
    target_range: tuple[float, float]
    best_iteration: int


def training_rows(df: pl.DataFrame, industry_id: str | None = None) -> pl.DataFrame:
    """Rows this model learns from: labelled, and of the one industry when one is asked for."""
    if industry_id is not None:
        df = df.filter(pl.col(catalog.INDUSTRY_ID).cast(pl.String) == str(industry_id))
    return df.filter(pl.col(TARGET).is_not_null())


def split(df: pl.DataFrame, seed: int = 42) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(train, validation, test) of already-filtered rows."""
    train, valid, test = splits.split_positions(df, FRACTIONS, seed)
    return df[train], df[valid], df[test]


def base_split(df: pl.DataFrame, industry_id: str, seed: int = 42) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, validation) of the base an industry model starts from: the global model's split of
    every labelled row, less the industry's validation and test rows in training and its test rows
    in validation, so the industry's early stopping and reported metrics are on rows the base never
    fitted, and its test rows on rows no part of the model ever saw."""
    rows = training_rows(df).with_row_index(_ROW)
    # the same rows, order and split as training_rows(df, industry_id): what holdout() returns
    _, own_valid, own_test = split(rows.filter(pl.col(catalog.INDUSTRY_ID).cast(pl.String) == str(industry_id)), seed)
    train_df, valid_df, _ = split(rows, seed)
    unseen = pl.concat([own_valid.get_column(_ROW), own_test.get_column(_ROW)])
    return (
        train_df.filter(~pl.col(_ROW).is_in(unseen.implode())).drop(_ROW),
        valid_df.filter(~pl.col(_ROW).is_in(own_test.get_column(_ROW).implode())).drop(_ROW),
    )


def holdout(df: pl.DataFrame, seed: int = 42, *, industry_id: str | None = None) -> pl.DataFrame:
    """Exactly the rows the trainer tested on and never trained on (same frame, same seed).

    For an industry model pass ``industry_id`` (or a frame already filtered to that industry).
    """
    return split(training_rows(df, industry_id), seed)[2]


def train(
    train_df: pl.DataFrame,
    valid_df: pl.DataFrame,
    features: Sequence[str],
    params: RiskParams = RiskParams(),
    base: TrainedRisk | None = None,
) -> TrainedRisk:
    """Fit with early stopping on ``valid_df``; pure (no files, no tracking).

    With ``base``, boosting continues from its trees (CatBoost ``init_model``), so the result is
    the base plus a correction learnt on ``train_df``, with its features and target range."""
    from catboost import CatBoostRegressor, Pool

    spec = base.spec if base is not None else tabular.feature_spec(train_df, features)
    model = CatBoostRegressor(
        loss_function="RMSE",
        iterations=params.iterations,
        learning_rate=params.learning_rate,
        depth=params.depth,
        random_seed=params.seed,
        thread_count=2,
        allow_writing_files=False,
        verbose=False,
    )
    cats = spec.categorical_positions
    model.fit(
        Pool(tabular.model_frame(train_df, spec), train_df.get_column(TARGET).to_numpy(), cat_features=cats),
        eval_set=Pool(tabular.model_frame(valid_df, spec), valid_df.get_column(TARGET).to_numpy(), cat_features=cats),
        early_stopping_rounds=params.early_stopping_rounds,
        use_best_model=True,
        init_model=None if base is None else base.model,
    )
    target = train_df.get_column(TARGET)
    low, high = float(target.min()), float(target.max())
    if base is not None:
        low, high = min(low, base.target_range[0]), max(high, base.target_range[1])
    return TrainedRisk(model, spec, (low, high), int(model.get_best_iteration() or 0))


FACTOR_UNITS = (
    "risk-score points (the units of target_risk): each contribution is the feature's exact SHAP value "
    "(CatBoost, path-dependent) in the regressor's output before clipping; positive raises the risk"
)


def score_frame(model: Any, spec: tabular.FeatureSpec, target_range: tuple[float, float], frame: pd.DataFrame) -> pd.DataFrame:
    """``risk_score`` (clipped to the training target's range) and ``top_factors`` per row."""
    from catboost import Pool

    x = tabular.model_frame(frame, spec)
    pool = Pool(x, cat_features=spec.categorical_positions)
    scores = np.clip(model.predict(pool), *target_range)
    shap = model.get_feature_importance(pool, type="ShapValues")[:, :-1]
    return pd.DataFrame({"risk_score": scores.astype("float64"), "top_factors": tabular.top_factors(shap, spec.columns, x)})


class RiskScoringModel(mlflow.pyfunc.PythonModel):
    """The served model; the CatBoost file is an artifact, the rest travels in the pickle.

    Serving speed: with every feature numeric (the endpoint server's float block), a few rows are
    scored from the model's split table (``models.oblivious_trees``, built and checked against
    CatBoost at load: CatBoost's predict has a fixed cost of about 0.25 ms a call) and more rows by
    CatBoost straight from the array on one thread (a ``Pool`` built from a pandas frame cost more
    than the prediction, and CatBoost's default of every core was slower on this shared 2-core
    machine); ``top_factors`` are CatBoost's exact SHAP values looked up in a per-leaf table built
    once at load (``models.explain``) instead of rebuilt on every call. ``params={"top_factors":
    False}`` returns ``risk_score`` alone.
    """

    def __init__(self, spec: tabular.FeatureSpec, target_range: tuple[float, float]) -> None:
        self.spec = spec
        self.target_range = target_range
        self._model: Any = None
        self._explain: Any = None
        self._trees: Any = None

    def load_context(self, context: Any) -> None:
        from catboost import CatBoostRegressor

        self._model = CatBoostRegressor()
        self._model.load_model(context.artifacts["model"])
        self._trees, self._explain = explain.fast_paths(self._model, list(self.spec.columns), self.spec.categorical_positions)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        x = tabular.float_block(model_input, self.spec)
        if x is None:
            x = tabular.model_frame(model_input, self.spec)
        if self._trees is not None and self._trees.takes(x):
            raw = self._trees.raw(x)
        elif isinstance(x, np.ndarray):
            raw = self._model.predict(x, thread_count=1)
        else:
            from catboost import Pool

            raw = self._model.predict(Pool(x, cat_features=self.spec.categorical_positions), thread_count=1)
        scores = np.clip(np.asarray(raw, dtype="float64"), *self.target_range)
        if not tabular.factors_requested(params):
            return tabular.score_column("risk_score", scores)
        if self._explain is None:  # unpickled without load_context
            self._trees, self._explain = explain.fast_paths(self._model, list(self.spec.columns), self.spec.categorical_positions)
        factors = tabular.top_factors(self._explain(x), self.spec.columns, x)
        return pd.DataFrame({"risk_score": scores, "top_factors": factors})

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None, "_explain": None, "_trees": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"_explain": None, "_trees": None, **state})



def save(trained: TrainedRisk, model_dir: Path, example: pl.DataFrame) -> None:
    """Write ``trained`` as an MLflow pyfunc model at ``model_dir``."""
    with tempfile.TemporaryDirectory(dir=model_dir.parent) as tmp:
        path = Path(tmp, "model.cbm")
        trained.model.save_model(str(path))
        input_example = example.select(trained.spec.columns).head(5).to_pandas()
        output_example = score_frame(trained.model, trained.spec, trained.target_range, input_example)
        pyfunc_support.save_pyfunc(
            model_dir,
            RiskScoringModel(trained.spec, trained.target_range),
            {"model": str(path)},
            input_example,
            ["catboost"],
            output_example=output_example,
            params=tabular.factors_param_schema(),
            metadata={"model_id": MODEL_ID, "target": TARGET, "features": trained.spec.to_dict(), "top_factors_units": FACTOR_UNITS},
        )


def evaluate(predictor: Any, df: pl.DataFrame) -> dict[str, float]:
    """RMSE, MAE and R2 of ``predictor.predict`` on the labelled rows of ``df``."""
    rows = df.filter(pl.col(TARGET).is_not_null())
    predicted = predictor.predict(tabular.pandas_input(rows, predictor))["risk_score"].to_numpy(dtype="float64")
    actual = rows.get_column(TARGET).to_numpy().astype("float64")
    return {
        "RMSE": float(root_mean_squared_error(actual, predicted)),
        "MAE": float(mean_absolute_error(actual, predicted)),
        "R2": float(r2_score(actual, predicted)),
    }


def fit(df: pl.DataFrame, features: list[str], args: argparse.Namespace, model_dir: Path) -> trainer.FitResult:
    from models.contracts import DataContractError

    if args.industry_id is not None and catalog.INDUSTRY_ID not in df.columns:
        raise DataContractError(
            args.training_data, catalog.INDUSTRY_ID, f"a column named {catalog.INDUSTRY_ID!r} (--industry-id given)", df.height
        )
    rows = training_rows(df, args.industry_id)
    if rows.height < MIN_ROWS:
        column, where = (catalog.INDUSTRY_ID, f" with {catalog.INDUSTRY_ID} == {args.industry_id!r}") if args.industry_id else (TARGET, "")
        raise DataContractError(
            args.training_data,
            column,
            f"at least {MIN_ROWS} rows{where} and {TARGET} not null (to train, validate and test)",
            MIN_ROWS - rows.height,
            [f"{rows.height} row(s)"],
        )
    train_df, valid_df, test_df = split(rows, args.seed)
    params = RiskParams(args.iterations, args.learning_rate, args.depth, args.early_stopping_rounds, args.seed)
    base, start = None, {}
    if args.industry_id is not None and not args.from_scratch:
        base_train, base_valid = base_split(df, args.industry_id, args.seed)
        base = train(base_train, base_valid, features, params)
        start = {"industry_start": "global", "base_best_iteration": base.best_iteration, "rows_train_base": base_train.height}
    elif args.industry_id is not None:
        start = {"industry_start": "scratch"}
    trained = train(train_df, valid_df, features, params, base)
    save(trained, model_dir, train_df)
    metrics = evaluate(mlflow.pyfunc.load_model(str(model_dir)), test_df)
    return trainer.FitResult(
        metrics,
        {
            "best_iteration": trained.best_iteration,
            "categorical_features": ",".join(trained.spec.categorical),
            "split": f"time:{splits.time_column(rows)}" if splits.time_column(rows) else "random",
            "rows_train": train_df.height,
            "rows_valid": valid_df.height,
            "rows_test": test_df.height,
            **start,
        },
    )


def build_parser() -> argparse.ArgumentParser:
    parser = trainer.build_parser(MODEL_ID, __doc__.splitlines()[0])
    defaults = RiskParams()
    parser.add_argument(
        "--industry-id",
        default=None,
        help="a model for this industry (column industry_id): the global model's trees plus a correction boosted, "
        "validated and tested on the industry's rows",
    )
    parser.add_argument(
        "--from-scratch", action="store_true", help="with --industry-id: fit the industry's rows alone, without the global base"
    )
    parser.add_argument("--iterations", type=trainer.positive_int, default=defaults.iterations)
    parser.add_argument("--learning-rate", type=trainer.positive_float, default=defaults.learning_rate)
    parser.add_argument("--depth", type=trainer.positive_int, default=defaults.depth)
    parser.add_argument("--early-stopping-rounds", type=trainer.positive_int, default=defaults.early_stopping_rounds)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return trainer.run(MODEL_ID, build_parser(), fit, catalog.RISK_SCORING_FEATURES, argv)


if __name__ == "__main__":
    # Run the importable copy of this module: what it pickles (the pyfunc model, joblib artifacts)
    # must name models.risk_scoring, not __main__, or it will not load in another process.
    from models.risk_scoring import main as _main

    raise SystemExit(_main())
