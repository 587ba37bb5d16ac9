"""Revenue forecast: NeuralProphet on one revenue series, daily, weekly or monthly.

``python -m models.revenue_forecast --training-data URI --output DIR [--horizon N]
[--holidays COLUMN] [--regressors LIST] [--epochs N] [--learning-rate X] [--batch-size N]
[--n-changepoints N] [--seasonality-mode additive|multiplicative] [--interval-level P]
[--refit|--no-refit]``

Input is ``(date, revenue)``, ``(ds, y)`` or ``(date, pipeline_value)`` (the first pair present),
one row per date. The frequency is read off the median gap between dates and sets the seasonality
(daily: weekly, and yearly once there is a year of data; weekly and monthly: yearly once there is
a year of data) and the default ``--horizon`` (30 days, 13 weeks, 3 months). ``--holidays COLUMN``
names a 0/1 holiday flag and ``--regressors`` (an alias of the shared ``--features``) other numeric columns;
both enter as NeuralProphet future regressors, so the served model needs them for future dates
too. The learning rate is fixed (NeuralProphet's learning-rate finder is skipped) and fits are
seeded, so a rerun gives the same model.

Two fits, by design. The first leaves out the last ``--horizon`` periods and forecasts them:
``holdout_MAPE``, ``holdout_RMSE`` and ``holdout_MAE`` say how the method forecasts data it has
not seen, and its absolute errors there set the width of the served interval (split conformal:
``yhat`` plus or minus their ``--interval-level`` conformal quantile, so ``yhat_lower`` and
``yhat_upper`` widen with real out-of-sample error rather than with in-sample fit). The saved
model is then refit on all rows, because a forecast should start from the latest data;
``MAPE``, ``RMSE`` and ``MAE`` are the runbook's in-sample figures of that saved model on every
training row. ``--no-refit`` saves the first fit instead (in-sample figures then cover the rows
it trained on), for a champion/challenger comparison on rows the candidate never saw.

MAPE is in percent (2.04 means 2.04%), over rows whose actual value is not zero.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl
from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, root_mean_squared_error

from models import pyfunc_support, trainer
from salesrisk import catalog

log = logging.getLogger("salesrisk.revenue_forecast")

MODEL_ID = "revenue_forecast"
DS, Y = "ds", "y"
OUTPUTS = ("ds", "yhat", "yhat_lower", "yhat_upper")
MIN_TRAIN_PERIODS = 10
MAX_GAP_PERIODS = 10  # longest hole between consecutive dates, in periods (a 10-day shutdown passes)
YEARLY_MIN_DAYS = 365  # one full cycle: with 91 Walmart weeks, yearly seasonality cut MAPE 13 -> 5


@dataclass(frozen=True)
class Frequency:
    """A data frequency and what follows from it."""

    name: str
    days: float  # typical gap between rows
    low: float  # accepted median gap, in days
    high: float
    horizon: int  # default held-out periods
    yearly_order: int  # Fourier terms of the yearly seasonality (once there is a year of data)
    weekly_order: int  # 0: no weekly seasonality
    seasonality_mode: str  # default of --seasonality-mode


# Modes chosen by rolling-origin validation inside training data only (benchmarks/README.md):
# daily revenue's weekday pattern scales with the level (weekends a fraction of weekdays), so
# multiplicative (generated lake, MAPE 30 -> 20); the weekly Walmart total is additive (3.3 vs 5.3).
FREQUENCIES: tuple[Frequency, ...] = (
    Frequency("daily", 1, 0.5, 1.5, horizon=30, yearly_order=10, weekly_order=3, seasonality_mode="multiplicative"),
    # 52 points a year carry sharp yearly shapes (holiday weeks): 26 terms, one per two weeks,
    # beat 8, 15 and 20 in rolling-origin validation inside the Walmart training weeks
    # (benchmarks/README.md, "Sequence models").
    Frequency("weekly", 7, 6, 8, horizon=13, yearly_order=26, weekly_order=0, seasonality_mode="additive"),
    Frequency("monthly", 30.44, 27, 32, horizon=3, yearly_order=5, weekly_order=0, seasonality_mode="additive"),
)


@dataclass(frozen=True)
class ForecastParams:
    horizon: int | None = None  # None: the frequency's default
    epochs: int = 100
    learning_rate: float = 0.1
    batch_size: int | None = None  # None: NeuralProphet's automatic choice
    n_changepoints: int = 10
    seasonality_mode: str | None = None  # None: the frequency's
    interval_level: float = 0.9
    refit: bool = True
    seed: int = 42


@dataclass
class TrainedForecast:
    """The model to save, with its interval half-width and the figures the runbook asks for."""

    model: Any  # neuralprophet.NeuralProphet
    frequency: Frequency
    regressors: tuple[str, ...]
    interval: float  # half-width of the served interval, in revenue units
    horizon: int
    metrics: dict[str, float]
    rows: dict[str, int] = field(default_factory=dict)


# --- input ------------------------------------------------------------------------------------


def value_pair(columns: Sequence[str]) -> tuple[str, str] | None:
    """The first accepted (date, value) column pair present, in the runbook's order."""
    return next((pair for pair in catalog.REVENUE_COLUMN_PAIRS if all(c in columns for c in pair)), None)


def _contract_error(source: str, column: str, expected: str, n_bad: int, examples: list[Any] | None = None) -> Exception:
    from models.contracts import DataContractError

    return DataContractError(source, column, expected, n_bad, examples or [])


def normalise(df: pl.DataFrame, source: str = "input") -> pl.DataFrame:
    """``df`` with its (date, value) pair as ``ds`` (datetime) and ``y`` (float), sorted by date.

    Other columns are kept (a holiday flag or regressors may be among them).
    """
    pair = value_pair(df.columns)
    if pair is None:
        options = " or ".join(f"({d}, {v})" for d, v in catalog.REVENUE_COLUMN_PAIRS)
        raise _contract_error(source, "date", f"a column pair {options} (present: {', '.join(df.columns)})", df.height)
    date_col, value_col = pair
    dtype = df.schema[date_col]
    ds = pl.col(date_col).str.to_datetime(strict=False) if dtype == pl.String else pl.col(date_col).cast(pl.Datetime("us"))
    others = [c for c in df.columns if c not in (date_col, value_col, DS, Y)]
    out = df.select(ds.alias(DS), pl.col(value_col).cast(pl.Float64).alias(Y), *others)
    bad = out.filter(pl.col(DS).is_null()).height
    if bad:
        raise _contract_error(source, date_col, "parseable dates", bad)
    return out.sort(DS)


def detect_frequency(ds: pl.Series, source: str = "input") -> Frequency:
    """Daily, weekly or monthly, from the median gap between consecutive dates."""
    gaps = ds.sort().diff().drop_nulls().dt.total_seconds() / 86_400
    if gaps.len() == 0:
        raise _contract_error(source, DS, "at least two dates", ds.len())
    median = float(gaps.median())
    for frequency in FREQUENCIES:
        if frequency.low <= median <= frequency.high:
            return frequency
    raise _contract_error(
        source, DS, f"daily, weekly or monthly dates (median gap {median:g} days)", ds.len(), ds.head(3).to_list()
    )


def check_gaps(ds: pl.Series, frequency: Frequency, source: str = "input", column: str = DS) -> None:
    """No hole longer than :data:`MAX_GAP_PERIODS` periods: closed days or a skipped week are
    fine (NeuralProphet fills them), a missing month of a daily series is a broken export, and
    the held-out horizon, counted in rows, would then not be the last ``horizon`` periods."""
    dates = ds.sort()
    gaps = dates.diff().dt.total_seconds() / 86_400
    limit = MAX_GAP_PERIODS * frequency.days
    bad = [i for i, gap in enumerate(gaps.to_list()) if gap is not None and gap > limit]
    if bad:
        examples = [f"{dates[i - 1].date()} -> {dates[i].date()} ({gaps[i]:g} days)" for i in bad[:3]]
        raise _contract_error(
            source,
            column,
            f"{frequency.name} dates with no gap longer than {MAX_GAP_PERIODS} periods ({limit:g} days)",
            len(bad),
            examples,
        )


def check_regressors(frame: pl.DataFrame, regressors: Sequence[str], source: str, holidays: str | None) -> None:
    """Regressors are numeric and complete; a holiday flag holds only 0 and 1."""
    for name in regressors:
        if name not in frame.columns:
            raise _contract_error(source, name, f"a numeric regressor column named {name!r} (missing)", frame.height)
        dtype = frame.schema[name]
        if not (dtype.is_numeric() or dtype == pl.Boolean):
            raise _contract_error(source, name, f"a numeric regressor column, got {dtype}", frame.height, frame.get_column(name).head(3).to_list())
        nulls = frame.get_column(name).null_count()
        if nulls:
            raise _contract_error(source, name, "no nulls", nulls)
    if holidays is not None:
        values = frame.get_column(holidays).cast(pl.Float64)
        bad = values.filter(~values.is_in([0.0, 1.0])).len()
        if bad:
            raise _contract_error(source, holidays, "a 0/1 holiday flag", bad, values.filter(~values.is_in([0.0, 1.0])).head(3).to_list())


def holdout_periods(frame: pl.DataFrame, horizon: int | None = None, source: str = "input") -> int:
    return horizon or detect_frequency(frame.get_column(DS), source).horizon


def holdout(df: pl.DataFrame, seed: int = 42, horizon: int | None = None) -> pl.DataFrame:
    """The last ``horizon`` periods (the frequency's default), which the first fit never saw.

    ``seed`` is accepted for the shared interface; a time split needs none. The rows come back with
    ``ds`` and ``y`` plus every other column, oldest first.
    """
    frame = normalise(df)
    return frame.tail(holdout_periods(frame, horizon))


# --- fitting ----------------------------------------------------------------------------------


@contextmanager
def _quiet() -> Iterator[None]:
    """NeuralProphet and pandas warn on every call about things that do not concern us (plotly
    is not installed; metrics "in normalized scale" that we do not collect; pandas deprecations)."""
    from salesrisk import runtime

    runtime.quiet_libraries()
    logging.getLogger("NP").setLevel(logging.ERROR)
    logging.getLogger("NP.plotly").setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _neuralprophet() -> Any:
    """Import NeuralProphet and undo what its import does to the whole process: its "NP" logger at
    INFO with a handler of its own, and every Python warning routed into that handler."""
    first = "neuralprophet" not in sys.modules
    with _quiet():
        import neuralprophet
    if first:
        np_log = logging.getLogger("NP")
        np_log.setLevel(logging.ERROR)
        logging.captureWarnings(False)
        warnings_log = logging.getLogger("py.warnings")
        for handler in [h for h in warnings_log.handlers if h in np_log.handlers]:
            warnings_log.removeHandler(handler)
    return neuralprophet


def _pandas(frame: pl.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    out = frame.select(columns).to_pandas()
    out[DS] = pd.to_datetime(out[DS])
    return out


def train(
    frame: pl.DataFrame,
    frequency: Frequency,
    regressors: Sequence[str] = (),
    params: ForecastParams = ForecastParams(),
) -> Any:
    """One seeded NeuralProphet fit on ``frame`` (``ds``, ``y``, regressors); pure (no files).

    Metrics collection is off, so lightning writes no logs, and there is no progress bar.
    """
    neuralprophet = _neuralprophet()
    span = (frame.get_column(DS).max() - frame.get_column(DS).min()).days
    yearly = frequency.yearly_order if span >= YEARLY_MIN_DAYS else False
    weekly = frequency.weekly_order if frequency.weekly_order and span >= 14 else False
    with _quiet():
        neuralprophet.set_random_seed(params.seed)
        model = neuralprophet.NeuralProphet(
            yearly_seasonality=yearly,
            weekly_seasonality=weekly,
            daily_seasonality=False,
            seasonality_mode=params.seasonality_mode or frequency.seasonality_mode,
            n_changepoints=params.n_changepoints,
            learning_rate=params.learning_rate,
            epochs=params.epochs,
            batch_size=params.batch_size,
            collect_metrics=False,
            accelerator="cpu",
        )
        for name in regressors:
            model.add_future_regressor(name)
        model.fit(_pandas(frame, [DS, Y, *regressors]), freq="auto", progress=None, checkpointing=False)
    dropped = sorted(set(regressors) - set(model_regressors(model)))
    if dropped:
        log.warning("regressors %s are constant over the fitted rows; NeuralProphet leaves them out", dropped)
    return model


def model_regressors(model: Any) -> tuple[str, ...]:
    """The future regressors a fitted model uses (NeuralProphet drops constant ones while fitting)."""
    return tuple(model.config_regressors.regressors or ())


def point_forecast(model: Any, frame: pd.DataFrame | pl.DataFrame) -> np.ndarray:
    """``yhat`` for each row of ``frame`` (``ds`` plus the model's regressors), in the frame's order."""
    regressors = model_regressors(model)
    data = frame if isinstance(frame, pd.DataFrame) else frame.to_pandas()
    missing = [c for c in (DS, *regressors) if c not in data.columns]
    if missing:
        raise KeyError(f"input is missing columns {missing}; expected {DS} and regressors {list(regressors)}")
    future = pd.DataFrame({DS: pd.to_datetime(data[DS]).to_numpy()})
    for name in regressors:
        future[name] = pd.to_numeric(data[name]).astype("float64").to_numpy()
    unique = future.drop_duplicates(DS).sort_values(DS).reset_index(drop=True)
    unique[Y] = np.nan
    with _quiet():
        predicted = model.predict(unique[[DS, Y, *regressors]])
    by_date = pd.Series(predicted["yhat1"].to_numpy(dtype="float64"), index=pd.to_datetime(predicted[DS]))
    by_date = by_date[~by_date.index.duplicated()]
    return by_date.reindex(future[DS]).to_numpy()


def scores(actual: np.ndarray, predicted: np.ndarray, prefix: str = "") -> dict[str, float]:
    """MAPE (percent, over non-zero actuals), RMSE and MAE."""
    nonzero = actual != 0
    mape = 100 * mean_absolute_percentage_error(actual[nonzero], predicted[nonzero]) if nonzero.any() else math.nan
    return {
        f"{prefix}MAPE": float(mape),
        f"{prefix}RMSE": float(root_mean_squared_error(actual, predicted)),
        f"{prefix}MAE": float(mean_absolute_error(actual, predicted)),
    }


def conformal_half_width(errors: np.ndarray, level: float) -> float:
    """Split-conformal quantile of absolute errors: covers ``level`` of new errors (exchangeable)."""
    n = len(errors)
    rank = math.ceil((n + 1) * level)
    ordered = np.sort(np.abs(errors))
    return float(ordered[min(rank, n) - 1])


def fit_forecast(
    frame: pl.DataFrame,
    regressors: Sequence[str] = (),
    params: ForecastParams = ForecastParams(),
    source: str = "input",
) -> TrainedForecast:
    """Hold out the last horizon, fit and score; then refit on everything (unless ``refit`` is off)."""
    frequency = detect_frequency(frame.get_column(DS), source)
    horizon = params.horizon or frequency.horizon
    if frame.height - horizon < max(MIN_TRAIN_PERIODS, 2 * horizon):
        raise _contract_error(
            source,
            "(rows)",
            f"at least {max(MIN_TRAIN_PERIODS, 2 * horizon) + horizon} {frequency.name} rows "
            f"(a held-out horizon of {horizon} and twice as many to fit on)",
            frame.height,
        )
    early_rows, held = frame.head(frame.height - horizon), frame.tail(horizon)
    early = train(early_rows, frequency, regressors, params)
    actual = held.get_column(Y).to_numpy()
    predicted = point_forecast(early, held)
    metrics = scores(actual, predicted, prefix="holdout_")
    interval = conformal_half_width(actual - predicted, params.interval_level)
    final, seen = (train(frame, frequency, regressors, params), frame) if params.refit else (early, early_rows)
    metrics = {**scores(seen.get_column(Y).to_numpy(), point_forecast(final, seen)), **metrics}
    return TrainedForecast(
        model=final,
        frequency=frequency,
        regressors=model_regressors(final),
        interval=interval,
        horizon=horizon,
        metrics=metrics,
        rows={"fit": seen.height, "holdout": held.height},
    )


# --- serving ----------------------------------------------------------------------------------


def forecast_frame(model: Any, interval: float, frame: pd.DataFrame) -> pd.DataFrame:
    """``ds``, ``yhat``, ``yhat_lower``, ``yhat_upper`` for each row of ``frame``, in its order."""
    yhat = point_forecast(model, frame)
    return pd.DataFrame(
        {
            "ds": pd.to_datetime(pd.DataFrame(frame)[DS]).to_numpy(),
            "yhat": yhat,
            "yhat_lower": yhat - interval,
            "yhat_upper": yhat + interval,
        }
    )


def load_neuralprophet(path: str) -> Any:
    """NeuralProphet's own ``load`` fails under torch 2.13 (weights-only loading): load the pickle
    explicitly, then rebuild the lightning trainer it was saved without.

    That is what ``restore_trainer()`` does, except that it always adds a progress bar (which then
    prints on every predict); putting ``enable_progress_bar`` in ``trainer_config`` instead breaks
    loading (stack notes), so the trainer is configured here with the bar off.
    """
    import torch

    neuralprophet = _neuralprophet()  # also registers the classes the pickle refers to
    with _quiet():
        model = torch.load(path, weights_only=False, map_location="cpu")
        model.trainer, _ = neuralprophet.utils.configure_trainer(
            config_train=model.config_train,
            config=model.trainer_config,
            metrics_logger=model.metrics_logger,
            early_stopping=model.early_stopping,
            accelerator="cpu",
            progress_bar_enabled=False,
            metrics_enabled=bool(model.metrics),
        )
    return model


class RevenueForecastModel(mlflow.pyfunc.PythonModel):
    """The served model: the NeuralProphet file is an artifact; the interval travels in the pickle."""

    def __init__(self, interval: float, frequency: str, level: float) -> None:
        self.interval = interval
        self.frequency = frequency
        self.level = level
        self._model: Any = None

    def load_context(self, context: Any) -> None:
        self._model = load_neuralprophet(context.artifacts["model"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return forecast_frame(self._model, self.interval, model_input)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}


def save(trained: TrainedForecast, model_dir: Path, example: pl.DataFrame, level: float) -> None:
    """Write ``trained`` as an MLflow pyfunc model at ``model_dir``."""
    neuralprophet = _neuralprophet()
    with tempfile.TemporaryDirectory(dir=model_dir.parent) as tmp:
        path = Path(tmp, "model.np")
        neuralprophet.save(trained.model, str(path))
        input_example = _pandas(example.tail(5), [DS, *trained.regressors])
        output_example = forecast_frame(trained.model, trained.interval, input_example)
        pyfunc_support.save_pyfunc(
            model_dir,
            RevenueForecastModel(trained.interval, trained.frequency.name, level),
            {"model": str(path)},
            input_example,
            ["torch", "neuralprophet", "pytorch-lightning"],
            output_example=output_example,
            metadata={
                "model_id": MODEL_ID,
                "frequency": trained.frequency.name,
                "regressors": list(trained.regressors),
                "interval": f"split conformal, level {level}, half-width {trained.interval:.6g}",
                "mape_unit": "percent",
            },
        )


# --- evaluation -------------------------------------------------------------------------------


def evaluate(predictor: Any, df: pl.DataFrame) -> dict[str, float]:
    """MAPE (percent), RMSE and MAE of ``predictor.predict`` against the actual values of ``df``.

    ``df`` is any accepted revenue frame (e.g. :func:`holdout`'s rows); every column but the value
    goes to the predictor, which picks the regressors it needs.
    """
    frame = normalise(df)
    answer = pd.DataFrame(predictor.predict(frame.drop(Y).to_pandas()))
    predicted = pd.Series(answer["yhat"].to_numpy(dtype="float64"), index=pd.to_datetime(answer["ds"]))
    predicted = predicted[~predicted.index.duplicated()]
    actual = frame.get_column(Y).to_numpy()
    return scores(actual, predicted.reindex(pd.to_datetime(frame.get_column(DS).to_pandas())).to_numpy())


# --- command line -----------------------------------------------------------------------------


def fit(df: pl.DataFrame, features: list[str], args: argparse.Namespace, model_dir: Path) -> trainer.FitResult:
    frame = normalise(df, args.training_data)
    pair = value_pair(df.columns) or (DS, Y)
    check_gaps(frame.get_column(DS), detect_frequency(frame.get_column(DS), args.training_data), args.training_data, pair[0])
    regressors = [f for f in dict.fromkeys([*features, *([args.holidays] if args.holidays else [])]) if f not in (*pair, DS, Y)]
    check_regressors(frame, regressors, args.training_data, args.holidays)
    params = ForecastParams(
        horizon=args.horizon,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        n_changepoints=args.n_changepoints,
        seasonality_mode=args.seasonality_mode,
        interval_level=args.interval_level,
        refit=args.refit,
        seed=args.seed,
    )
    trained = fit_forecast(frame, regressors, params, args.training_data)
    save(trained, model_dir, frame, params.interval_level)
    return trainer.FitResult(
        trained.metrics,
        {
            "frequency": trained.frequency.name,
            "horizon_used": trained.horizon,
            "regressors": ",".join(trained.regressors),
            "interval_half_width": trained.interval,
            "rows_fit": trained.rows["fit"],
            "rows_holdout": trained.rows["holdout"],
            "series": f"{pair[0]},{pair[1]}",
        },
    )


def _level(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise ValueError(text)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = trainer.build_parser(MODEL_ID, __doc__.splitlines()[0])
    defaults = ForecastParams()
    parser.add_argument(
        "--regressors",
        dest="features",
        default=None,
        help="comma-separated numeric future-regressor columns (same as --features; 'auto' for all)",
    )
    parser.add_argument("--holidays", default=None, help="a 0/1 holiday flag column, e.g. Holiday_Flag")
    parser.add_argument(
        "--horizon", type=trainer.positive_int, default=None, help="held-out last periods (default 30 daily, 13 weekly, 3 monthly)"
    )
    parser.add_argument("--epochs", type=trainer.positive_int, default=defaults.epochs)
    parser.add_argument("--learning-rate", type=trainer.positive_float, default=defaults.learning_rate)
    parser.add_argument("--batch-size", type=trainer.positive_int, default=None, help="default: NeuralProphet's choice")
    parser.add_argument("--n-changepoints", type=int, default=defaults.n_changepoints)
    parser.add_argument(
        "--seasonality-mode",
        choices=("additive", "multiplicative"),
        default=None,
        help="default: multiplicative for daily data, additive for weekly and monthly",
    )
    parser.add_argument("--interval-level", type=_level, default=defaults.interval_level)
    parser.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=defaults.refit,
        help="save a model refit on all rows (default) or the one fit without the held-out horizon",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return trainer.run(MODEL_ID, build_parser(), fit, (), argv)


if __name__ == "__main__":
    # Run the importable copy of this module: what it pickles (the pyfunc model) must name
    # models.revenue_forecast, not __main__, or it will not load in another process.
    from models.revenue_forecast import main as _main

    raise SystemExit(_main())
