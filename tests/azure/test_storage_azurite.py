"""The lake on ``abfs://`` against Azurite: the generator writes it, preparation and a trainer read
it back through the Azure ML job files' own command lines, and partition filters prune."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import yaml

from salesrisk import catalog, storage

pytestmark = pytest.mark.azurite

ROOT = Path(__file__).resolve().parents[2]
JOB_FILES = ROOT / "deployments" / "azureml"
LAKE_ARGS = dict(n_opportunities=400, tenants=2, start=date(2025, 1, 1), end=date(2025, 6, 30), seed=3)


@pytest.fixture(scope="module")
def generated(azurite, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The same synthetic lake twice, made once for this module: in Azurite and in a local folder."""
    from models import synthetic
    from tests.azure.conftest import new_container

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SALESRISK_AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
        remote = f"{new_container(azurite)}/lake"
        local = tmp_path_factory.mktemp("local-lake") / "lake"
        assert synthetic.generate(remote, **LAKE_ARGS) == synthetic.generate(str(local), **LAKE_ARGS)
    return remote, local


@pytest.fixture()
def lakes(generated: tuple[str, Path], azurite_env) -> tuple[str, Path]:
    return generated


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(sorted(frame.columns)).sort(["tenant_id", "opportunity_id", "evaluation_date"])


def _tenants(local: Path) -> list[str]:
    return sorted(p.name.split("=", 1)[1] for p in (local / catalog.RISK_EVALUATIONS).iterdir())


def test_polars_reaches_azurite_on_its_own_port(azurite, monkeypatch) -> None:
    monkeypatch.setenv("SALESRISK_AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    options = storage.polars_storage_options("abfs://c@devstoreaccount1.dfs.core.windows.net/x")
    assert options["endpoint"] == f"http://127.0.0.1:{azurite.port}/devstoreaccount1"
    assert options["allow_http"] == "true" and "use_emulator" not in options  # it would dial :10000
    monkeypatch.setenv("SALESRISK_AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")
    assert storage.polars_storage_options("abfs://c@devstoreaccount1.dfs.core.windows.net/x") == {"use_emulator": "true"}


def test_generated_lake_reads_back_from_azurite_as_written(lakes) -> None:
    remote, local = lakes
    table = catalog.RISK_EVALUATIONS
    files = storage.list_parquet(storage.join(remote, table))
    assert files and all(re.search(r"/tenant_id=[^/]+/partition_date=\d{4}-\d{2}-\d{2}/[^/]+\.parquet$", f) for f in files)
    from_azurite = storage.scan_dataset(storage.join(remote, table)).collect()
    from_disk = storage.scan_dataset(str(local / table)).collect()
    assert from_azurite.height > 0
    assert _sorted(from_azurite).equals(_sorted(from_disk))
    # polars' native reader (hive partitions from the folder names) sees the same rows
    native = storage.scan_parquet(storage.join(remote, table)).collect()
    assert native.height == from_disk.height
    fingerprint = storage.fingerprint(storage.join(remote, table))
    assert fingerprint == storage.fingerprint(storage.join(remote, table))


def test_partition_filter_reads_only_its_partitions(lakes) -> None:
    remote, local = lakes
    table = catalog.RISK_EVALUATIONS
    keep, other = _tenants(local)
    before = storage.fingerprint(storage.join(remote, table))
    # Spoil one file of the other tenant: a reader that opens it fails, one that prunes does not.
    spoiled = next(f for f in storage.list_parquet(storage.join(remote, table)) if f"tenant_id={other}/" in f)
    fs, _ = storage.filesystem(remote)
    original = fs.cat_file(spoiled)
    with fs.open(spoiled, "wb") as handle:
        handle.write(b"not parquet")
    try:
        assert storage.fingerprint(storage.join(remote, table)) != before
        with pytest.raises(Exception, match="(?i)parquet"):
            storage.scan_dataset(storage.join(remote, table)).collect()

        where = {"tenant_id": lambda value: value == keep}
        only = storage.scan_dataset(storage.join(remote, table), where=where).collect()
        expected = storage.scan_dataset(str(local / table), where=where).collect()
        assert set(only["tenant_id"]) == {keep}
        assert _sorted(only).equals(_sorted(expected))
        pushed_down = storage.scan_parquet(storage.join(remote, table)).filter(pl.col("tenant_id") == keep).collect()
        assert pushed_down.height == expected.height
    finally:  # the lake is shared by this module's tests
        with fs.open(spoiled, "wb") as handle:
            handle.write(original)
    assert storage.scan_dataset(storage.join(remote, table)).collect().height > 0


def _job_command(file: str, inputs: dict[str, str], outputs: dict[str, str]) -> list[str]:
    """The job file's command with ${{inputs.x}} / ${{outputs.y}} filled in as Azure ML would:
    given values, else the file's literal defaults."""
    document = yaml.safe_load((JOB_FILES / file).read_text())
    defaults = {k: str(v["value"]) for k, v in document["inputs"].items() if "value" in v}
    values = {**defaults, **inputs}
    line = re.sub(r"\$\{\{inputs\.(\w+)\}\}", lambda m: shlex.quote(values[m[1]]), document["command"])
    line = re.sub(r"\$\{\{outputs\.(\w+)\}\}", lambda m: shlex.quote(outputs[m[1]]), line)
    words = shlex.split(line)
    assert words[0] == "python"
    return [sys.executable, *words[1:]]


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run from a scratch folder: MLflow's local artifacts land beside the working directory."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_job_files_prepare_and_train_from_the_lake_in_azurite(lakes, tmp_path) -> None:
    """azml-job-prepare-training.yaml then azml-job-anomaly.yaml, run here as the job would run
    them, with the lake (and the prepared data) in Azurite and one tenant selected."""
    remote, local = lakes
    keep, _ = _tenants(local)
    prepared = f"{remote.rsplit('/', 1)[0]}/prepared/anomaly"
    _run(_job_command(
        "azml-job-prepare-training.yaml",
        {
            "risk_evaluations": storage.join(remote, catalog.RISK_EVALUATIONS),
            "ml_outcomes": storage.join(remote, catalog.ML_OUTCOMES),
            "model_id": "anomaly",
            "tenant_id": keep,  # partition_date stays "none": the launcher drops it
        },
        {"training_prep": prepared},
    ), tmp_path)
    frame = storage.read_parquet(storage.join(prepared, "prepared.parquet"))
    assert frame.height > 0 and set(frame["tenant_id"]) == {keep}

    output = tmp_path / "model_output"
    _run(_job_command(
        "azml-job-anomaly.yaml",
        {"training_data": storage.join(prepared, "prepared.parquet"), "deploy_flag": "none"},
        {"model_output": str(output)},
    ), tmp_path)
    metrics = json.loads((output / "metrics.json").read_text())
    assert "F1" in metrics and 0.0 <= metrics["F1"] <= 1.0  # prepared data carries is_anomaly
    assert (output / "model" / "MLmodel").exists()
