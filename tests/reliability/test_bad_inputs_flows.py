"""Bad inputs through the flows a user starts (``risk-scoring``, ``win-probability``), on Prefect's
test harness, with a risk-scoring model already trained, registered and deployed.

Each case must fail the flow with a message naming the input and the column or setting, at
once (a bad input is not retried), write nothing to the lake, register nothing, and leave the
endpoint serving the baseline's version.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from flows.risk_scoring import risk_scoring
from flows.win_probability import win_probability
from salesrisk import catalog
from tests.flows.helpers import by_task, task_runs
from tests.reliability import frames
from tests.reliability.bad_input_support import (  # noqa: F401  (fixtures)
    Baseline,
    assert_unchanged,
    baseline,
    baseline_store,
    no_network,
    snapshot,
    tree_digest,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


@pytest.fixture(scope="module")
def lake_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models import synthetic

    root = tmp_path_factory.mktemp("flow-lake") / "lake"
    synthetic.generate(str(root), n_opportunities=300, tenants=1, start=dt.date(2024, 1, 1), end=dt.date(2024, 6, 30), seed=9)
    return root


def bad_prepared_file(tmp: Path) -> dict[str, Any]:
    path = tmp / "prepared-negative-amount.parquet"
    frames.set_row(frames.opportunities(), "amount", 5, -1200.0).write_parquet(path)
    return {"training_data": str(path)}


def missing_file(tmp: Path) -> dict[str, Any]:
    return {"training_data": str(tmp / "no-such-training-data.parquet")}


def malformed_asset_reference(tmp: Path) -> dict[str, Any]:
    return {"training_data": "azureml:risk_scoring_training"}  # no version


def duplicated_outcome_in_lake(tmp: Path) -> dict[str, Any]:
    lake = tmp / "lake"
    first = sorted((lake / catalog.ML_OUTCOMES).rglob("*.parquet"))[0]
    outcomes = pl.read_parquet(first)
    pl.concat([outcomes, outcomes.head(1)]).write_parquet(first)
    return {"lake": str(lake)}


def incomplete_lake(tmp: Path) -> dict[str, Any]:
    lake = tmp / "lake"
    shutil.rmtree(lake / catalog.ML_OUTCOMES)
    return {"lake": str(lake)}


@dataclass(frozen=True)
class Case:
    id: str
    flow: Callable[..., Any]
    parameters: Callable[[Path], dict[str, Any]]  # given the case's folder (with a copy of the lake)
    names: Callable[[Path], tuple[str, ...]]  # what the failure message must name
    task: str  # the task that must fail, once

    def __str__(self) -> str:
        return self.id


CASES: list[Case] = [
    Case("missing-training-file", risk_scoring, missing_file,
         lambda tmp: (str(tmp / "no-such-training-data.parquet"), "no such file or folder"), "fetch"),
    Case("bad-value-in-training-file", risk_scoring, bad_prepared_file,
         lambda tmp: (str(tmp / "prepared-negative-amount.parquet"), "'amount'", ">= 0"), "train"),
    Case("malformed-azureml-reference", risk_scoring, malformed_asset_reference,
         lambda tmp: ("azureml:risk_scoring_training", "azureml:<name>:<version>"), "fetch"),
    Case("duplicated-outcome-in-the-lake", win_probability, duplicated_outcome_in_lake,
         lambda tmp: (str(tmp / "lake" / catalog.ML_OUTCOMES), "'tenant_id, opportunity_id'", "unique"), "prepare"),
    Case("incomplete-lake", win_probability, incomplete_lake,
         lambda tmp: (str(tmp / "lake"), "missing ml_outcomes"), "bootstrap-lake"),
]


def settled_task_runs(state, expected: str, timeout: float = 60.0) -> list:
    """The flow run's task runs once the ``expected`` one is recorded and every one has a final
    state (the API records task runs from events, a moment after the flow returns)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = asyncio.run(task_runs(state.state_details.flow_run_id))
        settled = all(r.state is not None and r.state.is_final() for r in runs)
        if (settled and by_task(runs, expected)) or time.monotonic() > deadline:
            return runs
        time.sleep(0.25)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_fails_the_flow_and_changes_nothing(
    case: Case, baseline: Baseline, lake_template: Path, tmp_path: Path
) -> None:
    shutil.copytree(lake_template, tmp_path / "lake")
    parameters = case.parameters(tmp_path)
    lake_before = tree_digest(tmp_path / "lake")
    before = snapshot()

    state = asyncio.run(case.flow(**parameters, return_state=True))

    assert state.is_failed(), state.message
    for name in case.names(tmp_path):
        assert name in state.message, f"{name!r} not named in: {state.message}"
    runs = settled_task_runs(state, case.task)
    failed = by_task(runs, case.task)
    assert [r.state.name for r in failed] == ["Failed"], "the bad input must fail this task"
    assert [r.run_count for r in failed] == [1], "a bad input is not retried"
    assert by_task(runs, "register") == [] and by_task(runs, "deploy") == []
    assert tree_digest(tmp_path / "lake") == lake_before, "nothing may be written to the lake"
    assert_unchanged(before, baseline)


def test_missing_azure_setting_fails_before_any_network(
    baseline: Baseline, no_network: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """compute=azureml with AZURE_ML_SUBSCRIPTION_ID unset: the train task names the variable."""
    monkeypatch.setenv("AZURE_ML_RESOURCE_GROUP", "rg-sales")
    monkeypatch.setenv("AZURE_ML_WORKSPACE_NAME", "ws-sales")
    monkeypatch.delenv("AZURE_ML_SUBSCRIPTION_ID", raising=False)
    before = snapshot()

    state = asyncio.run(risk_scoring(training_data=str(baseline.data), compute="azureml", return_state=True))

    assert state.is_failed(), state.message
    assert "AZURE_ML_SUBSCRIPTION_ID" in state.message and "is not set" in state.message
    assert "AZURE_ML_RESOURCE_GROUP" not in state.message  # only what is missing is named
    runs = settled_task_runs(state, "train")
    assert [(r.state.name, r.run_count) for r in by_task(runs, "train")] == [("Failed", 1)]
    assert no_network == [], f"network was attempted: {no_network}"
    assert_unchanged(before, baseline)
