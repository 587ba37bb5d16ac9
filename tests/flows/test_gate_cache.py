"""The gate's cache key: an unchanged rerun reuses the recorded decision; anything the decision
rests on (candidate run, champion, the global model beside an industry model, force) changes it."""

from __future__ import annotations

import pytest

from deployments.endpoints import DeployResult
from tasks import evaluate as evaluate_task
from tasks.refs import DataRef, TrainedModel


def trained(run_id: str | None = "run-1", industry: str | None = None) -> TrainedModel:
    params = {"industry_id": industry} if industry else {}
    name = f"risk-scoring-{industry}" if industry else "risk-scoring-global"
    return TrainedModel("risk_scoring", name, "/runs/x", {"RMSE": 0.4}, run_id, DataRef("/data.parquet", "f"), params)


def serving(monkeypatch: pytest.MonkeyPatch, live: dict[str, tuple[str, str]]) -> None:
    def current(key: str) -> DeployResult | None:
        if key not in live:
            return None
        name, version = live[key]
        return DeployResult(key, name, version, "blue", "http://x", None)

    monkeypatch.setattr(evaluate_task.endpoints, "current", current)


def key(model: TrainedModel, endpoint_key: str, force: bool = False) -> str | None:
    return evaluate_task.gate_key(None, {"trained": model, "endpoint_key": endpoint_key, "force": force})


def test_same_candidate_and_champion_give_the_same_key(monkeypatch: pytest.MonkeyPatch) -> None:
    serving(monkeypatch, {"risk_scoring_global": ("risk-scoring-global", "1")})
    assert key(trained(), "risk_scoring_global") == key(trained(), "risk_scoring_global")
    assert key(trained(), "risk_scoring_global") != key(trained("run-2"), "risk_scoring_global")


def test_a_new_champion_or_a_rollback_changes_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    serving(monkeypatch, {})
    none = key(trained(), "risk_scoring_global")
    serving(monkeypatch, {"risk_scoring_global": ("risk-scoring-global", "1")})
    v1 = key(trained(), "risk_scoring_global")
    serving(monkeypatch, {"risk_scoring_global": ("risk-scoring-global", "2")})
    assert len({none, v1, key(trained(), "risk_scoring_global")}) == 3


def test_an_industry_key_follows_the_global_model_beside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    slot = "risk_scoring_industry/retail"
    serving(monkeypatch, {"risk_scoring_global": ("risk-scoring-global", "1")})
    before = key(trained(industry="retail"), slot)
    serving(monkeypatch, {"risk_scoring_global": ("risk-scoring-global", "2")})
    assert key(trained(industry="retail"), slot) != before


def test_forced_or_runless_candidates_are_always_evaluated(monkeypatch: pytest.MonkeyPatch) -> None:
    serving(monkeypatch, {})
    assert key(trained(), "risk_scoring_global", force=True) is None
    assert key(trained(run_id=None), "risk_scoring_global") is None
