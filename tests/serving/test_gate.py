"""The champion/challenger gate: direction per metric, tolerance, force."""

from __future__ import annotations

import math

import pytest

from models import gate
from salesrisk import catalog


def test_first_version_is_promoted():
    decision = gate.decide({"Brier": 0.2, "AUC_ROC": 0.7}, None)
    assert decision.promote and not decision.forced and "no champion" in decision.reason


def test_worse_candidate_is_blocked_better_one_promoted():
    champion = {"Brier": 0.18, "AUC_ROC": 0.80}
    worse = gate.decide({"Brier": 0.25, "AUC_ROC": 0.70}, champion)
    better = gate.decide({"Brier": 0.15, "AUC_ROC": 0.85}, champion)
    assert not worse.promote and "Brier" in worse.reason and "block" in worse.reason
    assert better.promote and "not worse" in better.reason


@pytest.mark.parametrize(
    ("metric", "champion", "candidate", "promote"),
    [
        ("RMSE", 1.0, 1.2, False),
        ("RMSE", 1.0, 0.8, True),
        ("R2", 0.6, 0.5, False),
        ("R2", 0.6, 0.7, True),
        ("F1", 0.5, 0.4, False),
        ("val_loss", 0.3, 0.2, True),
        ("MAPE", 0.1, 0.2, False),
        ("ECE", 0.05, 0.04, True),
    ],
)
def test_direction_is_known_per_metric(metric, champion, candidate, promote):
    assert gate.decide({metric: candidate}, {metric: champion}).promote is promote


def test_every_runbook_metric_has_a_direction():
    for spec in catalog.MODELS.values():
        for metric in spec.metrics:
            assert gate.direction(metric) in (-1, 1)


def test_tolerance_lets_a_slightly_worse_candidate_through_but_not_a_much_worse_one():
    champion = {"RMSE": 1.00}
    assert gate.decide({"RMSE": 1.04}, champion, tolerances={"RMSE": 0.05}).promote
    assert not gate.decide({"RMSE": 1.06}, champion, tolerances={"RMSE": 0.05}).promote
    assert "within tolerance" in gate.decide({"RMSE": 1.04}, champion, tolerances={"RMSE": 0.05}).reason


def test_one_worse_metric_blocks_even_when_another_improves():
    decision = gate.decide({"MAPE": 0.05, "RMSE": 120.0}, {"MAPE": 0.10, "RMSE": 100.0})
    assert not decision.promote
    assert "RMSE" in decision.reason and "MAPE" in decision.reason


def test_force_overrides_and_says_so():
    decision = gate.decide({"Brier": 0.3}, {"Brier": 0.1}, force=True)
    assert decision.promote and decision.forced
    assert decision.reason.startswith("forced promotion: the gate alone would block")


def test_missing_or_nan_candidate_metric_blocks():
    assert not gate.decide({"AUC_ROC": 0.9}, {"AUC_ROC": 0.8, "Brier": 0.2}).promote
    assert not gate.decide({"Brier": math.nan}, {"Brier": 0.2}).promote


def test_nothing_comparable_blocks_and_unknown_metrics_are_reported():
    decision = gate.decide({"custom": 1.0}, {"custom": 2.0})
    assert not decision.promote
    assert "no known direction" in decision.reason
    with pytest.raises(ValueError, match="no known direction"):
        gate.direction("custom")


def test_bad_tolerance_is_refused():
    with pytest.raises(ValueError, match="tolerances"):
        gate.decide({"RMSE": 1.0}, {"RMSE": 1.0}, tolerances={"RMSE": -1})


def test_decision_renders_as_tags_and_markdown():
    decision = gate.decide({"Brier": 0.15}, {"Brier": 0.2})
    tags = decision.as_tags()
    assert tags["gate.promote"] == "true" and tags["gate.candidate.Brier"] == "0.15"
    assert "| Brier | lower is better | 0.15 | 0.2 |" in decision.to_markdown()


def test_bounded_metrics_have_a_default_noise_tolerance_that_can_be_overridden():
    assert gate.decide({"AUC_ROC": 0.798}, {"AUC_ROC": 0.800}).promote
    assert not gate.decide({"AUC_ROC": 0.790}, {"AUC_ROC": 0.800}).promote
    assert not gate.decide({"AUC_ROC": 0.798}, {"AUC_ROC": 0.800}, tolerances={"AUC_ROC": 0.0}).promote
    assert not gate.decide({"RMSE": 100.01}, {"RMSE": 100.0}).promote  # scale-dependent: no default
