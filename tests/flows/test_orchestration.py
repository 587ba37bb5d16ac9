"""Retries, caching and the register+deploy transaction, asserted from Prefect's own records."""

from __future__ import annotations

import asyncio
from pathlib import Path

import mlflow
import polars as pl
import pytest

import tasks.train
from deployments import endpoints
from deployments.compute import TransientComputeError
from flows.anomaly_detection import anomaly_detection
from flows.win_probability import win_probability
from models import synthetic
from salesrisk import catalog, registry
from tests.flows.helpers import by_task, task_runs

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

ANOMALY = "anomaly-detection-isolation-forest"


def run(flow, **parameters):
    return asyncio.run(flow(**parameters, return_state=True))


def states(state) -> dict[str, list[str]]:
    runs = asyncio.run(task_runs(state.state_details.flow_run_id, ("prepare", "train", "register")))
    return {name: [r.state.name for r in by_task(runs, name)] for name in ("prepare", "train", "register", "deploy")}


def attempts(state, name: str) -> list[int]:
    runs = asyncio.run(task_runs(state.state_details.flow_run_id, (name,)))
    return [r.run_count for r in by_task(runs, name)]


def test_unchanged_rerun_hits_cache_and_new_data_retrains(small_lake: Path) -> None:
    first = run(anomaly_detection)
    assert first.is_completed(), first.message
    assert states(first)["train"] == ["Completed"]

    second = run(anomaly_detection)
    assert second.is_completed(), second.message
    assert states(second)["prepare"] == ["Cached"]
    assert states(second)["train"] == ["Cached"]
    assert endpoints.current("anomaly").version == "1"  # the same run is not registered twice

    synthetic.append_days(str(small_lake), 3, seed=7)
    third = run(anomaly_detection)
    assert third.is_completed(), third.message
    assert states(third)["prepare"] == ["Completed"]
    assert states(third)["train"] == ["Completed"]


def test_a_new_tracking_store_trains_again(small_lake: Path) -> None:
    """A cached training names its MLflow run. With the store deleted and made again at the same
    URI (``rm mlflow.db``) the step trains again, so registration finds its run, instead of
    failing with "Run ... not found"; preparing, which names no run, stays cached."""
    import shutil

    from salesrisk.settings import get_settings

    first = run(anomaly_detection)
    assert first.is_completed(), first.message
    old_copy = served_folder("anomaly")
    uri = get_settings().mlflow_tracking_uri
    Path(uri.removeprefix("sqlite:///")).unlink()
    shutil.rmtree(registry.artifacts_root(uri), ignore_errors=True)
    # The flows run in this process, whose MLflow keeps its stores (and the deleted file, open)
    # cached; a flow script's next run is a new process, which dropping those caches stands for.
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore
    from mlflow.tracking._model_registry.registry import ModelRegistryStoreRegistry
    from mlflow.tracking._tracking_service.registry import TrackingStoreRegistry

    for store in (TrackingStore, RegistryStore):
        for engine in store._engine_map.values():
            engine.dispose()
        store._engine_map.clear()
    for stores in (TrackingStoreRegistry, ModelRegistryStoreRegistry):
        stores._get_store_with_resolved_uri.cache_clear()

    second = run(anomaly_detection)
    assert second.is_completed(), second.message
    assert states(second)["prepare"] == ["Cached"]
    assert states(second)["train"] == ["Completed"]
    assert registry.client().get_registered_model(ANOMALY).latest_versions  # registered in the new store
    # The new store's v1 is served from a copy of its own; the old v1's copy stays as it was.
    assert endpoints.current("anomaly").version == "1"
    assert "does not hold" in registry.version_tag(ANOMALY, "1", "gate_reason")  # the gate says why it had no champion
    new_copy = served_folder("anomaly")
    assert new_copy != old_copy and (old_copy / "MLmodel").exists()
    fresh = Path(mlflow.artifacts.download_artifacts(artifact_uri=registry.model_uri(ANOMALY, "1"), dst_path=str(small_lake.parent / "check")))
    assert mlflow.models.Model.load(str(new_copy)).model_uuid == mlflow.models.Model.load(str(fresh)).model_uuid
    assert mlflow.models.Model.load(str(old_copy)).model_uuid != mlflow.models.Model.load(str(fresh)).model_uuid

    third = run(anomaly_detection)
    assert states(third)["train"] == ["Cached"]  # the new store keeps its id: unchanged reruns stay cached


def served_folder(key: str) -> Path:
    """The model folder the live colour of ``key`` serves, from the local endpoint state."""
    from deployments.local import state as st

    endpoint = st.load().endpoint(key)
    return Path(endpoint.deployments[endpoint.live_colour()].path)


def test_transient_fault_is_retried(small_lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_run_local = tasks.train.run_local
    calls: list[str] = []

    def killed_once(*args, **kwargs):
        calls.append("call")
        if len(calls) == 1:
            raise TransientComputeError("models.anomaly was killed by signal 9")
        return real_run_local(*args, **kwargs)

    monkeypatch.setattr(tasks.train, "run_local", killed_once)
    state = run(anomaly_detection, deploy=False)
    assert state.is_completed(), state.message
    assert len(calls) == 2
    assert attempts(state, "train") == [2]


def test_contract_error_fails_at_once_with_its_message(isolated: Path) -> None:
    bad = isolated / "no_target.parquet"
    features = {name: [1.0] * 20 for name in catalog.WIN_PROBABILITY_FEATURES}
    pl.DataFrame({**features, "is_closed": [True] * 20}).write_parquet(bad)  # no target_win
    state = run(win_probability, training_data=str(bad), deploy=False)
    assert state.is_failed()
    assert attempts(state, "train") == [1]
    assert "no_target.parquet" in state.message and "target_win" in state.message


def test_failed_deploy_keeps_the_previous_version_serving(small_lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = run(anomaly_detection)
    assert first.is_completed(), first.message
    assert endpoints.current("anomaly").version == "1"

    def smoke_test_fails(*args, **kwargs):
        raise endpoints.DeployError("smoke request to the idle deployment failed")

    monkeypatch.setattr(endpoints, "deploy", smoke_test_fails)
    second = run(anomaly_detection, param_n_estimators=60, force=True)
    assert second.is_failed()
    assert endpoints.current("anomaly").version == "1"
    versions = [str(v.version) for v in registry.client().search_model_versions(f"name='{ANOMALY}'")]
    assert versions == ["1"], "the rolled-back registration must not stay in the registry"
