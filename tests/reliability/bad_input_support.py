"""Shared pieces of the bad-input catalogue (issue 9): how a case is run, and what "nothing
changed" means.

A case runs its public entry point the way a user would (a command line, a flow) and must end in
exit code 2 (or a failed flow) with one message naming the input and the column or setting, and
leave no trace: no file in the output or the lake, no MLflow run, no registered version, and the
endpoint serving what it served before. Fixtures are imported by the test files (this folder's
conftest.py belongs to nobody in particular, so these live here).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import ipaddress
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
EXIT_BAD_INPUT = 2


# --- running an entry point ------------------------------------------------------------------


@dataclass
class Exit:
    """What a command line left: its exit code and standard error."""

    code: int
    stderr: str
    stdout: str = ""


def run_cli(module: str, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> Exit:
    """``python -m <module> ARGS`` in a fresh interpreter, as a user types it."""
    done = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(PROJECT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return Exit(done.returncode, done.stderr, done.stdout)


def run_main(module: str, args: Sequence[str], cwd: Path) -> Exit:
    """The same command line through ``<module>.main(argv)`` in this process: the trainers import
    MLflow, scikit-learn and torch (about 10 s per fresh interpreter here), so most cases skip the
    interpreter start-up; a few run as real processes (``run_cli``) to keep that path honest.
    An uncaught exception propagates and fails the test, as a traceback would."""
    err, out = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = importlib.import_module(module).main([str(a) for a in args])
            except SystemExit as exit_:  # argparse usage errors
                code = int(exit_.code or 0)
    finally:
        os.chdir(previous)
    return Exit(int(code), err.getvalue(), out.getvalue())


def assert_rejected(result: Exit, *names: str) -> None:
    """Exit 2, no traceback, and one ``error:`` line that names every one of ``names``."""
    assert result.code == EXIT_BAD_INPUT, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:") or ": error:" in line]
    assert len(errors) == 1, result.stderr[-3000:]
    for name in names:
        assert name in errors[0], f"{name!r} not named in: {errors[0]}"


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def tree_digest(path: Path) -> str:
    """Names and bytes of every file under ``path``: equal digests, nothing written or changed."""
    digest = hashlib.blake2b(digest_size=16)
    for file in files_under(path):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


# --- what must not change -----------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """MLflow runs, registered versions and the endpoints' state at one moment."""

    runs: int
    versions: tuple[tuple[str, str], ...]
    endpoints: str  # digest of SALESRISK_HOME/endpoints and the endpoint map


def snapshot() -> Snapshot:
    import mlflow

    from salesrisk import registry
    from salesrisk.settings import get_settings

    registry.configure()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    versions = tuple(sorted((v.name, str(v.version)) for v in registry.client().search_model_versions()))
    settings = get_settings()
    state = tree_digest(Path(settings.home) / "endpoints")
    mapping = Path(settings.endpoint_map)
    state += hashlib.blake2b(mapping.read_bytes() if mapping.exists() else b"", digest_size=8).hexdigest()
    return Snapshot(len(runs), versions, state)


@dataclass(frozen=True)
class Baseline:
    """A risk-scoring model trained, registered and deployed before the bad inputs arrive."""

    root: Path
    data: Path
    model_name: str
    version: str
    endpoint_key: str


_SESSION_CACHE: dict[str, Baseline] = {}
RISK_MODEL = "risk-scoring-global"
RISK_ENDPOINT = "risk_scoring_global"


@contextlib.contextmanager
def environment_at(root: Path) -> Iterator[Path]:
    """Lake, MLflow store, endpoint state and map under ``root`` while the block runs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SALESRISK_LAKE", str(root / "lake"))
        patch.setenv("SALESRISK_HOME", str(root / "home"))
        patch.setenv("SALESRISK_ENDPOINT_MAP", str(root / "config" / "endpoints.yaml"))
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.setenv("SALESRISK_SERVING", "local")
        patch.setenv("SALESRISK_COMPUTE", "local")
        yield root


@pytest.fixture(scope="module")
def isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh lake, MLflow store, endpoint state and map of this module's own, for the whole module."""
    with environment_at(tmp_path_factory.mktemp("bad-inputs")) as root:
        yield root


@pytest.fixture(scope="session")
def baseline_store(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    """One real risk-scoring model (small, 30 iterations) trained, registered and deployed through
    its command line with ``--deploy``, once per session in a store of its own: what every case
    must leave exactly as it was. The environment points at it only while a module uses it."""
    # Test modules import this fixture, so pytest holds one definition per module: the cache
    # below makes the session train once whichever module asks first.
    if "baseline" in _SESSION_CACHE:
        return _SESSION_CACHE["baseline"]
    import polars as pl

    from deployments import endpoints
    from tests.reliability.frames import opportunities

    root = tmp_path_factory.mktemp("bad-inputs-baseline")
    with environment_at(root):
        data = root / "baseline.parquet"
        opportunities().write_parquet(data)
        work = root / "baseline-run"
        work.mkdir()
        done = run_main(
            "models.risk_scoring",
            ["--training-data", data, "--output", work / "out", "--iterations", "30", "--deploy"],
            work,
        )
        assert done.code == 0, done.stderr[-3000:]
        live = endpoints.current(RISK_ENDPOINT)
        assert live is not None and live.model_name == RISK_MODEL
        assert pl.read_parquet(data).height > 0
        _SESSION_CACHE["baseline"] = Baseline(root, data, RISK_MODEL, live.version, RISK_ENDPOINT)
        return _SESSION_CACHE["baseline"]


@pytest.fixture(scope="module")
def baseline(baseline_store: Baseline) -> Iterator[Baseline]:
    """The session's baseline, with the environment pointing at its store for the whole module."""
    with environment_at(baseline_store.root):
        yield baseline_store


def assert_unchanged(before: Snapshot, baseline: Baseline | None = None) -> None:
    """No run logged, no version registered, endpoints as they were (and still the baseline's)."""
    after = snapshot()
    assert after.runs == before.runs, "an MLflow run was logged"
    assert after.versions == before.versions, "a model version was registered or removed"
    assert after.endpoints == before.endpoints, "the endpoint state changed"
    if baseline is not None:
        from deployments import endpoints

        live = endpoints.current(baseline.endpoint_key)
        assert (live.model_name, live.version) == (baseline.model_name, baseline.version)


# --- no network ------------------------------------------------------------------------------


def _loopback(host: object) -> bool:
    if not isinstance(host, str):
        return True  # AF_UNIX paths
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Refuse (and record) any connection or name lookup beyond loopback made in this process."""
    attempts: list[str] = []
    real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def guard(address: object) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if not _loopback(host):
            attempts.append(str(host))
            raise OSError(f"test: network access to {host} refused")

    def connect(self: socket.socket, address: object) -> None:
        guard(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        guard(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object):
        guard((host,))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts
