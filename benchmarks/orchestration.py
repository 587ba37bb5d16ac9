"""Wall time of `python flows/retrain_all.py` cold and on an unchanged rerun, with task runs recorded.

Usage: .venv/bin/python -m benchmarks.orchestration [--repeats 3] [--no-readme]

Each repeat starts from an empty state folder (no Prefect home, no MLflow DB, no endpoints) on a
lake generated once with the defaults; cold = nothing cached, rerun = the same command again, on the
Prefect API the cold run left up (flows/local_api.py), as a second `make run` finds it; then once
more after stopping that API, for the cost of starting one.
Each run is checked for what the Prefect UI shows: every model's task runs recorded (prepare and
train ``Cached`` in the rerun). Orchestration overhead is the wall time minus the trainers' own fit
time (from each run.json). The verdicts compare the median of the repeats with the targets, and
the script writes its section of benchmarks/README.md itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.readme_section import load_average, median, replace_section, stamp, verdict

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "orchestration"
COLD_TARGET_S = 60.0
RERUN_TARGET_S = 10.0
PIPELINE = ("fetch", "prepare", "train", "evaluate", "register", "deploy")

# Run with the state's PREFECT_HOME after the flows ended: starts an API (no services) on it and
# reads what the UI would read.
RECORDED = r"""
import asyncio, json, re
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowFilter, FlowFilterName
from prefect.client.schemas.sorting import FlowRunSort
async def main():
    async with get_client() as client:
        parents = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["retrain-all"])),
                                              sort=FlowRunSort.START_TIME_ASC)
        out = []
        for parent in parents:
            children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": [parent.id]}))
            pipelines, seconds = [], {}
            for child in children:
                runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [child.id]}))
                states = {}
                for r in runs:
                    key = re.sub(r"-[0-9a-f]{3}$", "", r.name.split(" ")[0])  # bootstrap-lake-85f -> bootstrap-lake
                    states.setdefault(key, []).append(r.state.name if r.state else "none")
                    seconds[key] = seconds.get(key, 0.0) + r.total_run_time.total_seconds()
                pipelines.append({"industry": (child.parameters or {}).get("industry_id"), "states": states})
            out.append({"children": len(children), "pipelines": pipelines, "seconds": seconds})
        print(json.dumps(out))
asyncio.run(main())
"""


def env_for(state: Path, lake: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API") and k != "SALESRISK_LOCAL_API_IDLE_SECONDS"}
    env.update({
        "PREFECT_HOME": str(state / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        "SALESRISK_HOME": str(state / ".salesrisk"),
        "SALESRISK_LAKE": str(lake),
        "SALESRISK_ENDPOINT_MAP": str(state / "config" / "endpoints.yaml"),
    })
    return env


def timed_run(state: Path, lake: Path, **env: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "flows" / "retrain_all.py")], cwd=state,
                          env={**env_for(state, lake), **env}, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"retrain_all failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def stop_local_api(state: Path, since: str) -> None:
    """Stop the API the runs left up (flows/local_api.py), so it neither serves nor costs the next
    run, once it has written the task runs of the runs since ``since`` (it does so after they end)."""
    from flows.local_api import wait_recorded

    record = state / ".prefect" / "local-api.json"
    try:
        found = json.loads(record.read_text())
        pid = int(found["pid"])
        wait_recorded(since, timeout=60, url=found["url"])
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, KeyError):
        return
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def fit_seconds(state: Path) -> float:
    return sum(json.loads(p.read_text()).get("fit_seconds", 0.0) for p in (state / ".salesrisk" / "runs").rglob("run.json"))


def recorded(state: Path, lake: Path) -> list[dict] | str:
    """Per retrain-all run (oldest first): model sub-flows, task states and seconds by task name;
    or why they could not be read (the timings stand either way)."""
    env = {**env_for(state, lake), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}
    done = subprocess.run([sys.executable, "-c", RECORDED], cwd=state, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return f"not read: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_recorded(runs: list[dict] | str) -> str:
    """What the UI shows for the two runs, or the first thing missing. Every pipeline records fetch
    to register; deploy only where the gate promoted, which the cold run does for every model with
    nothing serving yet (an industry model only where it beats the global model)."""
    if isinstance(runs, str):
        return runs
    if len(runs) != 3:
        return f"{len(runs)} retrain-all runs recorded, expected 3"
    cold, rerun = runs[:2]
    models = [p for p in cold["pipelines"] if not p["industry"]]
    for pipeline in cold["pipelines"]:
        needed = PIPELINE if not pipeline["industry"] else PIPELINE[:-1]
        missing = [name for name in needed if not pipeline["states"].get(name)]
        if missing:
            return f"cold run, {pipeline['industry'] or 'a model'} pipeline: no task run of {', '.join(missing)}"
    for name in ("prepare", "train"):
        cached = sum(p["states"].get(name, []).count("Cached") for p in rerun["pipelines"])
        if cached != rerun["children"]:
            return f"rerun: {name} Cached in {cached} of {rerun['children']} pipelines"
    total = [sum(len(v) for p in run["pipelines"] for v in p["states"].values()) for run in runs[:2]]
    evaluated = sum(p["states"].get("evaluate", []).count("Cached") for p in rerun["pipelines"])
    return (f"{cold['children']} pipelines ({len(models)} models, {cold['children'] - len(models)} industry models): "
            f"{total[0]} task runs (cold), {total[1]} (rerun); prepare and train Cached in every rerun pipeline, "
            f"evaluate in {evaluated} (a decision already recorded against the same versions)")


def render(rows: list[dict], tasks: dict, check: str, repeats: int) -> str:
    cold = [r["cold"] for r in rows]
    rerun = [r["rerun"] for r in rows]
    fresh = [r["fresh"] for r in rows]
    fits = [r["fit"] for r in rows]
    heads = " | ".join(f"repeat {i}" for i in range(repeats))
    line = lambda label, values, unit=" s": f"| {label} | " + " | ".join(f"{v:.1f}{unit}" for v in values)  # noqa: E731
    cold_m, rerun_m = median(cold), median(rerun)
    loads = " | ".join(r["load"] for r in rows)
    task_line = ", ".join(f"{k} {v:.1f}" for k, v in sorted(tasks.items(), key=lambda kv: -kv[1]))
    return f"""## Orchestration

Command: `.venv/bin/python -m benchmarks.orchestration --repeats {repeats}` (this section is written by
it). Each repeat runs `python flows/retrain_all.py` from an empty state folder on the default
generated lake (cold: nothing cached, no Prefect database, no MLflow store, no Prefect API running),
then the same command again (rerun: nothing changed), as `make run` twice would. The cold run
starts the local Prefect API with the task-run recorder (flows/local_api.py), so every task run is
recorded for the UI; the API stays up while idle (SALESRISK_LOCAL_API_IDLE_SECONDS, default 300 s)
and the rerun uses it. A third run, after that API is stopped, starts its own as the cold run did. Measured
{stamp()}; the machine was shared with other jobs unless the load average says otherwise.

| figure | {heads} | median | target |
|---|{'---:|' * repeats}---:|---|
{line("cold wall", cold)} | **{cold_m:.1f} s** | <= {COLD_TARGET_S:.0f} s: **{verdict(cold_m, COLD_TARGET_S)}** |
{line("unchanged rerun wall", rerun)} | **{rerun_m:.1f} s** | <= {RERUN_TARGET_S:.0f} s: **{verdict(rerun_m, RERUN_TARGET_S)}** |
{line("unchanged rerun wall, starting its own API (SALESRISK_LOCAL_API_IDLE_SECONDS=0)", fresh)} | {median(fresh):.1f} s | |
{line("trainers' own fit time, summed over the pipelines", fits)} | {median(fits):.1f} s | |
| load average before the repeat (1/5/15 min) | {loads} | | |

Task runs recorded (read back through the Prefect API after both runs, last repeat): {check}.

Seconds per task name, summed over the models, both runs of the last repeat: {task_line}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-readme", action="store_true", help="print the section, leave README.md alone")
    args = parser.parse_args()
    lake = WORK / "lake"
    if not lake.exists():
        from models import synthetic

        started = time.perf_counter()
        synthetic.generate(str(lake))
        print(f"generated the default lake in {time.perf_counter() - started:.1f} s")
    rows, tasks, check = [], {}, ""
    for repeat in range(args.repeats):
        state = WORK / f"state-{repeat}"
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir(parents=True)
        load = load_average()
        since = datetime.now(timezone.utc).isoformat()
        cold = timed_run(state, lake)
        fit = fit_seconds(state)
        rerun = timed_run(state, lake)  # on the API the cold run left up, as a second `make run` finds it
        stop_local_api(state, since)
        fresh = timed_run(state, lake, SALESRISK_LOCAL_API_IDLE_SECONDS="0")
        runs = recorded(state, lake)
        check = check_recorded(runs)
        if not isinstance(runs, str):
            tasks = {k: round(sum(r["seconds"].get(k, 0.0) for r in runs), 2) for r in runs for k in r["seconds"]}
        rows.append({"cold": cold, "rerun": rerun, "fresh": fresh, "fit": fit, "load": load})
        print(f"repeat {repeat}: cold {cold:.1f} s (fit {fit:.1f} s), rerun {rerun:.1f} s, rerun on a fresh API "
              f"{fresh:.1f} s; load before {load}; {check}", flush=True)
    section = render(rows, tasks, check, args.repeats)
    print(section)
    if not args.no_readme:
        replace_section("orchestration", section)


if __name__ == "__main__":
    main()
