"""Serving speed: the local endpoint server against ``mlflow models serve`` and in-process predict.

``.venv/bin/python -m benchmarks.serving [--single N] [--batch N] [--rounds R] [--max-seconds S]``

Trains a CatBoost win-probability model with the runbook's 8 features on generated data,
registers it in a throw-away MLflow store, deploys it to ``win_probability`` with
``deployments.endpoints.deploy`` and then, in the same run and interleaved round by round (so the
other work on this shared machine hits every contender alike):

- ``salesrisk serve``: ``python -m deployments.serve`` with key auth, validation and inference
  logging on, ``POST /score/win_probability`` in the Azure ML ``input_data`` shape;
- ``mlflow models serve``: the same registered model folder, ``--env-manager local``, ``POST
  /invocations`` with ``dataframe_split`` (the anchor a user would reach for);
- ``in-process``: ``PyFuncModel.predict`` on a ready DataFrame (the floor: no HTTP, no JSON).

One sequential keep-alive client on loopback; single-row and 1,000-row requests; bounded by count
and by time. Prints a Markdown table (p50, p99, rows/s, ratio to mlflow) and the targets' verdicts.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"
MODEL_CODE = Path(__file__).with_name("serving_model.py")


@dataclass
class Series:
    """Latencies (seconds) of one contender at one batch size, pooled over rounds."""

    name: str
    rows: int
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0  # wall time of all requests, for rows/s

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000.0

    def rows_per_second(self) -> float:
        return self.rows * len(self.latencies) / self.elapsed


def work_env(work: Path, port: int, key: str) -> dict[str, str]:
    """Settings that keep a benchmark's store, lake, endpoints and key inside its work folder."""
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "SALESRISK_HOME": str(work / "home"),
        "SALESRISK_LAKE": str(work / "lake"),
        "SALESRISK_ENDPOINT_MAP": str(work / "endpoints.yaml"),
        "SALESRISK_SERVE_PORT": str(port),
        "SALESRISK_ENDPOINT_KEY": key,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def generate(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    from salesrisk import catalog

    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 25_000.0, n),
            "probability": rng.uniform(0, 1, n),
            "days_to_close": rng.integers(1, 180, n).astype(float),
            "stage_encoded": rng.integers(0, 6, n).astype(float),
            "industry_encoded": rng.integers(0, 12, n).astype(float),
            "days_since_last_activity": rng.integers(0, 90, n).astype(float),
            "activity_count_30d": rng.poisson(6, n).astype(float),
            "stakeholder_count": rng.integers(1, 9, n).astype(float),
        }
    )[list(catalog.WIN_PROBABILITY_FEATURES)]
    logit = 3 * (x["probability"] - 0.5) + 0.2 * x["stakeholder_count"] - 0.02 * x["days_since_last_activity"]
    y = (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()
    return x, y


def train_and_register(work: Path, threads: int = -1) -> tuple[str, str]:
    """Fit, log and register the model; return (registered name, version)."""
    import mlflow
    from catboost import CatBoostClassifier
    from mlflow.models import infer_signature

    from salesrisk import catalog, registry

    x, y = generate(5_000)
    model = CatBoostClassifier(iterations=300, depth=6, verbose=0, allow_writing_files=False, thread_count=2, random_seed=0)
    model.fit(x, y)
    cbm = work / "win.cbm"
    model.save_model(str(cbm))
    name = catalog.registered_name("win_probability")
    registry.configure()
    experiment = mlflow.create_experiment("serving-benchmark", artifact_location=(work / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        output = pd.DataFrame({"win_probability": model.predict_proba(x.head(5))[:, 1]})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={"catboost": str(cbm)},
            signature=infer_signature(x.head(5), output),
            input_example=x.head(3),
            pip_requirements=["catboost", "pandas", "mlflow"],
            registered_model_name=name,
            model_config={"thread_count": threads},
        )
    return name, str(info.registered_model_version)


def wait_http(port: int, path: str, process: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not answer {path} within {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class HttpContender:
    """Sequential POSTs of pre-encoded bodies over one keep-alive connection."""

    def __init__(self, name: str, port: int, path: str, headers: dict[str, str], bodies: list[bytes]):
        self.name, self.port, self.path, self.headers, self.bodies = name, port, path, headers, bodies
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def reconnect(self) -> None:
        """A fresh connection and one untimed request (servers drop idle keep-alive connections)."""
        self.conn.close()
        self.call(0)

    def call(self, i: int) -> bytes:
        body = self.bodies[i % len(self.bodies)]
        self.conn.request("POST", self.path, body=body, headers={**self.headers, "Content-Length": str(len(body))})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status}: {data[:300]!r}")
        return data


def measure(call: Callable[[int], object], series: Series, count: int, max_seconds: float) -> None:
    deadline = time.perf_counter() + max_seconds
    start = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        call(i)
        series.latencies.append(time.perf_counter() - t0)
        if t0 > deadline:
            break
    series.elapsed += time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=3_000, help="single-row requests per contender")
    parser.add_argument("--batch", type=int, default=400, help="1,000-row requests per contender")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the counts are split into")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="time cap per contender and round")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (models, lake, logs)")
    parser.add_argument("--model-threads", type=int, default=-1,
                        help="CatBoost prediction threads of the benchmark model, for every contender alike "
                             "(default -1: every core, CatBoost's default)")
    parser.add_argument("--deferred-log", action="store_true",
                        help="also time a second salesrisk server whose inference log is written only at shutdown "
                             "(shows what the background writer costs on this machine)")
    args = parser.parse_args(argv)

    WORK.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="serving-", dir=WORK))
    port, mlflow_port, deferred_port = free_port(), free_port(), free_port()
    key = secrets.token_urlsafe(32)
    os.environ.update(
        {
            **work_env(work, port, key),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    from salesrisk import runtime

    runtime.quiet_libraries()
    processes: list[subprocess.Popen] = []
    try:
        print(f"work folder {work}", file=sys.stderr)
        name, version = train_and_register(work, args.model_threads)
        from deployments import endpoints
        from deployments.local import state

        deployed = endpoints.deploy("win_probability", name, version)
        model_dir = state.load().endpoints["win_probability"].deployments[deployed.colour].path

        log = open(work / "servers.log", "wb")
        processes.append(subprocess.Popen([sys.executable, "-m", "deployments.serve", "--port", str(port), "--log-level", "warning"],
                                          cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        processes.append(subprocess.Popen(["mlflow", "models", "serve", "-m", model_dir, "--env-manager", "local",
                                           "-h", "127.0.0.1", "-p", str(mlflow_port)],
                                          cwd=work, stdout=log, stderr=subprocess.STDOUT))
        if args.deferred_log:
            processes.append(subprocess.Popen([sys.executable, "-m", "deployments.serve", "--port", str(deferred_port),
                                               "--log-level", "warning", "--log-flush-seconds", "86400",
                                               "--log-flush-rows", str(10**9)],
                                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
            wait_http(deferred_port, "/health", processes[2])
        wait_http(port, "/health", processes[0])
        wait_http(mlflow_port, "/ping", processes[1])
        results = run(args, port, mlflow_port, key, model_dir, deferred_port if args.deferred_log else None)
    finally:
        for process in processes:
            stop(process)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(results, args)
    return 0


def run(
    args: argparse.Namespace, port: int, mlflow_port: int, key: str, model_dir: str, deferred_port: int | None
) -> dict[tuple[str, int], Series]:
    import mlflow.pyfunc

    x, _ = generate(20_000, seed=1)
    columns = list(x.columns)
    singles = [x.iloc[[i]] for i in range(200)]
    batches = [x.iloc[i * 1000 : (i + 1) * 1000] for i in range(10)]

    def ours(frames):
        return [json.dumps({"input_data": {"columns": columns, "data": f.to_numpy().tolist()}}).encode() for f in frames]

    def theirs(frames):
        return [json.dumps({"dataframe_split": {"columns": columns, "data": f.to_numpy().tolist()}}).encode() for f in frames]

    model = mlflow.pyfunc.load_model(model_dir)
    json_headers = {"Content-Type": "application/json"}
    contenders: dict[int, list[tuple[str, HttpContender | Callable[[int], object]]]] = {}
    for rows, frames in ((1, singles), (1000, batches)):
        salesrisk = HttpContender("salesrisk serve", port, "/score/win_probability",
                                  {**json_headers, "Authorization": f"Bearer {key}"}, ours(frames))
        anchor = HttpContender("mlflow models serve", mlflow_port, "/invocations", json_headers, theirs(frames))
        check(salesrisk.call(0), anchor.call(0), model.predict(frames[0]))
        contenders[rows] = [
            (salesrisk.name, salesrisk),
            (anchor.name, anchor),
            ("in-process predict", lambda i, frames=frames: model.predict(frames[i % len(frames)])),
        ]
        if deferred_port is not None:
            deferred = HttpContender("salesrisk serve, log written at exit", deferred_port, "/score/win_probability",
                                     {**json_headers, "Authorization": f"Bearer {key}"}, ours(frames))
            contenders[rows].insert(1, (deferred.name, deferred))
    results: dict[tuple[str, int], Series] = {}
    for rows, count in ((1, args.single), (1000, args.batch)):
        per_round = max(1, count // args.rounds)
        for name, contender in contenders[rows]:
            measure(_ready(contender), Series(name, rows), max(10, per_round // 10), args.max_seconds)  # warm-up
        for _ in range(args.rounds):
            for name, contender in contenders[rows]:
                series = results.setdefault((name, rows), Series(name, rows))
                measure(_ready(contender), series, per_round, args.max_seconds)
    return results


def _ready(contender: HttpContender | Callable[[int], object]) -> Callable[[int], object]:
    if isinstance(contender, HttpContender):
        contender.reconnect()
        return contender.call
    return contender


def check(ours: bytes, theirs: bytes, floor: pd.DataFrame) -> None:
    """All three must give the same probabilities, or the timings compare different work."""
    mine = [row["win_probability"] for row in json.loads(ours)]
    anchor = json.loads(theirs)["predictions"]
    anchor = [row["win_probability"] if isinstance(row, dict) else row for row in anchor]
    np.testing.assert_allclose(mine, floor["win_probability"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(anchor, floor["win_probability"].to_numpy(), rtol=1e-9)


def report(results: dict[tuple[str, int], Series], args: argparse.Namespace) -> None:
    anchor = {rows: results[("mlflow models serve", rows)] for rows in (1, 1000)}
    print(f"\nwin_probability, CatBoost 8 features, model threads {args.model_threads}; rounds={args.rounds}, "
          "one sequential keep-alive client on 127.0.0.1\n")
    print("| contender | rows/request | requests | p50 ms | p99 ms | rows/s | p50 speed-up vs mlflow | rows/s vs mlflow |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (name, rows), s in results.items():
        a = anchor[rows]
        print(
            f"| {name} | {rows:,} | {len(s.latencies):,} | {s.p(50):.3f} | {s.p(99):.3f} | {s.rows_per_second():,.0f} "
            f"| {a.p(50) / s.p(50):.2f}x | {s.rows_per_second() / a.rows_per_second():.2f}x |"
        )
    ours1, ours1000 = results[("salesrisk serve", 1)], results[("salesrisk serve", 1000)]
    targets = [
        ("single-row p50 < 2 ms", ours1.p(50) < 2.0, f"{ours1.p(50):.3f} ms"),
        ("single-row p99 < 5 ms", ours1.p(99) < 5.0, f"{ours1.p(99):.3f} ms"),
        (">= 3x mlflow single-row rows/s", ours1.rows_per_second() >= 3 * anchor[1].rows_per_second(),
         f"{ours1.rows_per_second() / anchor[1].rows_per_second():.2f}x"),
        ("1,000 rows p50 < 5 ms", ours1000.p(50) < 5.0, f"{ours1000.p(50):.3f} ms"),
    ]
    print("\n| target | measured | met |\n|---|---:|---|")
    for label, met, value in targets:
        print(f"| {label} | {value} | {'yes' if met else 'NO'} |")


if __name__ == "__main__":
    sys.exit(main())
