"""Revenue forecast: one revenue series, daily, weekly, monthly or quarterly, served by the method
that forecast it best on rolling-origin backtests inside this very training run.

``python -m models.revenue_forecast --training-data URI --output DIR [--horizon N]
[--holidays COLUMN] [--regressors LIST] [--epochs N] [--learning-rate X] [--batch-size N]
[--n-changepoints N] [--seasonality-mode additive|multiplicative] [--interval-level P]
[--origins N] [--calibration-origins N] [--refit|--no-refit]``

Input is ``(date, revenue)``, ``(ds, y)`` or ``(date, pipeline_value)`` (the first pair present),
one row per period. The frequency is read off the median gap between dates (daily, weekly,
monthly or quarterly; anything else is refused naming the file, the column and the gap found) and
is passed to NeuralProphet explicitly (its ``freq="auto"`` fails on month-start dates). It sets
the horizon (28 days, 13 weeks, 12 months, 8 quarters; ``--horizon`` overrides) and the season
(7, 52, 12, 4 periods). A missing period or two is filled by linear interpolation.

**Choosing the served method.** NeuralProphet, the runbook's model, is always trained and
scored. Beside it, statsforecast's AutoETS, AutoARIMA, SeasonalNaive, MSTL (for seasons ETS cannot
hold) and two plain-mean combinations are scored on the same rolling origins (models/backtest.py:
up to ``--origins`` cut-offs half a horizon apart, the last leaving out exactly the final
horizon), with the naive and seasonal-naive forecasts as baselines. The method with the lowest
backtest MAPE serves; which one and why is logged (params ``served_model``,
``selection_reason``; metrics ``backtest_<method>_MAPE``). Only NeuralProphet uses ``--holidays``
and ``--regressors``; the statistical methods forecast from the series alone.

**Figures.** ``MAPE``, ``RMSE`` and ``MAE`` (the runbook's names) are the served method's
figures on the final horizon, forecast from the fit that never saw it; ``backtest_*`` are over all
origins, with ``_hNN`` per horizon step, and ``naive_*`` / ``seasonal_naive_*`` /
``neuralprophet_*`` the same for the baselines and the runbook's model. MAPE is in percent (2.04
means 2.04 %), over non-zero actuals. A plot of the backtest travels with the model
(``model/artifacts/backtest.png``).

**Intervals.** ``yhat_lower`` / ``yhat_upper`` are ``yhat`` minus / plus a half-width per
horizon step: normalised split conformal at ``--interval-level`` (models/backtest.py) on the
chosen method's backtest errors, so they widen with the step. A statistical method is refit on 12
calibration origins a quarter horizon apart (its selection origins among them) for these errors:
five origins are five error paths, too few for a 90 % quantile, and one unusual stretch among
them decides the width. A method with NeuralProphet keeps its selection origins (a NeuralProphet
refit costs far more). For a positive series the errors are taken relative to the forecast (the
half-width is a share of ``yhat``), since revenue's error grows with its level.
``interval_coverage`` is their coverage on the backtest with each origin left out of its own
calibration; ``interval_coverage_no_shared_periods`` leaves out with it every origin whose window
shares a period with its window, a stricter figure (neighbouring origins' errors on the same
periods are alike, which flatters the first).

**What the gate compares (why holdout() is fair).** The saved model holds two fits of the chosen
method: the served one, refit on every row so forecasts start from the latest data, and the one
from the last backtest origin, trained on all but the final horizon. A date after the training
data is forecast by the first; a date inside the training data by the second (a forecast made
before that date's horizon, never an in-sample echo). :func:`holdout` returns the final horizon,
so :func:`evaluate` on it scores forecasts from a fit that did not see those rows, and
reproduces ``MAPE``/``RMSE``/``MAE``. A champion trained on older data answers the same window
from its own fits, which ended earlier still: both are scored out of sample on the same rows.
``--no-refit`` serves the last-origin fit for future dates too.
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl

from models import backtest, pyfunc_support, trainer
from models.forecasters import (
    DS,
    FREQUENCIES,
    Y,
    Forecaster,
    Frequency,
    Future,
    Grid,
    MeanForecaster,
    NeuralProphetForecaster,
    Series,
    StatsForecaster,
    import_neuralprophet,
    statistical,
)
from salesrisk import catalog

log = logging.getLogger("salesrisk.revenue_forecast")

MODEL_ID = "revenue_forecast"
OUTPUTS = ("ds", "yhat", "yhat_lower", "yhat_upper")
MIN_TRAIN_PERIODS = 10
MAX_GAP_PERIODS = 10  # longest hole between consecutive dates, in periods (a 10-day shutdown passes)
BASELINES = ("naive", "seasonal_naive")
STATISTICAL = ("auto_ets", "auto_arima", "seasonal_naive", "mstl")
COMBINATIONS = (("auto_ets", "auto_arima"), ("neuralprophet", "auto_ets", "auto_arima"))


@dataclass(frozen=True)
class ForecastParams:
    horizon: int | None = None  # None: the frequency's default
    # 50, not 100, halves NeuralProphet's fits. Measured on benchmarks/forecast_quality.py's cases:
    # its backtest MAPE moved by at most 0.9 points either way (the mean over 45 Walmart stores by
    # 0.01), except the Walmart chain total (2.16 -> 2.40, still served); one store of 45 changed
    # method, and no verdict changed.
    epochs: int = 50
    learning_rate: float = 0.1
    batch_size: int | None = None  # None: NeuralProphet's automatic choice
    n_changepoints: int = 10
    seasonality_mode: str | None = None  # None: the frequency's
    interval_level: float = 0.9
    refit: bool = True
    seed: int = 42
    origins: int = backtest.N_ORIGINS
    calibration_origins: int = backtest.N_CALIBRATION_ORIGINS


@dataclass
class TrainedForecast:
    """The fits to save, their interval half-widths and the figures to log."""

    served: Forecaster  # answers dates after the training data
    gate: Forecaster  # the last origin's fit: answers dates inside the training data
    grid: Grid
    end: int  # last training period (ordinal)
    gate_end: int  # last period the gate fit trained on
    widths: np.ndarray  # half-width per horizon step (a share of yhat when ``relative``)
    relative: bool
    horizon: int
    metrics: dict[str, float]
    regressors: tuple[str, ...]
    backtests: dict[str, backtest.Backtest]
    reason: str
    calibration: backtest.Backtest | None = None  # the served method's errors the widths rest on
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def frequency(self) -> Frequency:
        return self.grid.frequency

    @property
    def served_name(self) -> str:
        return self.served.name


# --- input ------------------------------------------------------------------------------------
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


def detect_frequency(ds: pl.Series, source: str = "input", column: str = DS) -> Frequency:
    """Daily, weekly, monthly or quarterly, from the median gap between consecutive dates."""
    gaps = ds.sort().diff().drop_nulls().dt.total_seconds() / 86_400
    if gaps.len() == 0:
        raise _contract_error(source, column, "at least two dates", ds.len())
    median = float(gaps.median())
    for frequency in FREQUENCIES:
        if frequency.low <= median <= frequency.high:
            return frequency
    raise _contract_error(
        source,
        column,
        f"daily, weekly, monthly or quarterly dates (median gap found: {median:g} days)",
        ds.len(),
        [str(d)[:10] for d in ds.head(3).to_list()],
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
    """The last ``horizon`` periods (the frequency's default): the rows the saved model answers
    from its last-origin fit, which never saw them (see the module docstring).

    ``seed`` is accepted for the shared interface; a time split needs none. The rows come back with
    ``ds`` and ``y`` plus every other column, oldest first.
    """
    frame = normalise(df)
    return frame.tail(holdout_periods(frame, horizon))


def regular_series(frame: pl.DataFrame, frequency: Frequency, regressors: Sequence[str], source: str, column: str = DS) -> Series:
    """``frame`` on consecutive periods: two rows in one period are refused, a missing period is
    filled by linear interpolation (check_gaps bounds how many)."""
    pdf = frame.select(DS, Y, *regressors).to_pandas()
    grid = Grid.for_dates(frequency, pdf[DS])
    ordinals = grid.ordinals(pdf[DS])
    duplicated = pd.Series(ordinals).duplicated(keep=False).to_numpy()
    if duplicated.any():
        examples = [str(d)[:10] for d in pdf[DS][duplicated].head(4)]
        raise _contract_error(source, column, f"one row per {frequency.name} period", int(duplicated.sum()), examples)
    full = np.arange(ordinals.min(), ordinals.max() + 1)
    values = pdf.drop(columns=[DS]).set_index(ordinals).astype("float64").reindex(full).interpolate(limit_direction="both")
    return Series(grid, int(full[0]), values[Y].to_numpy(), {name: values[name].to_numpy() for name in regressors})


# --- choosing the served method ---------------------------------------------------------------


def _makers(frequency: Frequency, n_train: int, params: ForecastParams, n_series: int) -> dict[str, Callable[[], Forecaster]]:
    """A fresh, unfitted forecaster per method name, for the methods ``n_train`` rows of this
    ``n_series``-row series can carry."""
    makers: dict[str, Callable[[], Forecaster]] = {
        "neuralprophet": lambda: NeuralProphetForecaster(
            params.epochs, params.learning_rate, params.batch_size, params.n_changepoints, params.seasonality_mode, params.seed
        )
    }
    for name in dict.fromkeys([*BASELINES, *STATISTICAL]):
        if name == "mstl" and frequency.season_length <= 24:
            continue  # ETS and ARIMA already hold seasons this short
        if statistical(name, frequency, n_train, n_series) is not None:
            makers[name] = lambda name=name: statistical(name, frequency, n_train, n_series)  # type: ignore[misc]
    return makers


def _combine(parts: Sequence[backtest.Backtest]) -> backtest.Backtest:
    """The plain mean of methods already backtested on the same origins (no refit needed)."""
    last_fit = MeanForecaster([p.last_fit for p in parts])
    return backtest.Backtest(last_fit.name, parts[0].actual, np.mean([p.predicted for p in parts], axis=0), last_fit, parts[0].cuts)


def run_backtests(series: Series, horizon: int, params: ForecastParams, source: str = "input") -> dict[str, backtest.Backtest]:
    """Every candidate and baseline on the same rolling origins."""
    frequency = series.grid.frequency
    min_train = _min_train(horizon)
    cuts = backtest.origins(len(series.y), horizon, min_train, params.origins)
    if not cuts:
        raise _contract_error(
            source,
            "(rows)",
            f"at least {min_train + horizon} {frequency.name} rows "
            f"(a backtest horizon of {horizon} and twice as many to fit on)",
            len(series.y),
        )
    results: dict[str, backtest.Backtest] = {}
    for name, make in _makers(frequency, cuts[0], params, len(series.y)).items():
        results[name] = backtest.run(make, series, cuts, horizon)
    for members in COMBINATIONS:
        if all(m in results for m in members):
            combined = _combine([results[m] for m in members])
            results[combined.name] = combined
    return results


def _min_train(horizon: int) -> int:
    return max(MIN_TRAIN_PERIODS, 2 * horizon)


def calibration_backtest(name: str, results: dict[str, backtest.Backtest], series: Series, horizon: int, params: ForecastParams) -> backtest.Backtest:
    """The chosen method's backtest on the calibration origins (a quarter horizon apart, see
    ``backtest.calibration_origins``): its selection origins plus refits at the others.

    Methods with NeuralProphet keep their selection origins only: a NeuralProphet refit costs
    seconds to minutes, a statistical one milliseconds to a second. Origins too short for the
    served configuration (its season needs two cycles) are left out, so every error comes from
    the model that serves.
    """
    chosen = results[name]
    if "neuralprophet" in name or params.calibration_origins <= len(chosen.cuts):
        return chosen
    frequency = series.grid.frequency
    season = frequency.season_length
    first = min(chosen.cuts)

    def same_shape(cut: int) -> bool:
        return (cut // season >= 2) == (first // season >= 2) and (cut // season >= 1) == (first // season >= 1)

    wanted = backtest.calibration_origins(len(series.y), horizon, _min_train(horizon), params.calibration_origins)
    extra = [cut for cut in wanted if cut not in chosen.cuts and same_shape(cut)]
    if not extra:
        return chosen
    makers = _makers(frequency, first, params, len(series.y))
    return backtest.merge(chosen, backtest.run(lambda: _fresh(name, makers), series, extra, horizon))


def choose(results: dict[str, backtest.Backtest]) -> tuple[str, str]:
    """The method with the lowest backtest MAPE among the servable ones, and why, in one line."""
    servable = {name: backtest.ranking_score(b) for name, b in results.items() if name != "naive"}
    best = min(servable, key=lambda name: (not math.isfinite(servable[name]), servable[name]))
    ranked = sorted(servable.items(), key=lambda item: item[1])
    listing = ", ".join(f"{name} {score:.3g}" for name, score in ranked)
    return best, f"lowest backtest MAPE (%) over {results[best].actual.shape[0]} origins: {listing}"


def _fresh(name: str, makers: dict[str, Callable[[], Forecaster]]) -> Forecaster:
    if name.startswith("mean("):
        return MeanForecaster([makers[m]() for m in name[5:-1].split(",")])
    return makers[name]()


def fit_forecast(
    frame: pl.DataFrame,
    regressors: Sequence[str] = (),
    params: ForecastParams = ForecastParams(),
    source: str = "input",
    column: str = DS,
) -> TrainedForecast:
    """Backtest every method, choose one, size its intervals, and refit it on every row."""
    frequency = detect_frequency(frame.get_column(DS), source, column)
    horizon = params.horizon or frequency.horizon
    series = regular_series(frame, frequency, regressors, source, column)
    results = run_backtests(series, horizon, params, source)
    name, reason = choose(results)
    chosen = results[name]
    relative = bool((series.y > 0).all())
    calibration = calibration_backtest(name, results, series, horizon, params)
    errors = backtest.relative(calibration.errors, calibration.predicted) if relative else calibration.errors
    widths = backtest.step_widths(errors, params.interval_level)
    gate_end = series.end - horizon
    served = _fresh(name, _makers(frequency, len(series.y), params, len(series.y))).fit(series) if params.refit else chosen.last_fit
    metrics = {
        **backtest.scores(chosen.actual[-1], chosen.predicted[-1]),
        **backtest.scores(chosen.actual, chosen.predicted, prefix="backtest_"),
        **backtest.per_step(chosen, "backtest_"),
        "interval_coverage": backtest.coverage(errors, params.interval_level),
        "interval_coverage_no_shared_periods": backtest.coverage(errors, params.interval_level, calibration.cuts, horizon),
        "interval_calibration_origins": float(len(calibration.cuts)),
        **{f"interval_half_width_h{k + 1:02d}": float(w) for k, w in enumerate(widths)},
    }
    for baseline in ("naive", "seasonal_naive", "neuralprophet"):
        if baseline in results:
            metrics |= backtest.scores(results[baseline].actual, results[baseline].predicted, prefix=f"{baseline}_")
            metrics |= backtest.per_step(results[baseline], f"{baseline}_")
    for other, result in results.items():
        metrics[f"backtest_{_metric_name(other)}_MAPE"] = backtest.ranking_score(result)
    used = tuple(r for nps in _neuralprophets(served) for r in nps.regressors)
    return TrainedForecast(
        served=served,
        gate=chosen.last_fit,
        grid=series.grid,
        end=series.end if params.refit else gate_end,
        gate_end=gate_end,
        widths=widths,
        relative=relative,
        horizon=horizon,
        metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
        regressors=tuple(dict.fromkeys(used)),
        backtests=results,
        reason=reason,
        calibration=calibration,
        rows={"fit": len(series.y) if params.refit else len(series.y) - horizon, "holdout": horizon, "origins": chosen.actual.shape[0]},
    )


def _metric_name(method: str) -> str:
    """``mean(auto_ets,auto_arima)`` -> ``mean_auto_ets_auto_arima`` (MLflow metric names)."""
    return method.replace("(", "_").replace(")", "").replace(",", "_")


def _neuralprophets(forecaster: Forecaster) -> list[NeuralProphetForecaster]:
    if isinstance(forecaster, NeuralProphetForecaster):
        return [forecaster]
    if isinstance(forecaster, MeanForecaster):
        return [n for m in forecaster.members for n in _neuralprophets(m)]
    return []


# --- serving ----------------------------------------------------------------------------------


def forecast_frame(trained: TrainedForecast | RevenueForecastModel, frame: pd.DataFrame) -> pd.DataFrame:
    """``ds``, ``yhat``, ``yhat_lower``, ``yhat_upper`` for each row of ``frame``, in its order.

    Dates after the training data come from the served fit, dates inside it from the last-origin
    fit; the half-width is that of the date's step ahead of the fit that answers it.
    """
    data = pd.DataFrame(frame)
    regressors = trained.regressors
    missing = [c for c in (DS, *regressors) if c not in data.columns]
    if missing:
        raise KeyError(f"input is missing columns {missing}; expected {DS} and regressors {list(regressors)}")
    dates = pd.to_datetime(data[DS])
    ordinals = trained.grid.ordinals(dates)
    values = {name: pd.to_numeric(data[name]).astype("float64").to_numpy() for name in regressors}
    yhat = np.full(len(ordinals), np.nan)
    steps = np.zeros(len(ordinals), dtype=np.int64)
    after = ordinals > trained.end
    for mask, fitted, end in ((after, trained.served, trained.end), (~after, trained.gate, trained.gate_end)):
        if mask.any():
            yhat[mask] = fitted.predict(Future(ordinals[mask], {k: v[mask] for k, v in values.items()}))
            steps[mask] = ordinals[mask] - end
    half = backtest.widths_for(steps, np.asarray(trained.widths))
    if trained.relative:
        half = half * np.abs(yhat)
    return pd.DataFrame({"ds": dates.to_numpy(), "yhat": yhat, "yhat_lower": yhat - half, "yhat_upper": yhat + half})


def load_neuralprophet(path: str) -> Any:
    """NeuralProphet's own ``load`` fails under torch 2.13 (weights-only loading): load the pickle
    explicitly, then rebuild the lightning trainer it was saved without.

    That is what ``restore_trainer()`` does, except that it always adds a progress bar (which then
    prints on every predict); putting ``enable_progress_bar`` in ``trainer_config`` instead breaks
    loading (stack notes), so the trainer is configured here with the bar off.
    """
    import torch

    from models.forecasters import _quiet

    neuralprophet = import_neuralprophet()  # also registers the classes the pickle refers to
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
    """The served model: both fits travel in the pickle, NeuralProphet's torch models as artifacts
    (``np_served_0``, ``np_gate_0``, ...) reattached on load."""

    def __init__(self, trained: TrainedForecast, level: float) -> None:
        self.served, self.gate = trained.served, trained.gate
        self.grid, self.end, self.gate_end = trained.grid, trained.end, trained.gate_end
        self.widths = np.asarray(trained.widths, dtype="float64")
        self.relative = trained.relative
        self.regressors = trained.regressors
        self.frequency = trained.frequency.name
        self.method = trained.served_name
        self.level = level

    @property
    def _model(self) -> Any:
        """The served NeuralProphet model when NeuralProphet alone serves (models/reports.py plots
        its components), else ``None``."""
        return self.served.model if isinstance(self.served, NeuralProphetForecaster) else None

    def load_context(self, context: Any) -> None:
        for role, fitted in (("served", self.served), ("gate", self.gate)):
            for i, nps in enumerate(_neuralprophets(fitted)):
                nps.model = load_neuralprophet(context.artifacts[f"np_{role}_{i}"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return forecast_frame(self, model_input)


def backtest_plot(trained: TrainedForecast, path: Path) -> Path:
    """MAPE per horizon step of the served method, NeuralProphet and the two baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(8, 4.5))
    names = dict.fromkeys([trained.served_name, "neuralprophet", "seasonal_naive", "naive"])
    for name in names:
        result = trained.backtests.get(name)
        if result is None:
            continue
        steps = np.arange(1, result.actual.shape[1] + 1)
        mape = [backtest.scores(result.actual[:, k], result.predicted[:, k])["MAPE"] for k in range(len(steps))]
        ax.plot(steps, mape, marker="o", label=f"{name}{' (served)' if name == trained.served_name else ''}")
    ax.set_xlabel(f"horizon step ({trained.frequency.name} periods ahead)")
    ax.set_ylabel("MAPE (%)")
    ax.set_title(f"Rolling-origin backtest, {trained.rows.get('origins', '?')} origins")
    ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def save(trained: TrainedForecast, model_dir: Path, example: pl.DataFrame, level: float) -> None:
    """Write ``trained`` as an MLflow pyfunc model at ``model_dir``."""
    with tempfile.TemporaryDirectory(dir=model_dir.parent) as tmp:
        artifacts: dict[str, str] = {"backtest_plot": str(backtest_plot(trained, Path(tmp, "backtest.png")))}
        uses_np = False
        for role, fitted in (("served", trained.served), ("gate", trained.gate)):
            for i, nps in enumerate(_neuralprophets(fitted)):
                path = Path(tmp, f"np_{role}_{i}.np")
                import_neuralprophet().save(nps.model, str(path))
                artifacts[f"np_{role}_{i}"] = str(path)
                uses_np = True
        python_model = RevenueForecastModel(trained, level)
        input_example = example.tail(5).select(DS, *trained.regressors).to_pandas()
        input_example[DS] = pd.to_datetime(input_example[DS])
        pyfunc_support.save_pyfunc(
            model_dir,
            python_model,
            artifacts,
            input_example,
            [*(["torch", "neuralprophet", "pytorch-lightning"] if uses_np else []), "statsforecast"],
            output_example=forecast_frame(trained, input_example),
            metadata={
                "model_id": MODEL_ID,
                "frequency": trained.frequency.name,
                "served_model": trained.served_name,
                "regressors": list(trained.regressors),
                "interval": f"normalised split conformal per horizon step, level {level}",
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
    return backtest.scores(actual, predicted.reindex(pd.to_datetime(frame.get_column(DS).to_pandas())).to_numpy())


scores = backtest.scores
conformal_half_width = backtest.conformal_quantile


# --- command line -----------------------------------------------------------------------------


def fit(df: pl.DataFrame, features: list[str], args: argparse.Namespace, model_dir: Path) -> trainer.FitResult:
    frame = normalise(df, args.training_data)
    pair = value_pair(df.columns) or (DS, Y)
    check_gaps(frame.get_column(DS), detect_frequency(frame.get_column(DS), args.training_data, pair[0]), args.training_data, pair[0])
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
        origins=args.origins,
        calibration_origins=args.calibration_origins,
    )
    trained = fit_forecast(frame, regressors, params, args.training_data, pair[0])
    save(trained, model_dir, frame, params.interval_level)
    log.info("%s serves: %s", trained.served_name, trained.reason)
    return trainer.FitResult(
        trained.metrics,
        {
            "frequency": trained.frequency.name,
            "pandas_frequency": trained.grid.np_freq,
            "horizon_used": trained.horizon,
            "interval_scale": "share of yhat" if trained.relative else "revenue units",
            "served_model": trained.served_name,
            "selection_reason": trained.reason,
            "regressors": ",".join(trained.regressors),
            "rows_fit": trained.rows["fit"],
            "rows_holdout": trained.rows["holdout"],
            "backtest_origins": trained.rows["origins"],
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
        help="comma-separated numeric future-regressor columns for NeuralProphet (same as --features; 'auto' for all)",
    )
    parser.add_argument("--holidays", default=None, help="a 0/1 holiday flag column, e.g. Holiday_Flag")
    parser.add_argument(
        "--horizon",
        type=trainer.positive_int,
        default=None,
        help="backtest horizon and held-out last periods (default 28 daily, 13 weekly, 12 monthly, 8 quarterly)",
    )
    parser.add_argument("--epochs", type=trainer.positive_int, default=defaults.epochs)
    parser.add_argument("--learning-rate", type=trainer.positive_float, default=defaults.learning_rate)
    parser.add_argument("--batch-size", type=trainer.positive_int, default=None, help="default: NeuralProphet's choice")
    parser.add_argument("--n-changepoints", type=int, default=defaults.n_changepoints)
    parser.add_argument(
        "--seasonality-mode",
        choices=("additive", "multiplicative"),
        default=None,
        help="NeuralProphet's; default: multiplicative for daily data, additive otherwise",
    )
    parser.add_argument("--interval-level", type=_level, default=defaults.interval_level)
    parser.add_argument("--origins", type=trainer.positive_int, default=defaults.origins, help="backtest origins (at most)")
    parser.add_argument(
        "--calibration-origins",
        type=trainer.positive_int,
        default=defaults.calibration_origins,
        help="origins a quarter horizon apart that size a statistical method's interval (at most; "
        "each is one more refit of it; at or below --origins: the selection origins alone)",
    )
    parser.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=defaults.refit,
        help="serve future dates from a fit on all rows (default) or from the last backtest origin's fit",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return trainer.run(MODEL_ID, build_parser(), fit, (), argv)


if __name__ == "__main__":
    # Run the importable copy of this module: what it pickles (the pyfunc model) must name
    # models.revenue_forecast, not __main__, or it will not load in another process.
    from models.revenue_forecast import main as _main

    raise SystemExit(_main())
