"""Bounded load on the local endpoint server: many concurrent clients, a real trained model.

``.venv/bin/python -m benchmarks.load [--concurrency 32] [--seconds 25] [--keep]``

Trains the real win-probability model (``models.win_probability.train``: five cross-fitted
CatBoost classifiers and the chosen calibration, on generated deals), registers it in a throw-away
MLflow store, deploys it to ``win_probability`` with ``deployments.endpoints.deploy`` and starts
``python -m deployments.serve`` with key auth, validation and inference logging on. Then
``--concurrency`` client threads (``http.client``, one keep-alive connection each) send requests in a loop
on 127.0.0.1, in two phases of ``--seconds`` each (together at most ``--max-total``, 60 s):

- ``1 row, top_factors``: the model's full answer (probability and SHAP ``top_factors``);
- ``100 rows, probability only``: ``"params": {"top_factors": false}``.

Every answer must be HTTP 200 with one record per row: any other status, a transport error or a
short answer is an error, and the run exits 1 if there was one. Prints a Markdown table per phase
(requests, errors, p50/p99 latency, rows/s) and the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.serving import ROOT, WORK, free_port, generate, stop, wait_http, work_env
from benchmarks.readme_section import replace_section, stamp


@dataclass
class Stack:
    """A running endpoint server with the real win-probability model deployed."""

    url: str
    key: str
    work: Path
    process: subprocess.Popen
    log_path: Path
    columns: list[str]
    version: str


def train_real_model(work: Path, rows: int = 5_000, iterations: int = 300) -> tuple[str, str]:
    """The trainer's model on generated deals, logged and registered; returns (name, version)."""
    import mlflow
    import polars as pl

    from models import win_probability as wp
    from salesrisk import catalog, registry

    x, y = generate(rows)
    frame = pl.from_pandas(x).with_columns(pl.Series(catalog.WIN_TARGET, y))
    trained = wp.train(frame, list(catalog.WIN_PROBABILITY_FEATURES), wp.WinParams(iterations=iterations))
    model_dir = work / "trained" / "model"
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    wp.save(trained, model_dir, frame)
    registry.configure()
    experiment = mlflow.create_experiment("load-benchmark", artifact_location=(work / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifacts(str(model_dir), "model")
    name = catalog.registered_name("win_probability")
    return name, registry.register_run_model(run.info.run_id, name)


@contextlib.contextmanager
def serving_stack(prefix: str, *, keep: bool = False, server_args: tuple[str, ...] = ()) -> Iterator[Stack]:
    """Train, register, deploy and serve in a fresh work folder; stop and clean up afterwards."""
    from salesrisk import catalog, runtime

    WORK.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=WORK))
    port = free_port()
    key = secrets.token_urlsafe(32)
    os.environ.update({**work_env(work, port, key), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    runtime.quiet_libraries()
    process = None
    try:
        print(f"work folder {work}", file=sys.stderr)
        name, version = train_real_model(work)
        log_path = work / "server.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "deployments.serve", "--port", str(port), "--log-level", "warning", *server_args],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )
        wait_http(port, "/health", process)
        from deployments import endpoints

        endpoints.deploy("win_probability", name, version)  # smoke-tested over HTTP on the running server
        yield Stack(f"http://127.0.0.1:{port}", key, work, process, log_path, list(catalog.WIN_PROBABILITY_FEATURES), version)
    finally:
        if process is not None:
            stop(process)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


@dataclass
class Phase:
    name: str
    rows: int
    bodies: list[bytes]
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000.0 if self.latencies else float("nan")


def run_phase(stack: Stack, phase: Phase, concurrency: int, seconds: float) -> None:
    """``concurrency`` client threads, each posting in a loop on its own keep-alive connection
    until ``seconds`` have passed. ``http.client`` rather than ``httpx.AsyncClient``: on this
    machine the async client spent 6 ms of CPU per request and became the bottleneck it measured."""
    port = int(stack.url.rsplit(":", 1)[1])
    headers = {"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"}
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()

    def worker(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        latencies, errors, i = [], [], index
        while time.perf_counter() < deadline:
            body = phase.bodies[i % len(phase.bodies)]
            i += concurrency
            t0 = time.perf_counter()
            try:
                connection.request("POST", "/score/win_probability", body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as error:
                errors.append(f"{type(error).__name__}: {error}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                continue
            latency = time.perf_counter() - t0
            if response.status != 200:
                errors.append(f"HTTP {response.status}: {data[:200]!r}")
            elif len(json.loads(data)) != phase.rows:
                errors.append(f"{len(json.loads(data))} records for {phase.rows} rows")
            else:
                latencies.append(latency)
        connection.close()
        with lock:
            phase.latencies.extend(latencies)
            phase.errors.extend(errors)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.elapsed = time.perf_counter() - start


def bodies(columns: list[str], rows: int, count: int, params: dict | None) -> list[bytes]:
    x, _ = generate(rows * count, seed=7)
    out = []
    for i in range(count):
        block = x.iloc[i * rows : (i + 1) * rows].to_numpy().tolist()
        payload: dict = {"input_data": {"columns": columns, "data": block}}
        if params is not None:
            payload["params"] = params
        out.append(json.dumps(payload).encode())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients (connections)")
    parser.add_argument("--seconds", type=float, default=25.0, help="length of each phase")
    parser.add_argument("--max-total", type=float, default=60.0, help="cap on the phases' total length")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (model, lake, server log)")
    parser.add_argument("--no-readme", action="store_true", help="print the section, do not write benchmarks/README.md")
    args = parser.parse_args(argv)
    seconds = min(args.seconds, args.max_total / 2)

    with serving_stack("load-", keep=args.keep) as stack:
        phases = [
            Phase("1 row, top_factors", 1, bodies(stack.columns, 1, 200, None)),
            Phase("100 rows, probability only", 100, bodies(stack.columns, 100, 50, {"top_factors": False})),
        ]
        load_before = os.getloadavg()
        for phase in phases:
            run_phase(stack, phase, args.concurrency, seconds)
        load_after = os.getloadavg()
    server_exit = stack.process.returncode
    errors = [e for phase in phases for e in phase.errors]
    for error in sorted(set(errors))[:10]:
        print(f"error: {error}", file=sys.stderr)
    failed = bool(errors) or not all(phase.latencies for phase in phases) or server_exit != 0
    section = report(phases, args, seconds, stack.version, load_before, load_after, server_exit, failed)
    print(section)
    if not args.no_readme:
        replace_section("serving-load", section)
    return 1 if failed else 0


def report(phases: list[Phase], args: argparse.Namespace, seconds: float, version: str,
           load_before: tuple[float, ...], load_after: tuple[float, ...], server_exit: int | None, failed: bool) -> str:
    """The README section: how it was run, the table, and whether the run passed."""
    rows = []
    for phase in phases:
        done = len(phase.latencies)
        rows.append(f"| {phase.name} | {args.concurrency} | {done + len(phase.errors):,} | {len(phase.errors)} "
                    f"| {phase.p(50):.1f} | {phase.p(99):.1f} | {done / phase.elapsed:,.1f} "
                    f"| {done * phase.rows / phase.elapsed:,.0f} |")
    errors = sum(len(phase.errors) for phase in phases)
    outcome = (f"{errors} error(s); the server exited with code {server_exit}: **failed**" if failed else
               f"zero errors in every phase; the server stopped cleanly (exit {server_exit})")
    command = "`.venv/bin/python -m benchmarks.load" + (
        f" --concurrency {args.concurrency}" if args.concurrency != 32 else "") + (
        f" --seconds {args.seconds:g}" if args.seconds != 25.0 else "") + "`"
    return "\n".join([
        "## Serving under load",
        "",
        f"Command: {command} (this section is written by it; about 2 min with training). "
        + DESCRIPTION,
        "",
        f"Measured {stamp()}; load average {load_before[0]:.1f} before the phases and {load_after[0]:.1f} after "
        f"(1 min); win_probability v{version}, {seconds:.0f} s per phase.",
        "",
        "| phase | concurrency | requests | errors | p50 ms | p99 ms | requests/s | rows/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Outcome: {outcome}. Latency here is queueing: the clients share one event loop and one model "
        "with the server on the same 2 cores, so p50 is about concurrency / throughput.",
    ])


DESCRIPTION = (
    "It trains the real win-probability model with the trainer's own code (`models.win_probability.train`) "
    "on generated deals, registers it in a throw-away MLflow store, deploys it with "
    "`deployments.endpoints.deploy` (smoke-tested over HTTP) and serves it with `python -m deployments.serve` "
    "(key auth, validation and inference logging on). Client threads, each on its own keep-alive "
    "`http.client` connection on 127.0.0.1, post in a loop; every answer must be a 200 with one record per "
    "row (anything else, or a transport error, is an error and fails the run). The clients share the "
    "machine's cores with the server."
)

if __name__ == "__main__":
    sys.exit(main())
