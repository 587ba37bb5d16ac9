"""The forecasters a revenue series can be served by, on one regular grid of periods.

Every forecaster sees the series as consecutive periods (days, weeks anchored on the data's
weekday, months, quarters), numbered by pandas ``Period`` ordinals, so "three steps after the
last training period" means the same thing to NeuralProphet and to the statistical models, and a
requested date is answered by the period it falls in.

NeuralProphet is the runbook's model; the statistical ones are statsforecast's (AutoETS,
AutoARIMA, SeasonalNaive, Naive, MSTL) and a combination is the plain mean of its members, the
combination the forecasting literature finds hard to beat (M3/M4). Which one serves is not
decided here: models/backtest.py scores them on rolling origins and the revenue trainer
picks the best.
"""

from __future__ import annotations

import logging
import sys
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("salesrisk.forecasters")

DS, Y = "ds", "y"


@dataclass(frozen=True)
class Frequency:
    """A data frequency and what follows from it."""

    name: str
    days: float  # typical gap between rows
    low: float  # accepted median gap, in days
    high: float
    horizon: int  # forecast horizon of the backtest (and the default held-out periods)
    season_length: int  # periods per seasonal cycle for the statistical models
    yearly_order: int  # NeuralProphet's Fourier terms of the yearly seasonality
    weekly_order: int  # 0: no weekly seasonality
    seasonality_mode: str  # NeuralProphet's default seasonality mode


# Horizons are the usual ones for each frequency (four weeks, a quarter, a year, two years).
FREQUENCIES: tuple[Frequency, ...] = (
    Frequency("daily", 1, 0.5, 1.5, horizon=28, season_length=7, yearly_order=10, weekly_order=3, seasonality_mode="multiplicative"),
    Frequency("weekly", 7, 6, 8, horizon=13, season_length=52, yearly_order=26, weekly_order=0, seasonality_mode="additive"),
    Frequency("monthly", 30.44, 27, 32, horizon=12, season_length=12, yearly_order=5, weekly_order=0, seasonality_mode="additive"),
    Frequency("quarterly", 91.3, 85, 95, horizon=8, season_length=4, yearly_order=2, weekly_order=0, seasonality_mode="additive"),
)
BY_NAME = {f.name: f for f in FREQUENCIES}
ETS_MAX_SEASON = 24  # statsforecast's ETS fits no season longer than this


@dataclass(frozen=True)
class Grid:
    """A frequency with its pandas spellings: ``period`` numbers the rows, ``np_freq`` is what
    NeuralProphet is told (its ``freq="auto"`` fails on month-start dates)."""

    frequency: Frequency
    period: str  # "D", "W-FRI", "M", "Q-DEC"
    np_freq: str  # "D", "W-FRI", "MS", "QS-JAN"

    @classmethod
    def for_dates(cls, frequency: Frequency, dates: pd.Series) -> Grid:
        if frequency.name == "daily":
            return cls(frequency, "D", "D")
        if frequency.name == "weekly":
            weekday = pd.to_datetime(dates).dt.day_name().str[:3].str.upper().mode().iloc[0]
            return cls(frequency, f"W-{weekday}", f"W-{weekday}")
        if frequency.name == "monthly":
            return cls(frequency, "M", "MS")
        return cls(frequency, "Q-DEC", "QS-JAN")

    def ordinals(self, dates: Any) -> np.ndarray:
        """The period number of each date."""
        return pd.PeriodIndex(pd.to_datetime(pd.Series(dates)).dt.to_period(self.period)).asi8.astype(np.int64)

    def timestamps(self, ordinals: np.ndarray) -> pd.DatetimeIndex:
        """One date per period, on NeuralProphet's ``np_freq``: the anchor day of a week, the first
        day of a month or quarter."""
        periods = pd.PeriodIndex.from_ordinals(np.asarray(ordinals, dtype=np.int64), freq=self.period)
        if self.frequency.name == "weekly":
            return periods.to_timestamp(how="end").normalize()
        return periods.to_timestamp(how="start")


@dataclass
class Series:
    """A regular series: consecutive periods ``start .. start + len(y) - 1``, with regressors."""

    grid: Grid
    start: int
    y: np.ndarray
    regressors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.start + len(self.y) - 1

    def head(self, n: int) -> Series:
        return Series(self.grid, self.start, self.y[:n], {k: v[:n] for k, v in self.regressors.items()})

    def slice(self, first: int, stop: int) -> Series:
        """Rows ``first .. stop - 1`` (positions)."""
        return Series(
            self.grid, self.start + first, self.y[first:stop], {k: v[first:stop] for k, v in self.regressors.items()}
        )

    def frame(self) -> pd.DataFrame:
        ordinals = np.arange(self.start, self.end + 1)
        return pd.DataFrame({DS: self.grid.timestamps(ordinals), Y: self.y, **self.regressors})


@dataclass
class Future:
    """The periods to forecast, as ordinals, with the regressors' values there."""

    ordinals: np.ndarray
    regressors: dict[str, np.ndarray] = field(default_factory=dict)


# --- the forecasters --------------------------------------------------------------------------


class Forecaster(ABC):
    """Fit on a :class:`Series`; forecast any period (after the training end: a forecast; at or
    before it: the in-sample fitted value, NaN where the method has none)."""

    name: str = ""

    @abstractmethod
    def fit(self, series: Series) -> Forecaster: ...

    @abstractmethod
    def predict(self, future: Future) -> np.ndarray: ...


class StatsForecaster(Forecaster):
    """One statsforecast model on the target alone (regressors are not used)."""

    def __init__(self, name: str, model: Any) -> None:
        self.name = name
        self.model = model
        self.end = 0
        self.n = 0

    def fit(self, series: Series) -> StatsForecaster:
        with _quiet():
            self.model = self.model.fit(series.y.astype("float64"))
        self.end, self.n = series.end, len(series.y)
        return self

    def predict(self, future: Future) -> np.ndarray:
        steps = np.asarray(future.ordinals, dtype=np.int64) - self.end
        out = np.full(len(steps), np.nan)
        ahead = steps > 0
        with _quiet():
            if ahead.any():
                mean = np.asarray(self.model.predict(h=int(steps.max()))["mean"], dtype="float64")
                out[ahead] = mean[steps[ahead] - 1]
            inside = (~ahead) & (steps > -self.n)
            if inside.any():
                fitted = np.asarray(self.model.predict_in_sample()["fitted"], dtype="float64")
                out[inside] = fitted[self.n - 1 + steps[inside]]
        return out


class NeuralProphetForecaster(Forecaster):
    """The runbook's NeuralProphet, fitted with the frequency passed explicitly and seeded."""

    name = "neuralprophet"

    def __init__(
        self,
        epochs: int,
        learning_rate: float,
        batch_size: int | None,
        n_changepoints: int,
        seasonality_mode: str | None,
        seed: int,
    ) -> None:
        """The trainer's parameters, defaults included, are its ``ForecastParams``: one place."""
        self.options = dict(
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            n_changepoints=n_changepoints,
            seasonality_mode=seasonality_mode,
            seed=seed,
        )
        self.model: Any = None
        self.grid: Grid | None = None
        self.regressors: tuple[str, ...] = ()

    def fit(self, series: Series) -> NeuralProphetForecaster:
        neuralprophet = import_neuralprophet()
        frequency = series.grid.frequency
        periods_per_year = 365.25 / frequency.days
        yearly = frequency.yearly_order if len(series.y) >= periods_per_year else False
        weekly = frequency.weekly_order if frequency.weekly_order and len(series.y) >= 14 else False
        options = self.options
        with _quiet():
            neuralprophet.set_random_seed(options["seed"])
            model = neuralprophet.NeuralProphet(
                yearly_seasonality=yearly,
                weekly_seasonality=weekly,
                daily_seasonality=False,
                seasonality_mode=options["seasonality_mode"] or frequency.seasonality_mode,
                n_changepoints=min(options["n_changepoints"], max(len(series.y) // 4, 0)),
                learning_rate=options["learning_rate"],
                epochs=options["epochs"],
                batch_size=options["batch_size"],
                collect_metrics=False,
                accelerator="cpu",
            )
            for name in series.regressors:
                model.add_future_regressor(name)
            with _unread_step_logs(skip=options["learning_rate"] is not None):
                model.fit(series.frame(), freq=series.grid.np_freq, progress=None, checkpointing=False)
        self.model, self.grid = model, series.grid
        self.regressors = tuple(model.config_regressors.regressors or ())
        dropped = sorted(set(series.regressors) - set(self.regressors))
        if dropped:
            log.warning("regressors %s are constant over the fitted rows; NeuralProphet leaves them out", dropped)
        return self

    def predict(self, future: Future) -> np.ndarray:
        assert self.grid is not None
        ordinals = np.asarray(future.ordinals, dtype=np.int64)
        unique = np.unique(ordinals)
        frame = pd.DataFrame({DS: self.grid.timestamps(unique), Y: np.nan})
        for name in self.regressors:
            values = pd.Series(np.asarray(future.regressors[name], dtype="float64"), index=ordinals)
            frame[name] = values[~values.index.duplicated()].reindex(unique).to_numpy()
        with _quiet():
            predicted = self.model.predict(frame)
        by_period = pd.Series(predicted["yhat1"].to_numpy(dtype="float64"), index=self.grid.ordinals(predicted[DS]))
        by_period = by_period[~by_period.index.duplicated()]
        return by_period.reindex(ordinals).to_numpy()

    def __getstate__(self) -> dict[str, Any]:
        # The torch model is saved with NeuralProphet's own format beside the pickle (see
        # the revenue trainer's save); the pickle carries the rest.
        return {**self.__dict__, "model": None}


class MeanForecaster(Forecaster):
    """The plain mean of its members' forecasts."""

    def __init__(self, members: Sequence[Forecaster]) -> None:
        self.members = list(members)
        self.name = "mean(" + ",".join(m.name for m in self.members) + ")"

    def fit(self, series: Series) -> MeanForecaster:
        for member in self.members:
            member.fit(series)
        return self

    def predict(self, future: Future) -> np.ndarray:
        return np.mean([m.predict(future) for m in self.members], axis=0)


ARIMA_EXACT_MAX_ROWS = 150  # longer series search ARIMA orders on an approximate likelihood


def statistical(name: str, frequency: Frequency, n_train: int, n_series: int | None = None) -> Forecaster | None:
    """A fresh statsforecast model by name, or ``None`` when the series is too short for it.

    ``n_series`` is the whole series' length (default ``n_train``): settings that depend on the
    length are taken from it, so every backtest origin and the final refit use the same ones.
    """
    from statsforecast.models import MSTL, AutoARIMA, AutoETS, Naive, SeasonalNaive

    season = frequency.season_length
    seasons = n_train // season
    if name == "naive":
        return StatsForecaster(name, Naive())
    if name == "seasonal_naive":
        return StatsForecaster(name, SeasonalNaive(season_length=season)) if seasons >= 1 else None
    if name == "auto_ets":
        # ETS seasons are limited to 24 periods: weekly data gets a non-seasonal ETS (MSTL covers
        # its yearly cycle); a season needs two full cycles to be estimated.
        length = season if season <= ETS_MAX_SEASON and seasons >= 2 else 1
        return StatsForecaster(name, AutoETS(season_length=length))
    if name == "auto_arima":
        length = season if season <= ETS_MAX_SEASON and seasons >= 2 else 1
        # R's forecast::auto.arima default: on a long series or a long season, compare candidate
        # orders by an approximate likelihood (the chosen order is then fitted exactly). Measured
        # on the generated lake's 731 days: 7 s instead of 68 s for a 5-origin backtest, with the
        # same MAPE to within 0.5 point on the shared series (benchmarks/README.md).
        approximate = (n_series or n_train) > ARIMA_EXACT_MAX_ROWS or length > 12
        return StatsForecaster(name, AutoARIMA(season_length=length, approximation=approximate))
    if name == "mstl":
        if seasons < 2:
            return None
        return StatsForecaster(name, MSTL(season_length=season, trend_forecaster=AutoETS(model="ZZN")))
    raise ValueError(f"unknown forecaster {name!r}")


# --- NeuralProphet's import -------------------------------------------------------------------


@contextmanager
def _quiet() -> Iterator[None]:
    """NeuralProphet, statsforecast and pandas warn on every call about things that do not
    concern us (plotly is not installed; metrics "in normalized scale"; convergence notes)."""
    from salesrisk import runtime

    runtime.quiet_libraries()
    logging.getLogger("NP").setLevel(logging.ERROR)
    logging.getLogger("NP.plotly").setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            yield


# What NeuralProphet 0.9's training step logs through Lightning on every step, for its
# learning-rate finder and progress bar only.
UNREAD_STEP_LOGS = frozenset({"train_loss", "reg_loss"})


@contextmanager
def _unread_step_logs(skip: bool) -> Iterator[None]:
    """Fits without the two per-step ``LightningModule.log`` calls nobody reads.

    With a fixed learning rate (no learning-rate finder), no progress bar, no metrics
    (``collect_metrics=False``), no checkpoint and no early stopping, nothing reads them; yet
    Lightning's bookkeeping of them was 40 % of a fit's time (cProfile of a 100-epoch fit on the
    default lake: 112 of 280 s under load, the forward pass 26 s). Dropping them changes no
    weight: logging never touches the loss or the optimiser. NeuralProphet has no switch for
    them, so ``TimeNet.log`` drops those two names while the fit runs, then is put back.
    """
    if not skip:
        yield
        return
    from neuralprophet import time_net

    original = time_net.TimeNet.log

    def log(self: Any, name: str, *args: Any, **kwargs: Any) -> None:
        if name not in UNREAD_STEP_LOGS:
            original(self, name, *args, **kwargs)

    time_net.TimeNet.log = log
    try:
        yield
    finally:
        time_net.TimeNet.log = original


def import_neuralprophet() -> Any:
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
