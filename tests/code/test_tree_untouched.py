"""`make test` leaves the checkout's own state alone, and what `make run` writes is ignored by git.

The whole run is guarded by tests/checkout_guard.py (registered in tests/conftest.py): the state
paths are recorded when the session starts and the run fails, naming the paths, if any test changed
them. The tests here prove that guard detects writes, and that the conftest isolates a run on its
own: a child pytest started with the environment a developer's shell would have (no test settings)
trains a model logged to MLflow and deploys one to the local endpoints, and the checkout's state is
unchanged after it.
"""

from __future__ import annotations

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
# Two cheap tests whose writes go, by default, into the checkout: an MLflow run and a lake read
# from a trainer's CLI in its own process (MLflow store, mlartifacts), and a deploy to the local
# endpoints (endpoint map in config/, keys in .salesrisk/). Every other test (flows on the Prefect
# harness and on their own API, reports, rollbacks) is checked by the session guard of the run this
# test is part of, which `make test` starts from the developer's own shell.
REPRESENTATIVE = (
    "tests/model/test_anomaly.py::test_cli_writes_runbook_metrics_logged_to_mlflow",
    "tests/serving/test_deploy_offline.py::test_first_deploy_goes_blue_and_writes_the_endpoint_map",
)


def developer_environment() -> dict[str, str]:
    """This process's environment without what tests/conftest.py set: the child's conftest must
    isolate the run on its own, or its writes land in the checkout and this test sees them."""
    ours = ("SALESRISK_", "MLFLOW_", "PREFECT_", "PYTEST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours) and k != "MPLCONFIGDIR"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def test_a_representative_test_run_leaves_the_checkouts_state_byte_identical() -> None:
    before = snapshot(PROJECT)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:xdist", *REPRESENTATIVE],
        cwd=PROJECT, env=developer_environment(), capture_output=True, text=True, timeout=1500,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout, done.stdout[-2000:]
    assert not differences(before, snapshot(PROJECT))


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
