"""Benchmarks write their own section of benchmarks/README.md, so every figure there is the one
the script measured, and every verdict is computed from it, never typed by hand."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def replace_section(name: str, body: str, readme: Path = README) -> None:
    """Replace what lies between ``<!-- name:start -->`` and ``<!-- name:end -->`` (appended at the
    end when the markers are missing); the rest of the file is left as it is."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    readme.write_text(text)


def verdict(median: float, target: float, *, at_most: bool = True) -> str:
    """'met' when the median of the repeats is on the right side of the target, else 'not met'."""
    ok = median <= target if at_most else median >= target
    return "met" if ok else "not met"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def stamp() -> str:
    """When and where: UTC time, cores and the load average (1/5/15 min) as the run ends."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{now}, {os.cpu_count()} cores, load average {load_average()} (1/5/15 min)"
