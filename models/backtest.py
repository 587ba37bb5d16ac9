"""Rolling-origin backtests, their error figures, and conformal intervals from their residuals.

A single held-out horizon is one draw: a model can win or lose it by luck. Several origins (each
fits on the periods before it and forecasts the next ``horizon``) give every horizon step several
errors, which both ranks the candidates more reliably and says how error grows with the step, the
base of an interval that widens with the horizon (``step_widths``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, root_mean_squared_error

from models.forecasters import Forecaster, Future, Series

N_ORIGINS = 5
N_CALIBRATION_ORIGINS = 12


def origins(n: int, horizon: int, min_train: int, n_origins: int = N_ORIGINS, spacing: int | None = None) -> list[int]:
    """Training lengths of the origins, oldest first: the last one leaves out exactly the final
    ``horizon`` periods; the others step back ``spacing`` periods each (default half a horizon),
    while ``min_train`` periods remain to fit on."""
    spacing = spacing or max(1, horizon // 2)
    last = n - horizon
    return sorted(last - i * spacing for i in range(n_origins) if last - i * spacing >= min_train)


def calibration_origins(n: int, horizon: int, min_train: int, n_origins: int = N_CALIBRATION_ORIGINS) -> list[int]:
    """Origins a quarter horizon apart for sizing intervals. With half-horizon spacing, the
    selection origins are a subset of these (for even horizons), so only the others need fitting.
    Five origins are five error paths, and one unusual period (a crisis quarter) is then a fifth of
    the calibration set: intervals come out too narrow or too wide by luck. Twelve origins spread
    over three horizons give the conformal quantile more paths to rest on."""
    return origins(n, horizon, min_train, n_origins, spacing=max(1, horizon // 4))


@dataclass
class Backtest:
    """One method's forecasts at every origin, ``(origin, step)`` arrays."""

    name: str
    actual: np.ndarray
    predicted: np.ndarray
    last_fit: Forecaster  # the fit at the last origin (trained on all but the final horizon)
    cuts: tuple[int, ...] = ()  # training length at each origin, oldest first

    @property
    def errors(self) -> np.ndarray:
        return self.actual - self.predicted


def run(make: Callable[[], Forecaster], series: Series, cuts: Sequence[int], horizon: int) -> Backtest:
    """Fit a fresh ``make()`` at each origin and forecast the ``horizon`` periods after it."""
    actual, predicted = [], []
    fitted: Forecaster | None = None
    for cut in cuts:
        fitted = make().fit(series.head(cut))
        window = series.slice(cut, cut + horizon)
        ordinals = np.arange(window.start, window.end + 1)
        predicted.append(fitted.predict(Future(ordinals, window.regressors)))
        actual.append(window.y)
    assert fitted is not None
    return Backtest(fitted.name, np.array(actual, dtype="float64"), np.array(predicted, dtype="float64"), fitted, tuple(cuts))


def merge(first: Backtest, second: Backtest) -> Backtest:
    """One backtest over the origins of both (same method), oldest first; the last fit is that of
    the latest origin."""
    cuts = np.array([*first.cuts, *second.cuts])
    order = np.argsort(cuts, kind="stable")
    actual = np.concatenate([first.actual, second.actual])[order]
    predicted = np.concatenate([first.predicted, second.predicted])[order]
    last_fit = first.last_fit if max(first.cuts) >= max(second.cuts) else second.last_fit
    return Backtest(first.name, actual, predicted, last_fit, tuple(int(c) for c in cuts[order]))


def scores(actual: np.ndarray, predicted: np.ndarray, prefix: str = "") -> dict[str, float]:
    """MAPE (percent, over non-zero actuals), RMSE and MAE."""
    actual, predicted = np.ravel(actual), np.ravel(predicted)
    nonzero = actual != 0
    mape = 100 * mean_absolute_percentage_error(actual[nonzero], predicted[nonzero]) if nonzero.any() else math.nan
    return {
        f"{prefix}MAPE": float(mape),
        f"{prefix}RMSE": float(root_mean_squared_error(actual, predicted)),
        f"{prefix}MAE": float(mean_absolute_error(actual, predicted)),
    }


def per_step(backtest: Backtest, prefix: str) -> dict[str, float]:
    """``{prefix}MAPE_h01`` ... for each horizon step, over the origins."""
    out: dict[str, float] = {}
    for step in range(backtest.actual.shape[1]):
        for name, value in scores(backtest.actual[:, step], backtest.predicted[:, step]).items():
            out[f"{prefix}{name}_h{step + 1:02d}"] = value
    return out


def ranking_score(backtest: Backtest) -> float:
    """What candidates are ranked by: backtest MAPE, or MAE scaled by the mean level when a series
    has zeros everywhere MAPE could be computed."""
    figures = scores(backtest.actual, backtest.predicted)
    if math.isfinite(figures["MAPE"]):
        return figures["MAPE"]
    level = float(np.mean(np.abs(backtest.actual))) or 1.0
    return 100 * figures["MAE"] / level


# --- intervals --------------------------------------------------------------------------------


def conformal_quantile(values: np.ndarray, level: float) -> float:
    """Split-conformal quantile: the ``ceil((n + 1) level)``-th smallest (covers ``level`` of new
    exchangeable values); the largest when there are too few."""
    ordered = np.sort(np.abs(np.ravel(values)))
    n = len(ordered)
    rank = math.ceil((n + 1) * level)
    return float(ordered[min(rank, n) - 1])


def step_scales(abs_errors: np.ndarray) -> np.ndarray:
    """Typical error size at each step: the per-step root mean square, made non-decreasing in the
    step (isotonic), since uncertainty does not shrink further ahead."""
    steps = np.arange(abs_errors.shape[1])
    rms = np.sqrt(np.nanmean(np.square(abs_errors), axis=0))
    smooth = IsotonicRegression(increasing=True).fit_transform(steps, rms)
    floor = max(float(np.nanmean(rms)) * 1e-3, 1e-12)
    return np.maximum(smooth, floor)


def relative(errors: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Errors as a share of the forecast: revenue's error grows with its level, so a width fitted
    on last year's smaller values would be too narrow today."""
    return errors / np.maximum(np.abs(predicted), 1e-12)


def step_widths(errors: np.ndarray, level: float) -> np.ndarray:
    """Half-width per horizon step (normalised conformal), in the errors' units: errors are divided
    by their step's scale, pooled across steps and origins for one conformal quantile, and scaled
    back, so a few origins still give a stable width that grows as the error does."""
    abs_errors = np.abs(errors)
    scale = step_scales(abs_errors)
    return conformal_quantile(abs_errors / scale, level) * scale


def coverage(errors: np.ndarray, level: float, cuts: Sequence[int] | None = None, apart: int = 0) -> float:
    """Share of backtest errors inside intervals built without their own origin (leave one origin
    out), i.e. how often the interval would have held on forecasts it did not see. With ``cuts``
    and ``apart``, origins closer than ``apart`` periods to the left-out one are left out with it
    (their windows share periods, hence errors, with it)."""
    abs_errors = np.abs(errors)
    if abs_errors.shape[0] < 2:
        return math.nan
    positions = np.asarray(cuts if cuts is not None else np.arange(abs_errors.shape[0]) * max(apart, 1))
    covered = []
    for origin in range(abs_errors.shape[0]):
        keep = np.abs(positions - positions[origin]) >= max(apart, 1)
        if keep.sum() < 2:
            continue
        covered.append(abs_errors[origin] <= step_widths(abs_errors[keep], level))
    return float(np.mean(covered)) if covered else math.nan


def widths_for(steps: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Half-width for any step: the step's own within the backtest horizon, the first step's at
    or before the training end, and beyond the horizon the last one grown like sqrt(step)."""
    steps = np.asarray(steps, dtype=np.int64)
    horizon = len(widths)
    out = widths[np.clip(steps, 1, horizon) - 1].astype("float64")
    beyond = steps > horizon
    out[beyond] = widths[-1] * np.sqrt(steps[beyond] / horizon)
    return out
