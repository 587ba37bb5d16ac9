"""One project for the whole conformance module: its lake in Azurite, its own MLflow store, home
and endpoint map, the executing Azure ML workspace, and the local endpoint server over HTTP.

Training is the slow part, so each (model, compute) is trained once, by its flow, and the version
it registered is reused by both serving backends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.azure.conftest import ACCOUNT, azurite, lake_template, new_container, upload_folder  # noqa: F401 (fixtures)
from tests.conformance import steps
from tests.serving.conftest import Server, free_port, start_server, stop_server


@pytest.fixture(scope="module")
def project(azurite, lake_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:  # noqa: F811
    root = tmp_path_factory.mktemp("conformance")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SALESRISK_AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
        mp.setenv("SALESRISK_HOME", str(root / "home"))
        mp.setenv("SALESRISK_ENDPOINT_MAP", str(root / "config" / "endpoints.yaml"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("SALESRISK_SERVE_PORT", str(free_port()))
        mp.delenv("SALESRISK_SERVING", raising=False)
        mp.delenv("SALESRISK_COMPUTE", raising=False)
        mp.chdir(root)
        mp.setenv("SALESRISK_LAKE", upload_folder(lake_template, new_container(azurite) + "/lake"))
        yield root


@pytest.fixture(scope="module")
def workspace(project: Path, azurite) -> Iterator[object]:  # noqa: F811
    from salesrisk import workspace as ml_workspace
    from tests.azure.executing_workspace import ExecutingWorkspace

    container = new_container(azurite).removeprefix("abfs://").split("@", 1)[0]
    double = ExecutingWorkspace(project / "workspace", container, os.environ["MLFLOW_TRACKING_URI"], ACCOUNT)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ml_workspace, "get_ml_client", lambda: double.client)
        yield double


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[Server]:
    srv = start_server(int(os.environ["SALESRISK_SERVE_PORT"]), log_name="conformance-server.log")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def trained(project: Path, workspace, prefect_api) -> Callable[[str, str], object]:
    """``trained(model_id, compute)``: the flow's ModelSummary, trained (and registered) once.

    ``trained.reads[(model_id, compute)]`` lists the Parquet URIs that flow run read.
    """
    from salesrisk import storage

    done: dict[tuple[str, str], object] = {}
    reads: dict[tuple[str, str], list[str]] = {}
    real_read = storage.read_parquet

    def get(model_id: str, compute: str):
        if (model_id, compute) not in done:
            read = reads[(model_id, compute)] = []
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(storage, "read_parquet", lambda uri: read.append(uri) or real_read(uri))
                done[(model_id, compute)] = steps.run_model_flow(model_id, compute, deploy=False)
        return done[(model_id, compute)]

    get.reads = reads  # type: ignore[attr-defined]
    return get
