"""Small generated lakes for the data tests: a few hundred opportunities, about a second each.

The session lake is read-only for tests; a test that damages a lake takes ``lake_copy``.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from salesrisk import catalog

LAKE_ARGS = dict(n_opportunities=900, pct_closed=0.7, tenants=2, start=date(2024, 1, 1), end=date(2024, 12, 31), seed=3)


@pytest.fixture(scope="session")
def small_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A year of two tenants: ~600 closed deals, below both top-up thresholds."""
    from models import synthetic

    root = tmp_path_factory.mktemp("data-lake") / "lake"
    synthetic.generate(str(root), **LAKE_ARGS)
    return root


@pytest.fixture()
def lake_copy(small_lake: Path, tmp_path: Path) -> Path:
    """A private copy of the small lake that a test may damage."""
    return Path(shutil.copytree(small_lake, tmp_path / "lake"))


def table(lake: Path, name: str) -> str:
    return str(lake / name)


def sources(lake: Path) -> dict[str, str]:
    """prepare()'s source arguments for a lake folder."""
    return {"risk_evaluations": table(lake, catalog.RISK_EVALUATIONS), "ml_outcomes": table(lake, catalog.ML_OUTCOMES)}


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []
