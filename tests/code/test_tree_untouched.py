"""`make test` leaves the checkout's own state alone, and what `make run` writes is ignored by git.

The whole run is guarded by tests/checkout_guard.py (registered in tests/conftest.py): the state
paths are recorded when the session starts and the run fails, naming the paths, if any test changed
them. `make test` starts that session from the developer's own shell (the Makefile adds only
variables the conftest overrides), so the guard checks every test with a developer's environment.
The tests here prove the guard detects writes, and that the conftest isolates a session on its own
whatever the shell holds: imported with the test settings removed, or with each one pointing into
the checkout, it sends every store to a folder of its own outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.checkout_guard import STATE, CheckoutGuard, differences, snapshot

pytest_plugins = ("pytester",)

PROJECT = Path(__file__).resolve().parents[2]
# Where the product keeps its state unless told otherwise: each must point outside the checkout.
STORES = ("SALESRISK_LAKE", "SALESRISK_HOME", "SALESRISK_ENDPOINT_MAP", "MLFLOW_TRACKING_URI", "PREFECT_HOME",
          "MPLCONFIGDIR")


def developer_environment() -> dict[str, str]:
    """This process's environment without what tests/conftest.py set."""
    ours = ("SALESRISK_", "MLFLOW_", "PREFECT_", "PYTEST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours) and k != "MPLCONFIGDIR"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def pointing_into_the_checkout() -> dict[str, str]:
    """A shell set up for `make run` in this checkout (and for a live Prefect API, Azure ML, Azure storage)."""
    return {
        "SALESRISK_LAKE": str(PROJECT / "lake"), "SALESRISK_HOME": str(PROJECT / ".salesrisk"),
        "SALESRISK_ENDPOINT_MAP": str(PROJECT / "config" / "endpoints.yaml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{PROJECT / 'mlflow.db'}", "PREFECT_HOME": str(PROJECT / ".prefect"),
        "MPLCONFIGDIR": str(PROJECT / ".cache" / "matplotlib"), "PREFECT_API_URL": "http://127.0.0.1:4200/api",
        "AZURE_ML_WORKSPACE": "ws", "SALESRISK_AZURE_STORAGE_CONNECTION_STRING": "AccountName=x",
    }


def conftest_environment(env: dict[str, str]) -> dict[str, str]:
    """The environment tests/conftest.py leaves, imported by a fresh interpreter started with ``env``."""
    done = subprocess.run(
        [sys.executable, "-c", "import json, os, tests.conftest; print(json.dumps(dict(os.environ)))"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("shell", ["without test settings", "set up for make run here"])
def test_the_conftest_sends_every_store_outside_the_checkout_whatever_the_shell_holds(shell: str) -> None:
    env = developer_environment()
    if shell == "set up for make run here":
        env.update(pointing_into_the_checkout())
    isolated = conftest_environment(env)
    root = Path(isolated["SALESRISK_TEST_ROOT"])
    assert PROJECT not in root.parents and root != PROJECT
    for name in STORES:
        value = isolated[name].removeprefix("sqlite:///")
        assert Path(value).is_relative_to(root), f"{name}={isolated[name]} is not under the session's {root}"
    assert "PREFECT_API_URL" not in isolated  # the session's own API, not one the shell names
    leaked = [k for k in isolated if k.startswith("AZURE_ML_") or k.endswith("CONNECTION_STRING")]
    assert not leaked, leaked


def test_the_snapshot_sees_every_kind_of_write(tmp_path: Path) -> None:
    (tmp_path / "lake" / "risk").mkdir(parents=True)
    (tmp_path / "lake" / "risk" / "part-0.parquet").write_bytes(b"abc")
    (tmp_path / "mlflow.db").write_bytes(b"db")
    (tmp_path / "src.py").write_text("not state")
    before = snapshot(tmp_path)
    assert differences(before, snapshot(tmp_path)) == []

    (tmp_path / "src.py").write_text("changed, but not state")
    assert differences(before, snapshot(tmp_path)) == []

    os.utime(tmp_path / "mlflow.db", ns=(1, 1))  # a rewrite with the same bytes still moves the mtime
    assert differences(before, snapshot(tmp_path)) == ["changed: mlflow.db"]
    os.utime(tmp_path / "mlflow.db", ns=(before["mlflow.db"][2],) * 2)

    (tmp_path / ".prefect").mkdir()
    (tmp_path / "lake" / "risk" / "part-0.parquet").unlink()
    assert differences(before, snapshot(tmp_path)) == ["added: .prefect", "removed: lake/risk/part-0.parquet"]


@pytest.mark.parametrize("name", STATE)
def test_a_session_that_writes_into_the_state_fails_naming_the_path(pytester: pytest.Pytester, name: str) -> None:
    pytester.makepyfile(test_writes=textwrap.dedent(f"""
        from pathlib import Path

        def test_clean():
            pass

        def test_writes():
            target = Path({str(pytester.path)!r}) / {name!r} / "x"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("written by a test")
    """))
    guard = CheckoutGuard(pytester.path)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", plugins=[guard])
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*the tests wrote into the checkout's state*", f"*added: {name}*"])


def test_a_session_that_writes_nothing_passes(pytester: pytest.Pytester) -> None:
    (pytester.path / "lake").mkdir()
    (pytester.path / "lake" / "part-0.parquet").write_bytes(b"abc")
    pytester.makepyfile(test_reads=f"""
        from pathlib import Path

        def test_reads():
            assert (Path({str(pytester.path)!r}) / "lake" / "part-0.parquet").read_bytes() == b"abc"
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", plugins=[CheckoutGuard(pytester.path)])
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    assert "checkout's state" not in result.stdout.str()


@pytest.mark.skipif(shutil.which("git") is None or not (PROJECT / ".git").exists(), reason="not a git checkout")
def test_what_make_run_writes_is_ignored_by_git() -> None:
    written = ["lake/risk_evaluations/part-0.parquet", "mlflow.db", "mlflow.db-journal", "mlartifacts/1/run/artifacts/x",
               ".prefect/prefect.db", ".prefect/local-api.log", ".salesrisk/endpoints/endpoint.key",
               "config/endpoints.yaml", "config/.endpoints.yaml.lock", ".cache/mlflow-ui.log",
               "lightning_logs/version_0/x", "catboost_info/x"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *written], cwd=PROJECT, capture_output=True, text=True)
    ignored = set(done.stdout.split())
    assert set(written) <= ignored, f"not ignored by .gitignore: {sorted(set(written) - ignored)}"
