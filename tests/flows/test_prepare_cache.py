"""Drift bug 1: a model's prepared input (and its cache key) follows every table its preparation reads.

risk_trajectory is prepared from risk_snapshots *and* ml_outcomes; when only the prepare task's
cache key left ml_outcomes out, new outcomes reused the old prepared file.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import polars as pl
import pytest
from prefect import flow

from flows.pipeline import PipelineOptions, prepared_input
from salesrisk import catalog, storage
from tests.flows.helpers import by_task, task_runs

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


@flow(name="prepare-twice")
async def prepare_model(model_id: str, lake: str) -> str:
    return (await prepared_input(model_id, PipelineOptions(lake=lake))).uri


def prepare_states(model_id: str, lake: Path) -> tuple[str, list[str]]:
    state = asyncio.run(prepare_model(model_id, str(lake), return_state=True))
    assert state.is_completed(), state.message
    for _ in range(50):  # task runs reach the API through events: wait until the prepare run is there
        runs = by_task(asyncio.run(task_runs(state.state_details.flow_run_id)), "prepare")
        if runs and all(r.state and r.state.is_final() for r in runs):
            break
        time.sleep(0.2)
    return state.result(), [r.state.name for r in runs]


def change_outcomes(lake: Path) -> None:
    """Flip the outcome of every deal in one ml_outcomes file (as a late correction would)."""
    path = sorted((lake / catalog.ML_OUTCOMES).rglob("*.parquet"))[0]
    frame = pl.read_parquet(path)
    flips = [pl.when(pl.col("outcome") == "won").then(pl.lit("lost")).otherwise(pl.lit("won")).alias("outcome")]
    if catalog.WIN_TARGET in frame.columns:
        flips.append((1 - pl.col(catalog.WIN_TARGET)).alias(catalog.WIN_TARGET))
    frame.with_columns(flips).write_parquet(path)


@pytest.mark.parametrize("model_id", [m for m, spec in catalog.MODELS.items() if catalog.ML_OUTCOMES in spec.sources])
def test_new_outcomes_are_prepared_again(small_lake: Path, model_id: str) -> None:
    first_uri, first = prepare_states(model_id, small_lake)
    assert first == ["Completed"]
    again_uri, again = prepare_states(model_id, small_lake)
    assert again == ["Cached"] and again_uri == first_uri  # nothing changed: the cache holds

    before = storage.read_parquet(first_uri)
    change_outcomes(small_lake)
    new_uri, new = prepare_states(model_id, small_lake)
    assert new == ["Completed"], f"{model_id}: changed {catalog.ML_OUTCOMES} reused the cached prepared input"
    assert new_uri != first_uri
    assert not storage.read_parquet(new_uri).equals(before)
