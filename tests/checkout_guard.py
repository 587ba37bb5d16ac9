"""The whole test session leaves the checkout's own state alone (guide: "tests never write into the
checkout's own state"): the state paths are recorded when the session starts and compared when it
ends, and any difference fails the run with the paths that changed.

It runs in the process that owns the session (the xdist controller, or the only process without
xdist), so it covers every test of the run at the cost of two walks over the state paths.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

STATE = ("lake", "mlflow.db", "mlartifacts", ".prefect", ".salesrisk", "config")


def snapshot(root: Path, names: tuple[str, ...] = STATE) -> dict[str, tuple[int, int, int]]:
    """Every file and folder under the state paths: relative path -> (mode, size, mtime in ns).

    Any write to a file moves its mtime (even one that leaves the content as it was), and a file
    added or removed changes the set of paths, so no content needs hashing: a developer's checkout
    can hold a large lake and MLflow store after `make run`.
    """
    found: dict[str, tuple[int, int, int]] = {}
    for name in names:
        top = root / name
        if not top.exists() and not top.is_symlink():
            continue
        paths = [top, *sorted(top.rglob("*"))] if top.is_dir() else [top]
        for path in paths:
            stat = path.lstat()
            size = 0 if path.is_dir() else stat.st_size  # a folder's size and mtime follow its entries
            found[str(path.relative_to(root))] = (stat.st_mode, size, 0 if path.is_dir() else stat.st_mtime_ns)
    return found


def differences(before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]) -> list[str]:
    """Readable lines naming what was added, removed or changed; empty when nothing was."""
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return [f"{what}: {', '.join(paths[:20])}{' ...' if len(paths) > 20 else ''}"
            for what, paths in (("added", added), ("removed", removed), ("changed", changed)) if paths]


class CheckoutGuard:
    """A pytest plugin: fails the session (exit status 1) when the state under ``root`` changed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.before: dict[str, tuple[int, int, int]] | None = None
        self.found: list[str] = []

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.before = snapshot(self.root)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.before is None:
            return
        self.found = differences(self.before, snapshot(self.root))
        if self.found and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:  # noqa: ANN001 (pytest's TerminalReporter)
        if self.found:
            terminalreporter.section("the tests wrote into the checkout's state", sep="=", red=True, bold=True)
            terminalreporter.write_line(f"under {self.root}:")
            for line in self.found:
                terminalreporter.write_line(f"  {line}", red=True)


def is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput") or "PYTEST_XDIST_WORKER" in os.environ
