"""Session-wide isolation: every test session gets its own lake, MLflow DB, Prefect home and keys.

Nothing a test writes lands in the working tree, and nothing on the developer's machine leaks in.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="salesrisk-tests-"))
os.environ["SALESRISK_TEST_ROOT"] = str(_SESSION_DIR)
os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)
os.environ["SALESRISK_LOCAL_API_IDLE_SECONDS"] = "0"  # a flow script's API stops with it (tests that reuse one set their own)
os.environ.pop("SALESRISK_MLFLOW_UI_URL", None)  # artifact links point at the default MLflow UI address
os.environ["MPLCONFIGDIR"] = str(_SESSION_DIR / "mpl")
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION_DIR / 'mlflow.db'}"
os.environ["SALESRISK_LAKE"] = str(_SESSION_DIR / "lake")
os.environ["SALESRISK_HOME"] = str(_SESSION_DIR / "home")
os.environ["SALESRISK_ENDPOINT_MAP"] = str(_SESSION_DIR / "config" / "endpoints.yaml")
for _name in list(os.environ):
    if _name.startswith("AZURE_ML_") or _name.endswith("CONNECTION_STRING"):
        os.environ.pop(_name)


import pytest  # noqa: E402  (after the environment above is set)

from tests.checkout_guard import CheckoutGuard, is_xdist_worker  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """The run fails if any test of it wrote into the checkout's own state (tests/checkout_guard.py);
    checked once, by the process that owns the session."""
    if not is_xdist_worker(config):
        config.pluginmanager.register(CheckoutGuard(PROJECT), "salesrisk-checkout-guard")


# The longest files, longest first (summed per file from a `--durations=0` run of the whole
# suite). `make test`'s two xdist workers take whole files in collection order
# (--no-loadscope-reorder: xdist would otherwise order files by their number of tests): a long
# file started last keeps one worker busy while the other idles, so these go out first and the
# short files fill in behind them.
LONGEST_FIRST = (
    "tests/conformance/test_conformance.py",
    "tests/azure/test_retrain_all_azure.py",
    "tests/flows/test_sixth_model.py",
    "tests/flows/test_deployment_path.py",
    "tests/flows/test_local_api.py",
    "tests/flows/test_task_runs.py",
    "tests/reliability/test_faults.py",
    "tests/flows/test_orchestration.py",
    "tests/azure/test_industry_fanout_azure.py",
    "tests/flows/test_trainer_deploy.py",
    "tests/serving/test_server_http.py",
    "tests/reliability/test_bad_inputs_trainers.py",
    "tests/model/test_revenue_forecast.py",
    "tests/reliability/test_bad_inputs_flows.py",
    "tests/azure/test_executing_workspace.py",
    "tests/code/test_tree_untouched.py",
    "tests/flows/test_registry_conventions.py",
    "tests/code/test_preloaded_steps.py",
    "tests/industry/test_industry_family.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def _mlflow_follows_the_environment():
    """MLflow keeps the last set_tracking_uri in a process global; a test that pointed it at its own
    temporary store must not leave the next test talking to that store."""
    yield
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    tracking_utils._tracking_uri = None
    registry_utils._registry_uri = None
    os.environ.pop("MLFLOW_REGISTRY_URI", None)  # set_registry_uri exports it


@pytest.fixture(scope="session")
def prefect_api():
    """One Prefect test harness (a real API on SQLite) for every test folder that needs it."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
