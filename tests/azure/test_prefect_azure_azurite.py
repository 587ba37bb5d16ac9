"""What docs/azure.md sets up for remote flow runs, on Azurite: flow code pushed to and pulled from
Blob Storage by prefect-azure's deployment steps, and results written through its storage block."""

from __future__ import annotations


import pytest

from tests.azure.conftest import new_container

pytestmark = pytest.mark.azurite


def test_flow_code_round_trips_through_blob_storage(azurite_env, tmp_path, monkeypatch) -> None:
    from prefect_azure.deployments.steps import pull_from_azure_blob_storage, push_to_azure_blob_storage

    container = new_container(azurite_env).split("://", 1)[1].split("@", 1)[0]
    project = tmp_path / "project"
    (project / "flows").mkdir(parents=True)
    (project / "flows" / "retrain_all.py").write_text("print('flow')\n")
    (project / "lake").mkdir()
    (project / "lake" / "big.parquet").write_bytes(b"data that must stay home")
    (project / ".prefectignore").write_text("lake/\nlake/*\n")
    credentials = {"connection_string": azurite_env.connection_string}

    monkeypatch.chdir(project)
    pushed = push_to_azure_blob_storage(container, "salesrisk-flows", credentials)
    runner = tmp_path / "runner"
    runner.mkdir()
    monkeypatch.chdir(runner)
    pull_from_azure_blob_storage(**pushed, credentials=credentials)

    assert (runner / "flows" / "retrain_all.py").read_text() == "print('flow')\n"
    assert not (runner / "lake").exists()  # .prefectignore kept the lake out


def test_result_storage_block_writes_and_reads_back(azurite_env) -> None:
    from prefect_azure import AzureBlobStorageCredentials
    from prefect_azure.blob_storage import AzureBlobStorageContainer

    container = new_container(azurite_env).split("://", 1)[1].split("@", 1)[0]
    block = AzureBlobStorageContainer(
        container_name=container,
        base_folder="prefect-results",
        credentials=AzureBlobStorageCredentials(connection_string=azurite_env.connection_string),
    )
    block.write_path("a1b2c3", b'{"result": 42}')
    assert block.read_path("a1b2c3") == b'{"result": 42}'
    from salesrisk import storage

    fs, _ = storage.filesystem(f"abfs://{container}@devstoreaccount1.dfs.core.windows.net/")
    assert fs.exists(f"{container}/prefect-results/a1b2c3")
