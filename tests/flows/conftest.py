"""Flow tests run on Prefect's test harness (a real API on SQLite) over a small generated lake."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest


@pytest.fixture()
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh lake, registry, endpoint state and result store for one test."""
    monkeypatch.setenv("SALESRISK_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("SALESRISK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SALESRISK_ENDPOINT_MAP", str(tmp_path / "config" / "endpoints.yaml"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def small_lake_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated once per session; tests copy it so they can change it freely."""
    from models import synthetic

    root = tmp_path_factory.mktemp("lake-template") / "lake"
    synthetic.generate(str(root), n_opportunities=1500, tenants=2, start=date(2024, 1, 1), end=date(2025, 6, 30), seed=7)
    return root


@pytest.fixture()
def small_lake(isolated: Path, small_lake_template: Path) -> Path:
    import shutil

    lake = Path(os.environ["SALESRISK_LAKE"])
    shutil.copytree(small_lake_template, lake)
    return lake
