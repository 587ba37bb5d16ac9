"""Rolling origins, per-step errors and conformal widths (models/backtest.py): pure arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from models import backtest
from models.forecasters import BY_NAME, Forecaster, Future, Grid, Series


def test_origins_step_back_half_a_horizon_from_the_final_cut() -> None:
    assert backtest.origins(100, 12, 24) == [64, 70, 76, 82, 88]
    assert backtest.origins(100, 12, 24, n_origins=2) == [82, 88]


def test_origins_keep_enough_rows_to_fit_and_end_at_the_final_horizon() -> None:
    cuts = backtest.origins(60, 12, 30)
    assert cuts == [30, 36, 42, 48]
    assert backtest.origins(30, 12, 24) == []


def test_widths_grow_with_the_step_and_cover_the_level() -> None:
    rng = np.random.default_rng(0)
    steps = np.arange(1, 13)
    errors = rng.normal(0, 1, (400, 12)) * np.sqrt(steps)  # error grows like sqrt(step)
    widths = backtest.step_widths(errors[:200], 0.9)
    assert (np.diff(widths) >= 0).all() and widths[-1] > 2 * widths[0]
    covered = np.abs(errors[200:]) <= widths
    assert 0.85 <= covered.mean() <= 0.95
    assert 0.85 <= backtest.coverage(errors[:50], 0.9) <= 0.95


def test_widths_beyond_the_horizon_keep_growing() -> None:
    widths = np.array([1.0, 2.0, 3.0])
    assert backtest.widths_for(np.array([0, 1, 3, 12]), widths).tolist() == [1.0, 1.0, 3.0, 6.0]


def test_scores_are_percent_and_skip_zero_actuals() -> None:
    figures = backtest.scores(np.array([0.0, 100.0, 200.0]), np.array([5.0, 110.0, 180.0]))
    assert figures["MAPE"] == pytest.approx(10.0)
    assert figures["MAE"] == pytest.approx(35 / 3)


class _LastValue(Forecaster):
    name = "last"

    def fit(self, series: Series) -> Forecaster:
        self.value, self.end = float(series.y[-1]), series.end
        return self

    def predict(self, future: Future) -> np.ndarray:
        return np.full(len(future.ordinals), self.value)


def test_run_forecasts_each_origin_from_the_rows_before_it() -> None:
    grid = Grid(BY_NAME["monthly"], "M", "MS")
    series = Series(grid, 600, np.arange(40, dtype=float))
    result = backtest.run(_LastValue, series, [20, 26], 12)
    assert result.actual.shape == (2, 12)
    assert (result.predicted[0] == 19).all() and (result.predicted[1] == 25).all()
    assert result.actual[1].tolist() == list(range(26, 38))
    assert result.last_fit.end == 600 + 25


@pytest.mark.parametrize("horizon", [8, 12, 13, 28])
def test_calibration_origins_are_a_quarter_horizon_apart_and_hold_the_selection_origins(horizon: int) -> None:
    cuts = backtest.calibration_origins(400, horizon, 2 * horizon)
    assert len(cuts) == backtest.N_CALIBRATION_ORIGINS and cuts[-1] == 400 - horizon
    assert set(np.diff(cuts)) == {max(1, horizon // 4)}
    assert set(backtest.origins(400, horizon, 2 * horizon)) <= set(cuts)


def test_merge_orders_the_origins_of_both_backtests() -> None:
    grid = Grid(BY_NAME["monthly"], "M", "MS")
    series = Series(grid, 600, np.arange(60, dtype=float))
    merged = backtest.merge(backtest.run(_LastValue, series, [30, 42], 6), backtest.run(_LastValue, series, [36, 24], 6))
    assert merged.cuts == (24, 30, 36, 42)
    assert merged.predicted[:, 0].tolist() == [23.0, 29.0, 35.0, 41.0]
    assert merged.last_fit.value == 41.0


def test_coverage_can_leave_out_origins_whose_windows_overlap() -> None:
    # three pairs of neighbouring origins, each pair with its own error size: leaving one origin
    # out still leaves its twin in, so plain leave-one-out covers everything; leaving out the
    # neighbours too does not cover the pair with the largest errors.
    errors = np.array([[1.0], [1.0], [2.0], [2.0], [100.0], [100.0]])
    assert backtest.coverage(errors, 0.9) == 1.0
    assert backtest.coverage(errors, 0.9, cuts=[0, 1, 10, 11, 20, 21], apart=5) == pytest.approx(4 / 6)
