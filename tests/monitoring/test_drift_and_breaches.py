"""The monitoring arithmetic on generated data: drift is flagged on a shift only, breaches follow
the thresholds, and logged batches decode back into the rows that were scored."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import polars as pl
import pytest

from models import monitoring, monitoring_data
from salesrisk import catalog

from .conftest import opportunity_frame

FEATURES = list(catalog.OPPORTUNITY_FEATURES)


def test_a_shifted_feature_distribution_is_flagged_and_an_unshifted_one_is_not() -> None:
    reference = opportunity_frame(3000, seed=1).select(FEATURES)
    same = opportunity_frame(800, seed=2).select(FEATURES)
    shifted = opportunity_frame(800, seed=3, shifted=True).select(FEATURES)

    unchanged = monitoring.feature_drift(reference, same)
    moved = {d.feature: d for d in monitoring.feature_drift(reference, shifted)}

    assert [d.feature for d in unchanged] == FEATURES
    assert not any(d.drifted for d in unchanged), [(d.feature, d.psi, d.ks_pvalue) for d in unchanged]
    assert moved["amount"].drifted and moved["days_since_last_activity"].drifted
    assert {f for f, d in moved.items() if d.drifted} == {"amount", "days_since_last_activity"}
    assert moved["amount"].psi > 0.2 > max(d.psi for d in unchanged)
    assert moved["days_since_last_activity"].ks_pvalue < 0.01


def test_psi_is_zero_on_the_same_sample_and_grows_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 5000)
    values = [monitoring.population_stability_index(base, base + delta) for delta in (0.0, 0.25, 0.5, 1.0)]
    assert values[0] == pytest.approx(0.0, abs=1e-12)
    assert values == sorted(values) and values[-1] > 0.5


def test_psi_of_a_code_uses_its_values_as_bins_and_counts_missing_values() -> None:
    codes = np.repeat([0.0, 1.0, 2.0], 500)
    assert monitoring.psi_bins(codes).tolist() == [0.5, 1.5]
    with_missing = codes.copy()
    with_missing[:300] = np.nan
    assert monitoring.population_stability_index(codes, with_missing) > 0.2


def test_no_drift_is_judged_below_the_minimum_rows() -> None:
    reference = opportunity_frame(1000, seed=1).select(FEATURES)
    shifted = opportunity_frame(40, seed=3, shifted=True).select(FEATURES)
    assert monitoring.feature_drift(reference, shifted, monitoring.Thresholds(min_rows=100)) == []


def test_breaches_follow_the_thresholds_and_need_enough_outcomes() -> None:
    thresholds = monitoring.Thresholds(brier_max=0.2, auc_min=0.6, min_rows=50)
    rules = monitoring.performance_rules("win_probability", thresholds)
    bad = {"rows": 80.0, "Brier": 0.31, "AUC_ROC": 0.52}
    assert [(b.metric, b.kind) for b in monitoring.evaluate_breaches([], bad, rules, thresholds)] == [
        ("Brier", "performance"), ("AUC_ROC", "performance")
    ]
    assert monitoring.evaluate_breaches([], {**bad, "rows": 49.0}, rules, thresholds) == []
    assert monitoring.evaluate_breaches([], {"rows": 80.0, "Brier": 0.19, "AUC_ROC": 0.7}, rules, thresholds) == []
    rmse_rule = monitoring.performance_rules("risk_score", thresholds)
    assert [b.metric for b in monitoring.evaluate_breaches([], {"rows": 80.0, "RMSE": 0.55}, rmse_rule, thresholds)] == ["RMSE"]


def test_live_performance_is_scikit_learns_on_the_matched_rows() -> None:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    rng = np.random.default_rng(4)
    p = rng.uniform(0, 1, 300)
    y = (rng.uniform(0, 1, 300) < p).astype(int)
    found = monitoring.win_probability_performance(y, p)
    assert found["Brier"] == pytest.approx(brier_score_loss(y, p))
    assert found["AUC_ROC"] == pytest.approx(roc_auc_score(y, p))
    assert found["rows"] == 300
    forecast = monitoring.forecast_performance(np.array([100.0, 200.0]), np.array([110.0, 180.0]), [90, 150], [120, 190])
    assert forecast["MAPE"] == pytest.approx(10.0)
    assert forecast["interval_coverage"] == pytest.approx(0.5)


def test_configured_action_by_endpoint_key_then_model_id() -> None:
    actions = {"risk_scoring": "retrain", "risk_scoring_industry": "rollback"}
    assert monitoring.resolve_action(actions, "risk_scoring_global", "risk_scoring") == "retrain"
    assert monitoring.resolve_action(actions, "risk_scoring_industry", "risk_scoring") == "rollback"
    assert monitoring.resolve_action(actions, "anomaly", "anomaly") == "none"


def test_logged_batches_decode_to_the_scored_rows_and_outcomes_meet_the_latest_prediction(tmp_path) -> None:
    from deployments.inference_log import ScoredBatch, write

    lake = str(tmp_path / "lake")
    now = datetime.now(timezone.utc)
    frames = [pd.DataFrame({"amount": [1.0 + i, 2.0 + i], "probability": [0.1, 0.2]}) for i in range(3)]
    batches = [
        ScoredBatch("win_probability", "blue", "m", "2", f"r{i}", (now - timedelta(minutes=5 - i)).timestamp(), frame,
                    json.dumps([{"win_probability": 0.1 * i}, {"win_probability": 0.2 * i}]).encode())
        for i, frame in enumerate(frames)
    ]
    batches.append(ScoredBatch("win_probability", "green", "m", "1", "opp-9", now.timestamp(),
                               pd.DataFrame({"amount": [5.0], "probability": [0.5]}), b'[{"win_probability": 0.9}]'))
    write(lake, batches)

    window = monitoring_data.inference_window(lake, "win_probability", now - timedelta(days=1), model_name="m", version="2")
    rows = monitoring_data.scored_rows(window)
    assert rows.height == 6
    assert rows.sort("request_id", monitoring_data.POSITION).get_column("amount").to_list() == [1.0, 2.0, 2.0, 3.0, 3.0, 4.0]
    assert rows.filter(pl.col("request_id") == "r2").get_column("win_probability").to_list() == [pytest.approx(0.2), pytest.approx(0.4)]

    everything = monitoring_data.inference_window(lake, "win_probability", now - timedelta(days=1))
    keyed = monitoring_data.with_opportunity_key(monitoring_data.scored_rows(everything))
    assert keyed.filter(pl.col("rows") == 1).get_column(monitoring_data.KEY).to_list() == ["opp-9"]
    assert keyed.filter(pl.col("rows") > 1).get_column(monitoring_data.KEY).null_count() == 6
    closed = pl.DataFrame({"opportunity_id": ["opp-9"], "target_win": [1], "closed_date": [now.date()]})
    matched = monitoring_data.match_outcomes(keyed, closed)
    assert matched.height == 1 and matched.get_column("win_probability").item() == pytest.approx(0.9)
    assert monitoring_data.inference_window(lake, "anomaly", now - timedelta(days=1)).is_empty()


def test_history_accumulates_across_runs(tmp_path) -> None:
    lake = str(tmp_path / "lake")
    first = datetime(2025, 3, 1, 6, tzinfo=timezone.utc)
    for day in range(3):
        check = monitoring.EndpointCheck("win_probability", "m", "1")
        check.drift = [monitoring.FeatureDrift("amount", 0.05 * (day + 1), 0.1, 0.5, 100, 100, False).as_dict()]
        check.performance = {"rows": 120.0, "Brier": 0.2}
        at = first + timedelta(days=day)
        monitoring_data.append_history(lake, monitoring.history_frame([check], at), at)
    history = monitoring_data.read_history(lake)
    series = monitoring.drift_series(history)
    assert series.get_column("psi").to_list() == pytest.approx([0.05, 0.10, 0.15])
    assert history.filter(pl.col("metric") == "Brier").height == 3
    assert not math.isnan(series.get_column("psi").max())
