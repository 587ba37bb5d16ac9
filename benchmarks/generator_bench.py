"""Generator speed: a lake with about 1 million risk_evaluations rows (target: under 30 s).

``.venv/bin/python benchmarks/generator_bench.py [--n-opportunities 87000] [--repeats 3]``

Each run is its own process (``python -m models.synthetic``), so the time includes the import
and every table (snapshots are about seven times the evaluations), and peak memory is that
process's own (ru_maxrss from ``os.wait4``; this parent imports nothing heavy).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: benchmarks/ is importable from the project folder
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.readme_section import replace_section, stamp, verdict

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"


def run_once(n_opportunities: int, seed: int) -> dict:
    lake = WORK / "generator-lake"
    shutil.rmtree(lake, ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "models.synthetic", "--output-path", str(lake), "--n-opportunities", str(n_opportunities), "--seed", str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    out = proc.stdout.read()
    proc.stdout.close()
    if status != 0:
        raise SystemExit(f"generator failed (status {status})")
    rows = json.loads(out)["rows"]
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-opportunities", type=int, default=87_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-readme", action="store_true", help="print the section, do not write benchmarks/README.md")
    args = parser.parse_args(argv)
    runs = []
    for repeat in range(args.repeats):
        runs.append(run_once(args.n_opportunities, seed=0))
        print(json.dumps(runs[-1]), flush=True)
    seconds = statistics.median(r["seconds"] for r in runs)
    peak = statistics.median(r["peak_mb"] for r in runs)
    cpu = statistics.median(r["cpu_seconds"] for r in runs)
    rows = runs[0]["rows"]
    enough = rows["risk_evaluations"] >= 1_000_000
    result = verdict(seconds, 30.0) if enough else "not met (fewer than 1M evaluation rows)"
    each = ", ".join(f"{r['seconds']:.1f}" for r in runs)
    command = f"`.venv/bin/python benchmarks/generator_bench.py --n-opportunities {args.n_opportunities} --repeats {args.repeats}`"
    section = "\n".join([
        "## Data generator", "",
        f"Command: {command} (this section is written by it). Each run is its own process "
        f"(`python -m models.synthetic --n-opportunities {args.n_opportunities}`, all tables, default two years, each "
        "table checked against its contract before it is written), so the time includes the import; peak memory "
        f"is that process's own. Medians of {args.repeats}; measured {stamp()}; the machine was shared with other "
        "jobs unless the load average says otherwise.", "",
        "| risk_evaluations rows | all rows written | wall s (median) | runs, wall s | CPU s (median) | peak RSS MB (median) |",
        "|---:|---:|---:|---|---:|---:|",
        f"| {rows['risk_evaluations']:,} | {sum(rows.values()):,} | {seconds:.1f} | {each} | {cpu:.1f} | {peak:.0f} |", "",
        "| target | measured (median) | verdict |",
        "|---|---|---|",
        f"| >= 1M evaluation rows in < 30 s | {rows['risk_evaluations']:,} rows in {seconds:.1f} s | {result} |", "",
        "Most of the work is the daily `risk_snapshots` rows (simulated, contract-checked, written) that come "
        "with the evaluations, about seven per evaluation.",
    ])
    print(section)
    if not args.no_readme:
        replace_section("data-generator", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
