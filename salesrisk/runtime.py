"""Process defaults for running on one laptop: quiet libraries, run state kept in the project.

Called by entry points before Prefect or lightning are imported; only ``setdefault``s, so a
user's own environment always wins.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

NOISY_LOGGERS = (
    "lightning",
    "lightning.pytorch",
    "pytorch_lightning",
    "lightning_fabric",
    "NP",
    "neuralprophet",
    "azure",
    "alembic",
    "mlflow",
    "urllib3",
    "httpx",
)


def apply_defaults() -> None:
    os.environ.setdefault("PREFECT_HOME", str(Path(".prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    # A fresh Prefect home migrates its database on first start; on a busy 2-core machine that
    # outlasts the 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("MPLCONFIGDIR", str(Path(".cache/matplotlib").resolve()))
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    quiet_libraries()


def quiet_libraries() -> None:
    """Keep the command line to one line per step: library chatter goes below WARNING."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow warns on every smoke request that carries id columns the signature ignores.
    logging.getLogger("mlflow.models.utils").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="marshmallow")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
