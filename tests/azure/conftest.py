"""Azure tests: Azurite (the blob emulator, started once per session) and an MLClient double.

Azurite comes from npm (``make test`` runs ``npm install``; package.json pins 3.35.0). It is
started on a free loopback port with its data under the session's temp dir, with the flags
measured in ../shared/stack-notes.md; the tests skip only when the binary is not installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Azurite's well-known development account (public, documented, works only against the emulator).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
STARTUP_SECONDS = 60


@dataclass(frozen=True)
class Azurite:
    port: int
    log: Path

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def azurite_binary() -> str | None:
    return shutil.which("azurite-blob") or next(
        (str(p) for p in [ROOT / "node_modules" / ".bin" / "azurite-blob"] if p.exists()), None
    )


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    binary = azurite_binary()
    if binary is None:
        pytest.skip("azurite-blob is not installed: run `npm install --no-audit --no-fund` (make test does)")
    root = Path(os.environ.get("SALESRISK_TEST_ROOT") or tmp_path_factory.getbasetemp()) / "azurite"
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = root / "azurite.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(data),
             "--skipApiVersionCheck", "--disableTelemetry"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Azurite did not start on 127.0.0.1:{port}:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield Azurite(port, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def new_container(azurite: Azurite) -> str:
    """A fresh container in Azurite; returns its ``abfs://`` root (needs the connection string set)."""
    from salesrisk import storage

    container = f"lake-{uuid.uuid4().hex[:12]}"
    fs, _ = storage.filesystem(f"abfs://{container}@{ACCOUNT}.dfs.core.windows.net/")
    fs.mkdir(container)
    return f"abfs://{container}@{ACCOUNT}.dfs.core.windows.net"


@pytest.fixture()
def azurite_env(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Azurite:
    """Point the settings (and subprocesses, through the environment) at Azurite."""
    monkeypatch.setenv("SALESRISK_AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    return azurite


@pytest.fixture()
def lake_container(azurite_env: Azurite) -> str:
    return new_container(azurite_env)


@pytest.fixture()
def workspace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The scripted MLClient double, installed as what ``get_ml_client()`` returns."""
    from salesrisk import workspace as ml_workspace
    from tests.azure.workspace_double import WorkspaceDouble

    double = WorkspaceDouble()
    monkeypatch.setattr(ml_workspace, "get_ml_client", lambda: double.client)
    monkeypatch.setenv("SALESRISK_ENDPOINT_MAP", str(tmp_path / "config" / "endpoints.yaml"))
    return double


@pytest.fixture()
def executing_workspace(azurite_env: Azurite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """An Azure ML workspace that runs the jobs it is given (see executing_workspace.py), its
    datastore a fresh Azurite container and its MLflow the test's store (MLFLOW_TRACKING_URI as
    set when this fixture runs), installed as what ``get_ml_client()`` returns."""
    from salesrisk import workspace as ml_workspace
    from tests.azure.executing_workspace import ExecutingWorkspace

    container = new_container(azurite_env).removeprefix("abfs://").split("@", 1)[0]
    double = ExecutingWorkspace(tmp_path / "workspace", container, os.environ["MLFLOW_TRACKING_URI"])
    monkeypatch.setattr(ml_workspace, "get_ml_client", lambda: double.client)
    return double


@pytest.fixture(scope="session")
def lake_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic lake, generated once per session (the flow tests' size)."""
    from datetime import date

    from models import synthetic

    root = tmp_path_factory.mktemp("azure-lake-template") / "lake"
    synthetic.generate(str(root), n_opportunities=1500, tenants=2, start=date(2024, 1, 1), end=date(2025, 6, 30), seed=7)
    return root


def upload_folder(local: Path, uri: str) -> str:
    """Copy a local folder to ``uri`` (abfs://) file by file; returns ``uri``."""
    from salesrisk import storage

    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        storage.write_bytes(file.read_bytes(), storage.join(uri, file.relative_to(local).as_posix()))
    return uri


@pytest.fixture()
def azure_project(azurite_env: Azurite, lake_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """One test's own project state, its lake in an Azurite container; returns the lake URI."""
    monkeypatch.setenv("SALESRISK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SALESRISK_ENDPOINT_MAP", str(tmp_path / "config" / "endpoints.yaml"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    lake = upload_folder(lake_template, new_container(azurite_env) + "/lake")
    monkeypatch.setenv("SALESRISK_LAKE", lake)
    return lake
