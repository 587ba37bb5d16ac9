"""Tracking and registry through MLflow's API: a local SQLite file by default.

An Azure ML workspace speaks the same MLflow API (its tracking URI comes from the workspace), so
this module is the only place that knows where runs and model versions live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from salesrisk.settings import get_settings

ARTIFACTS_DIR = "mlartifacts"


def configure() -> str:
    """Point MLflow at the configured tracking URI and return it."""
    uri = get_settings().mlflow_tracking_uri
    # The registry follows the tracking URI when no registry URI is set (an Azure ML workspace
    # serves both). set_registry_uri would also export MLFLOW_REGISTRY_URI to this process's
    # environment, pinning every later client to this store.
    mlflow.set_tracking_uri(uri)
    return uri


def client() -> MlflowClient:
    configure()
    return MlflowClient()


def initialise_store() -> bool:
    """Create a fresh local store once, before trainers start in parallel: two processes creating
    the same SQLite file at the same moment race (one fails), and each pays for the migration.
    Returns whether it had to; an existing file or a remote store is left to MLflow."""
    uri = get_settings().mlflow_tracking_uri
    if not uri.startswith("sqlite:///"):
        return False
    path = Path(uri.removeprefix("sqlite:///"))
    if path.exists() and path.stat().st_size > 0:
        return False
    client().search_experiments(max_results=1)
    return True


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def experiment_id(name: str) -> str:
    """Get or create an experiment; locally its artifacts go to ./mlartifacts beside the DB."""
    uri = configure()
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = Path(ARTIFACTS_DIR).resolve().as_uri() if _is_local(uri) else None
    return mlflow.create_experiment(name, artifact_location=location)


def register_run_model(run_id: str, name: str, tags: dict[str, Any] | None = None) -> str:
    """Register the ``model`` artifact of a run under ``name`` and return the new version."""
    configure()
    version = mlflow.register_model(
        f"runs:/{run_id}/model", name, tags={k: str(v) for k, v in (tags or {}).items()}
    )
    return str(version.version)


def model_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


def set_version_tags(name: str, version: str, tags: dict[str, Any]) -> None:
    """Write the tags that differ (one store write each; an unchanged rerun writes none)."""
    c = client()
    current = c.get_model_version(name, version).tags or {}
    for key, value in tags.items():
        if current.get(key) != str(value):
            c.set_model_version_tag(name, version, key, str(value))


def delete_version(name: str, version: str) -> None:
    """Undo a registration (used when a deploy in the same transaction fails)."""
    client().delete_model_version(name, version)
