"""The `monitor-models` flow end to end on Prefect's test harness: a trained, registered and deployed
win-probability model, requests logged by the serving layer's writer, outcomes in the lake."""

from __future__ import annotations

import asyncio
import inspect
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest

from deployments import endpoints
from salesrisk import catalog, storage

from .conftest import (
    WIN_FAST,
    assert_png,
    log_batch,
    log_single_row_requests,
    opportunity_frame,
    served_model,
    train,
    write_outcomes,
)

KEY = "win_probability"
pytestmark = pytest.mark.usefixtures("prefect_api")


async def read_artifacts(flow_run_id: UUID) -> dict[str, Any]:
    """The artifacts one flow run created, by key, read back through Prefect's client."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {artifact.key: artifact for artifact in found}


def run_monitor(**params: Any) -> tuple[list[dict], dict[str, Any]]:
    """Run the flow; return its result and the artifacts its run created."""
    from flows.monitor import monitor_models

    state = asyncio.run(monitor_models(endpoints=[KEY], return_state=True, **params))
    assert state.is_completed(), state.message
    flow_run_id = state.state_details.flow_run_id
    result = state.result()
    result = asyncio.run(result) if inspect.isawaitable(result) else result
    return result, asyncio.run(read_artifacts(flow_run_id))


def test_shift_in_logged_inputs_is_flagged_unshifted_is_not_and_a_missing_deployment_is_reported(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained = train(KEY, opportunity_frame(600, seed=1), isolated / "v1", *WIN_FAST)
    endpoints.deploy(KEY, trained.model_name, trained.version)
    monkeypatch.setenv("SALESRISK_MONITOR_ACTIONS", '{"win_probability": "retrain"}')
    steady, moved = str(isolated / "steady-lake"), str(isolated / "moved-lake")
    log_batch(steady, KEY, trained.model_name, trained.version, opportunity_frame(400, seed=2), "batch-1")
    log_batch(moved, KEY, trained.model_name, trained.version, opportunity_frame(400, seed=3, shifted=True), "batch-2")

    [calm], calm_artifacts = run_monitor(lake=steady)
    [alarm], artifacts = run_monitor(lake=moved)

    assert calm["window_rows"] == 400 and len(calm["drift"]) == 8
    assert calm["breaches"] == [] and calm["action"] == "none"
    assert {b["metric"] for b in alarm["breaches"]} == {"PSI:amount", "PSI:days_since_last_activity"}
    assert alarm["reference_source"].endswith("monitoring/reference.parquet")
    # retrain is configured, but the harness has no `win-probability/default` deployment: said, not raised
    assert alarm["action"] == "retrain"
    assert alarm["action_result"].startswith("retraining not triggered: deployment 'win-probability/default'")
    assert "ObjectNotFound" in alarm["action_result"]
    assert set(calm_artifacts) == {"monitoring-report"}
    assert set(artifacts) == {"monitoring-breach-win-probability", "monitoring-report"}
    breach = artifacts["monitoring-breach-win-probability"].data
    assert "PSI:amount" in breach and "**retrain**" in breach
    assert "| amount |" in artifacts["monitoring-report"].data


def test_degraded_live_brier_rolls_back_to_the_previous_version(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = train(KEY, opportunity_frame(600, seed=1), isolated / "v1", *WIN_FAST)
    second = train(KEY, opportunity_frame(600, seed=5), isolated / "v2", *WIN_FAST)
    endpoints.deploy(KEY, first.model_name, first.version)
    endpoints.deploy(KEY, second.model_name, second.version)
    assert endpoints.current(KEY).version == second.version
    monkeypatch.setenv("SALESRISK_MONITOR_ACTIONS", '{"win_probability": "rollback"}')
    monkeypatch.setenv("SALESRISK_MONITOR_MIN_ROWS", "60")
    lake = str(isolated / "lake")

    # v2 scores 120 opportunities, one request each; the deals then close against its forecasts
    live = opportunity_frame(120, seed=9)
    ids = live.get_column("opportunity_id").to_list()
    log_single_row_requests(lake, KEY, second.model_name, second.version, live, ids)
    predicted = served_model(second.model_name, second.version).predict(
        live.select(catalog.WIN_PROBABILITY_FEATURES).to_pandas()
    )["win_probability"].to_numpy()
    won = (predicted < np.median(predicted)).astype(int)  # the world turned: the likely deals were lost
    write_outcomes(lake, ids, won, date.today())

    [result], artifacts = run_monitor(lake=lake)

    assert result["version"] == second.version
    assert result["performance"]["rows"] == 120
    assert result["performance"]["Brier"] > 0.25 and result["performance"]["AUC_ROC"] < 0.5
    assert {b["metric"] for b in result["breaches"]} >= {"Brier", "AUC_ROC"}
    assert not any(b["kind"] == "drift" for b in result["breaches"])  # same inputs as training: no drift
    assert result["action"] == "rollback"
    assert result["action_result"] == f"rolled back to {first.model_name} v{first.version} (was v{second.version})"
    assert endpoints.current(KEY).version == first.version

    # the rollback also publishes the model's promotion ledger
    assert set(artifacts) == {"monitoring-breach-win-probability", "monitoring-report", "ledger-win-probability-model"}
    report = artifacts["monitoring-report"].data
    assert f"{second.model_name} v{second.version}" in report and "rolled back to" in report
    png = storage.read_bytes(storage.join(lake, "ml_monitoring", "reports", "drift_over_time.png"))
    assert_png(png)
    assert storage.list_parquet(storage.join(lake, "ml_monitoring", "history"))


def test_help_lists_the_flow_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    from flows import cli
    from flows.monitor import monitor_models

    with pytest.raises(SystemExit) as exit_:
        cli.main(monitor_models, ["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert all(flag in text for flag in ("--endpoints", "--lake", "--no-act"))
