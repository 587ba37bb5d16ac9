"""Faults from issue 9: a killed trainer, a failure between register and deploy, transient storage
errors. The flows run for real on Prefect's test harness (trainer subprocesses, MLflow on SQLite,
Azurite); outcomes are read from Prefect's own records, the registry and the endpoint state."""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
from pathlib import Path

import pytest
from prefect import flow

import deployments.local.backend
from deployments import endpoints
from deployments.compute import TransientComputeError, staged_output
from flows.anomaly_detection import anomaly_detection
from salesrisk import catalog, registry, storage
from tasks.fetch import fetch
from tasks.policies import RETRIES
from tests.azure.conftest import azurite, azurite_env, new_container  # noqa: F401  (fixtures)
from tests.flows.conftest import isolated  # noqa: F401  (fixture)
from tests.flows.helpers import by_task, task_runs

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

ANOMALY = "anomaly-detection-isolation-forest"
CHEAP = {"param_n_estimators": 20}  # the cheapest trainer, kept small

# Installed as sitecustomize.py on the trainer's PYTHONPATH: the real trainer process runs as
# usual, writes model/ and metrics.json, then SIGKILLs itself before it logs or writes run.json.
KILL_HOOK = textwrap.dedent(
    """
    import importlib.abc, importlib.machinery, json, os, signal, sys

    class _KillAfterMetrics(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != "models.trainer":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            real_exec = spec.loader.exec_module

            def exec_module(module):
                real_exec(module)
                write_metrics = module.write_metrics

                def write_then_die(output, metrics):
                    written = write_metrics(output, metrics)
                    marker = os.path.join(os.environ["KILL_MARKERS"], str(os.getpid()))
                    with open(marker, "w") as handle:  # where it was killed, and what it had written
                        json.dump({"output": str(output), "written": sorted(os.listdir(output))}, handle)
                    os.kill(os.getpid(), signal.SIGKILL)
                    return written

                module.write_metrics = write_then_die

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _KillAfterMetrics())
    """
)


def run(flow_fn, **parameters):
    return asyncio.run(flow_fn(**parameters, return_state=True))


def attempts(state, name: str) -> list[int]:
    runs = asyncio.run(task_runs(state.state_details.flow_run_id))
    return [r.run_count for r in by_task(runs, name)]


def versions(name: str = ANOMALY) -> list[str]:
    return sorted(str(v.version) for v in registry.client().search_model_versions(f"name='{name}'"))


def runs_folder() -> Path:
    return Path(os.environ["SALESRISK_HOME"]) / "runs" / "anomaly"


@pytest.fixture()
def training_data(isolated: Path) -> str:
    """A small labelled anomaly training set: the flow skips the lake and its preparation."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(7)
    rows = 400
    labels = rng.random(rows) < 0.1
    frame = pl.DataFrame({
        f"feature_{i}": rng.normal(0, 1, rows) + np.where(labels, 4.0, 0.0) for i in range(4)
    }).with_columns(pl.Series(catalog.ANOMALY_LABEL, labels.astype(int)))
    path = isolated / "anomaly-training.parquet"
    frame.write_parquet(path)
    return str(path)


def test_killed_trainer_is_retried_then_fails_leaving_nothing_half_written(
    training_data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks, markers = tmp_path / "hooks", tmp_path / "killed"
    hooks.mkdir()
    markers.mkdir()
    (hooks / "sitecustomize.py").write_text(KILL_HOOK)
    monkeypatch.setenv("PYTHONPATH", str(hooks))  # the trainer subprocess inherits it
    monkeypatch.setenv("KILL_MARKERS", str(markers))

    state = run(anomaly_detection, training_data=training_data, **CHEAP)

    assert state.is_failed()
    assert "models.anomaly was killed by signal 9" in state.message
    assert attempts(state, "train") == [RETRIES + 1]
    killed = sorted(markers.iterdir())
    assert len(killed) == RETRIES + 1, "each attempt is a real trainer process, really killed"
    for marker in killed:  # each was killed mid-run, with model/ and metrics.json written ...
        at_kill = json.loads(marker.read_text())
        assert at_kill["written"] == ["metrics.json", "model"]
        assert Path(at_kill["output"]).parent == runs_folder()
    # ... yet neither its folder nor a half-written output folder is left for a later run to trust
    assert not runs_folder().exists() or sorted(runs_folder().iterdir()) == []
    assert versions() == []
    assert endpoints.current("anomaly") is None


def test_a_failed_retrain_leaves_the_previous_output_whole_and_a_good_one_replaces_it(tmp_path: Path) -> None:
    output = tmp_path / "runs" / "anomaly" / "key"
    output.mkdir(parents=True)
    (output / "metrics.json").write_text('{"F1": 0.5}')
    (output / "run.json").write_text('{"run_id": "old"}')

    with pytest.raises(TransientComputeError):
        with staged_output(str(output)) as staging:
            Path(staging, "model").mkdir()
            Path(staging, "metrics.json").write_text('{"F1": 0.9}')  # then the trainer dies
            raise TransientComputeError("models.anomaly was killed by signal 9")
    assert json.loads((output / "run.json").read_text()) == {"run_id": "old"}
    assert json.loads((output / "metrics.json").read_text()) == {"F1": 0.5}
    assert sorted(p.name for p in output.parent.iterdir()) == ["key"]

    with staged_output(str(output)) as staging:
        Path(staging, "metrics.json").write_text('{"F1": 0.9}')
        Path(staging, "run.json").write_text('{"run_id": "new"}')
    assert sorted(p.name for p in output.iterdir()) == ["metrics.json", "run.json"]
    assert json.loads((output / "run.json").read_text()) == {"run_id": "new"}
    assert sorted(p.name for p in output.parent.iterdir()) == ["key"]


def test_failure_between_register_and_deploy_keeps_the_previous_version_serving(
    training_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run(anomaly_detection, training_data=training_data, **CHEAP)
    assert first.is_completed(), first.message
    assert endpoints.current("anomaly").version == "1"

    # The registry creates version 2 but its answer is lost once: register's retry must still
    # know version 2 is its own to undo.
    real_register = registry.register_run_model
    answers = []

    def answer_lost_once(run_id, name, tags=None):
        version = real_register(run_id, name, tags=tags)
        answers.append(version)
        if len(answers) == 1:
            raise ConnectionError(f"registry answer for {name} v{version} lost")
        return version

    # Then every deploy attempt fails at its first step, fetching the new version from the registry.
    registered_when_failing: list[list[str]] = []

    def registry_download_interrupted(model_name, version, settings=None):
        registered_when_failing.append(versions(model_name))
        raise ConnectionError(f"download of {model_name} v{version} from the registry was interrupted")

    monkeypatch.setattr(registry, "register_run_model", answer_lost_once)
    monkeypatch.setattr(deployments.local.backend, "fetch_model", registry_download_interrupted)
    second = run(anomaly_detection, training_data=training_data, param_n_estimators=30, force=True)

    assert second.is_failed()
    assert "download of anomaly-detection-isolation-forest v2" in second.message
    assert answers == ["2"], "the retried register found its version instead of registering again"
    # Transient errors are retried inside the one attempt of each task: a failed Prefect attempt
    # would roll the transaction back at once (see policies.with_retries).
    assert attempts(second, "register") == [1] and attempts(second, "deploy") == [1]
    # Every deploy attempt found version 2 registered: nothing was rolled back before the last one.
    assert registered_when_failing == [["1", "2"]] * (RETRIES + 1)
    live = endpoints.current("anomaly")
    assert (live.version, live.previous_version) == ("1", None), "the previous version keeps serving"
    assert versions() == ["1"], "the transaction's rollback removed version 2"


class Faults:
    """The first ``failures`` calls of ``method``, on any filesystem storage hands out, raise ``error``."""

    def __init__(self, method: str, error: BaseException, failures: int) -> None:
        self.method, self.error, self.left = method, error, failures
        self.log: list[str] = []

    def hit(self) -> None:
        if self.left > 0:
            self.left -= 1
            self.log.append("failed")
            raise self.error
        self.log.append("ok")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> Faults:
        real_filesystem = storage.filesystem

        def filesystem(uri: str):
            fs, path = real_filesystem(uri)
            return FlakyFilesystem(fs, self), path

        monkeypatch.setattr(storage, "filesystem", filesystem)
        return self


class FlakyFilesystem:
    """An fsspec filesystem whose one method goes through :class:`Faults` first."""

    def __init__(self, fs, faults: Faults) -> None:
        self._fs, self._faults = fs, faults

    def __getattr__(self, name: str):
        real = getattr(self._fs, name)
        if name != self._faults.method:
            return real

        def flaky(*args, **kwargs):
            self._faults.hit()
            return real(*args, **kwargs)

        return flaky


def test_transient_storage_errors_are_retried_and_the_flow_recovers(
    training_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reaching the training data (the fetch step's fingerprint) fails twice, as a dropped share would,
    faults = Faults("exists", ConnectionResetError(104, "Connection reset by peer"), failures=RETRIES).install(monkeypatch)
    # and the deploy's download of the new version from the registry's artifact store fails once.
    real_fetch_model = deployments.local.backend.fetch_model
    downloads: list[str] = []

    def download_fails_once(model_name, version, settings=None):
        downloads.append(version)
        if len(downloads) == 1:
            raise TimeoutError(f"download of {model_name} v{version} timed out")
        return real_fetch_model(model_name, version, settings)

    monkeypatch.setattr(deployments.local.backend, "fetch_model", download_fails_once)

    state = run(anomaly_detection, training_data=training_data, **CHEAP)

    assert state.is_completed(), state.message
    assert faults.log[: RETRIES + 1] == ["failed"] * RETRIES + ["ok"]
    assert attempts(state, "fetch") == [RETRIES + 1]
    assert downloads == ["1", "1"] and attempts(state, "deploy") == [1]
    summary = state.result()
    # The recovered run's output is whole, and is what got registered and serves.
    assert summary.version == "1" and versions() == ["1"], "a recovered deploy keeps its registration"
    assert endpoints.current("anomaly").version == "1"
    [output] = list(runs_folder().iterdir())  # one folder: no staging or retired leftovers
    assert {p.name for p in output.iterdir()} >= {"model", "metrics.json", "run.json"}
    assert (output / "model" / "MLmodel").exists()
    version = registry.client().get_model_version(ANOMALY, "1")
    assert version.run_id == json.loads((output / "run.json").read_text())["run_id"]
    assert version.tags["data_fingerprint"] == storage.fingerprint(training_data)


@flow(name="fetch-one-table")
async def fetch_one_table(uri: str) -> str:
    return (await fetch(uri)).fingerprint


@pytest.mark.azurite
def test_azure_storage_errors_on_azurite_are_retried_and_missing_tables_are_not(
    azurite_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    import polars as pl
    from azure.core.exceptions import ServiceRequestError

    table = f"{new_container(azurite_env)}/{catalog.RISK_EVALUATIONS}"
    storage.write_dataset(pl.DataFrame({"tenant_id": ["a", "b"], "score": [0.1, 0.9]}), table, ["tenant_id"])
    expected = storage.fingerprint(table)

    # What adlfs raises once the Azure SDK's own retries gave up on the connection.
    faults = Faults("find", ServiceRequestError("Connection reset by Azurite"), failures=RETRIES).install(monkeypatch)
    state = asyncio.run(fetch_one_table(table, return_state=True))
    assert state.is_completed(), state.message
    assert attempts(state, "fetch") == [RETRIES + 1]
    assert state.result() == expected
    assert faults.log == ["failed"] * RETRIES + ["ok"]

    missing = asyncio.run(fetch_one_table(f"{table}-gone", return_state=True))
    assert missing.is_failed() and "no such file or folder" in missing.message
    assert attempts(missing, "fetch") == [1], "a missing table is permanent: no retry"
