"""The architecture's one rule that code review misses: imports point one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> packages of ours it must never import (at module level or inside functions)
FORBIDDEN = {
    "salesrisk": {"models", "tasks", "flows", "deployments", "prefect"},
    "models": {"tasks", "flows", "deployments", "prefect"},
    "deployments": {"tasks", "flows", "prefect"},
    "tasks": {"flows"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
        if imported_roots(path) & FORBIDDEN[package]
    }
    assert offenders == {}, f"{package}/ imports what it must not: {offenders}"


def test_models_package_imports_without_prefect() -> None:
    """A trainer must start on Azure ML compute where Prefect is not installed."""
    import subprocess
    import sys

    code = (
        "import sys, importlib\n"
        "sys.modules['prefect'] = None\n"  # any import of prefect now raises ImportError
        "for name in ['models.trainer', 'models.contracts', 'models.prepare', 'models.synthetic',\n"
        "             'models.risk_scoring', 'models.win_probability', 'models.anomaly',\n"
        "             'models.risk_trajectory', 'models.revenue_forecast']:\n"
        "    importlib.import_module(name)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


def test_no_module_is_found_by_a_string() -> None:
    """Models are bound to their specs by reference (models/specs.py), never looked up by name."""
    import re

    lookup = re.compile(r"import_module\(\s*f?[\"']models\.")
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("models", "tasks", "flows", "salesrisk")
        for path in sorted((ROOT / package).rglob("*.py"))
        if lookup.search(path.read_text())
    ]
    assert offenders == []


def test_each_model_is_named_in_at_most_three_product_files() -> None:
    """The spec is the one place per model: its data (salesrisk/catalog.py), its binding
    (models/specs.py) and its own trainer module; every other layer derives from them."""
    import subprocess

    from salesrisk import catalog

    for model_id in catalog.MODELS:
        listed = subprocess.run(
            ["git", "grep", "-l", "-w", model_id, "--", "*.py", ":!tests/**", ":!benchmarks/**", ":!docs/**"],
            capture_output=True, text=True, cwd=ROOT,
        ).stdout.split()
        allowed = {"salesrisk/catalog.py", "models/specs.py", f"models/{model_id}.py"}
        extra = sorted(set(listed) - allowed)
        if model_id in ("risk_trajectory", "revenue_forecast"):
            assert extra == [], f"{model_id} named outside its spec: {extra}"
