"""Wall time of `python flows/retrain_all.py` cold and on an unchanged rerun, with per-task times.

Usage: .venv/bin/python -m benchmarks.orchestration [--repeats 2]

Each repeat starts from an empty state folder (no Prefect home, no MLflow DB, no endpoints) on a
lake generated once with the defaults; cold = nothing cached, rerun = the same command again.
Orchestration overhead is the wall time minus the trainers' own fit time (from each run.json).
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

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "orchestration"

TASK_TIMES = r"""
import asyncio, json
from prefect.client.orchestration import get_client
async def main():
    async with get_client() as client:
        runs = await client.read_task_runs()
        out = {}
        for r in runs:
            key = r.name.split(" ")[0]
            out.setdefault(key, []).append(r.total_run_time.total_seconds())
        print(json.dumps(out))
asyncio.run(main())
"""


def env_for(state: Path, lake: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_HOME": str(state / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        "SALESRISK_HOME": str(state / ".salesrisk"),
        "SALESRISK_LAKE": str(lake),
        "SALESRISK_ENDPOINT_MAP": str(state / "config" / "endpoints.yaml"),
    }


def timed_run(state: Path, lake: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "flows" / "retrain_all.py")], cwd=state,
                          env=env_for(state, lake), capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"retrain_all failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def fit_seconds(state: Path) -> float:
    return sum(json.loads(p.read_text()).get("fit_seconds", 0.0) for p in (state / ".salesrisk" / "runs").rglob("run.json"))


def task_seconds(state: Path, lake: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", TASK_TIMES], cwd=state, env=env_for(state, lake),
                          capture_output=True, text=True, check=True)
    return {k: round(sum(v), 2) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    lake = WORK / "lake"
    if not lake.exists():
        from models import synthetic

        started = time.perf_counter()
        synthetic.generate(str(lake))
        print(f"generated the default lake in {time.perf_counter() - started:.1f} s")
    cold, rerun, fits, tasks = [], [], [], {}
    for repeat in range(args.repeats):
        state = WORK / f"state-{repeat}"
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir(parents=True)
        cold.append(timed_run(state, lake))
        fits.append(fit_seconds(state))
        rerun.append(timed_run(state, lake))
        tasks = task_seconds(state, lake)
        print(f"repeat {repeat}: cold {cold[-1]:.1f} s (fit {fits[-1]:.1f} s), rerun {rerun[-1]:.1f} s")
    med = statistics.median
    print(json.dumps({
        "cold_wall_s": round(med(cold), 1),
        "rerun_wall_s": round(med(rerun), 1),
        "trainer_fit_s_sum": round(med(fits), 1),
        "orchestration_overhead_s": round(med(cold) - med(fits), 1),
        "task_seconds_last_repeat_both_runs": tasks,
        "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
