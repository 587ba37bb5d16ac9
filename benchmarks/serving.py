"""Serving speed of the trainers' own models: the endpoint server against ``mlflow models serve``.

``.venv/bin/python -m benchmarks.serving [--state DIR [--lake DIR] [--explanations-only]]
[--repeats 3] [--requests 200] [--max-seconds 8] [--endpoints KEY,...] [--no-readme] [--keep]``

Models: with ``--state`` the deployments of a ``make run`` (its ``SALESRISK_HOME``, e.g.
``.salesrisk``); otherwise ``flows/retrain_all.py`` trains every model with the real trainers on
the default generated lake (under ``benchmarks/.work/serving-lake``, made once) into a fresh
temporary MLflow registry and endpoint state, exactly as ``make run`` does.

Contenders, in the same run: ``python -m deployments.serve`` on that endpoint state (key auth,
validation and inference logging on; ``POST /score/<key>`` in the Azure ML ``input_data`` shape),
and, per endpoint, ``mlflow models serve -m <the same model folder> --env-manager local``
(``POST /invocations`` with ``dataframe_split``). One sequential keep-alive client on loopback.
Each case (endpoint x rows per request x top_factors on/off) runs ``--repeats`` rounds, each round
alternating the two servers, so load from other users of the machine hits both alike. The two
answers are checked equal before timing. Request rows are the lake's own prepared rows; for the
trajectory endpoint a request is whole opportunities (each the last ``sequence_length``
snapshots, as a caller sends them); for revenue, the future dates to forecast. The industry
endpoint (``risk_scoring_industry``, which routes rows by ``industry_id``) is timed per deployed
industry slot on rows of that industry (against ``mlflow models serve`` of its model) and on rows
of other industries, which fall back to the global model (against that model's server).

Targets (issue 17): with ``top_factors`` (win_probability, risk_scoring_*): 1 row <= 3 ms p50,
100 rows <= 20 ms, 1,000 rows <= 100 ms; without: 1 row <= 1.5 ms and 1,000 rows <= 5 ms for every
tabular endpoint. A verdict compares the median over the repeats of each round's p50 with the
target and says "not met" otherwise. The table goes to ``benchmarks/README.md`` between the
``serving-table`` marker comments (unless ``--no-readme``), and a second one between the
``serving-explain`` markers: in process, on each CatBoost model's held-out rows, the served SHAP
table against CatBoost's exact and approximate calls (difference, top-3 agreement, time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
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
README = ROOT / "benchmarks" / "README.md"
MARKERS = ("<!-- serving-table:start -->", "<!-- serving-table:end -->")
EXPLAIN_MARKERS = ("<!-- serving-explain:start -->", "<!-- serving-explain:end -->")

FACTOR_ENDPOINTS = ("win_probability", "risk_scoring_global", "risk_scoring_industry")
TABULAR_ENDPOINTS = (*FACTOR_ENDPOINTS, "anomaly")
PREPARED = {  # endpoint key -> the model id whose prepared rows feed it
    "win_probability": "win_probability",
    "risk_scoring_global": "risk_scoring",
    "risk_scoring_industry": "risk_scoring",
    "anomaly": "anomaly",
    "risk_trajectory_lstm": "risk_trajectory",
    "revenue_forecasting": "revenue_forecast",
}
FACTORS_ON_MS = {1: 3.0, 100: 20.0, 1000: 100.0}
FACTORS_OFF_MS = {1: 1.5, 1000: 5.0}


def target_ms(key: str, rows: int, factors: bool) -> float | None:
    if key not in TABULAR_ENDPOINTS:
        return None
    if factors:
        return FACTORS_ON_MS.get(rows) if key in FACTOR_ENDPOINTS else None
    return FACTORS_OFF_MS.get(rows)


# --- helpers shared with benchmarks.load and benchmarks.fuzz ---------------------------------


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
    """Generated deals with the runbook's 8 features and a win label (for benchmarks.load)."""
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


def wait_http(port: int, path: str, process: subprocess.Popen, timeout: float = 300.0) -> None:
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


# --- the models ------------------------------------------------------------------------------


def train_all(work: Path) -> tuple[Path, Path]:
    """``flows/retrain_all.py`` into a fresh state under ``work``; returns (SALESRISK_HOME, lake)."""
    lake = WORK / "serving-lake"
    if not (lake / "ml_outcomes").exists():
        from models import synthetic

        synthetic.generate(str(lake))
    state = work / "state"
    state.mkdir(parents=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(state / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        "SALESRISK_HOME": str(state / ".salesrisk"),
        "SALESRISK_LAKE": str(lake),
        "SALESRISK_ENDPOINT_MAP": str(state / "config" / "endpoints.yaml"),
        "SALESRISK_SERVE_PORT": str(free_port()),  # deploy's probe finds no server and checks in-process
        "MPLCONFIGDIR": str(work / "mpl"),
        "SALESRISK_LOCAL_API_IDLE_SECONDS": "0",  # no idle Prefect API beside the timings
    }
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "flows" / "retrain_all.py")], cwd=state, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"retrain_all failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(f"trained every model with retrain_all in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return state / ".salesrisk", lake


@dataclass
class Live:
    key: str
    model_name: str
    version: str
    path: str


def deployed(home: Path) -> list[Live]:
    """The live deployment of each endpoint in the endpoint state under ``home``."""
    state = json.loads((home / "endpoints" / "state.json").read_text())
    out = []
    for key, endpoint in sorted(state["endpoints"].items()):
        traffic = endpoint.get("traffic") or {}
        colour = max(traffic, key=traffic.get, default=None) if traffic else None
        slot = endpoint["deployments"].get(colour) if colour else None
        if slot:
            out.append(Live(key, slot["model_name"], str(slot["version"]), slot["path"]))
    return out


# --- requests --------------------------------------------------------------------------------


@dataclass
class Case:
    key: str
    rows: int  # rows per request
    label: str  # how a caller's request is made up
    factors: bool | None  # top_factors on / off; None: the model has none
    frames: list[pd.DataFrame]
    routed_by: str | None = None  # a routed endpoint's routing column: sent to ours, not to mlflow's model
    expect_model: str | None = None  # the registered model each routed row must say scored it

    def bodies(self, shape: str) -> list[bytes]:
        out = []
        for frame in self.frames:
            if self.routed_by is not None and shape == "dataframe_split":
                frame = frame.drop(columns=self.routed_by)  # what a caller of that one model sends
            split = json.loads(frame.to_json(orient="split", date_format="iso", index=False))
            body: dict = {shape: {"columns": split["columns"], "data": split["data"]}}
            if self.factors is False:
                body["params"] = {"top_factors": False}
            out.append(json.dumps(body).encode())
        return out


def prepared_rows(lake: Path, model_id: str) -> pd.DataFrame:
    files = sorted((lake / "ml_training" / model_id).glob("*/prepared.parquet"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise SystemExit(f"no prepared rows for {model_id} under {lake / 'ml_training'}")
    return pd.read_parquet(files[-1])


def cases_for(live: Live, lake: Path, variants: int = 20) -> list[Case]:
    """The requests each endpoint's callers send, from the lake's own prepared rows."""
    import mlflow.models

    meta = mlflow.models.Model.load(live.path)
    columns = meta.get_input_schema().input_names()
    outputs = meta.get_output_schema().input_names() if meta.get_output_schema() else []
    has_factors = "top_factors" in outputs
    rng = np.random.default_rng(0)
    data = prepared_rows(lake, PREPARED[live.key])
    if live.key in TABULAR_ENDPOINTS:
        rows = data[columns].reset_index(drop=True)
        out = []
        for n in (1, 100, 1000):
            frames = [rows.iloc[rng.choice(len(rows), n, replace=False)].reset_index(drop=True) for _ in range(variants)]
            for factors in ((True, False) if has_factors else (None,)):
                out.append(Case(live.key, n, f"{n:,} row{'s' if n > 1 else ''}", factors, frames))
        return out
    if live.key == "risk_trajectory_lstm":
        from salesrisk import catalog

        example = meta.load_input_example(live.path)
        length = int(example.groupby(catalog.TRAJECTORY_ID).size().max())
        data = data.sort_values([catalog.TRAJECTORY_ID, catalog.TRAJECTORY_TIME])
        histories = [g.tail(length)[columns] for _, g in data.groupby(catalog.TRAJECTORY_ID, sort=False) if len(g) >= length]
        out = []
        for opportunities in (1, 100):
            frames = []
            for _ in range(variants // 4 if opportunities > 1 else variants):
                picked = rng.choice(len(histories), opportunities, replace=False)
                frames.append(pd.concat([histories[i] for i in picked], ignore_index=True))
            label = f"{opportunities} opportunit{'y' if opportunities == 1 else 'ies'} x {length} snapshots"
            out.append(Case(live.key, opportunities * length, label, None, frames))
        return out
    if live.key == "revenue_forecasting":
        example = meta.load_input_example(live.path)
        column = columns[0]
        start = pd.Timestamp(pd.to_datetime(data.iloc[:, 0]).max()) + pd.Timedelta(days=1)
        del example
        return [
            Case(live.key, days, f"{days} future days", None,
                 [pd.DataFrame({column: pd.date_range(start, periods=days, freq="D").strftime("%Y-%m-%d")})])
            for days in (30, 365)
        ]
    return []


def routed_cases(slot: Live, fallback: Live | None, lake: Path, served: set[str], variants: int = 20) -> list[tuple[Live, list[Case]]]:
    """The industry endpoint (``risk_scoring_industry``), which routes each row by its
    ``industry_id``: requests of rows of the slot's industry (scored by its own model, timed against
    ``mlflow models serve`` of that model) and of rows of industries without a deployed model
    (scored by the fallback endpoint's model, timed against that model's ``mlflow models serve``;
    pass ``fallback`` for one slot of the endpoint only). ``served``: the industries with a slot.
    Returns (the model whose ``mlflow models serve`` is the baseline, its cases)."""
    import mlflow.models

    from salesrisk import catalog

    endpoint, industry = catalog.split_slot(slot.key)
    meta = mlflow.models.Model.load(slot.path)
    columns = meta.get_input_schema().input_names()
    has_factors = "top_factors" in (meta.get_output_schema().input_names() if meta.get_output_schema() else [])
    data = prepared_rows(lake, PREPARED[endpoint])
    if catalog.INDUSTRY_ID not in data.columns:
        raise SystemExit(f"the prepared rows of {PREPARED[endpoint]} have no {catalog.INDUSTRY_ID} column to route by")
    data = data[[catalog.INDUSTRY_ID, *columns]].reset_index(drop=True)
    own = data[data[catalog.INDUSTRY_ID].astype(str) == industry].reset_index(drop=True)
    others = data[~data[catalog.INDUSTRY_ID].astype(str).isin(served)].reset_index(drop=True)
    rng = np.random.default_rng(0)
    groups = [(slot, own, f"{industry} rows, its own model")]
    if fallback is not None:
        groups.append((fallback, others, f"other industries' rows, {catalog.fallback_endpoint(endpoint)}'s model"))
    out = []
    for model, rows, who in groups:
        cases = []
        for n in (1, 100, 1000):
            if len(rows) < n:
                continue
            frames = [rows.iloc[rng.choice(len(rows), n, replace=False)].reset_index(drop=True) for _ in range(variants)]
            for factors in ((True, False) if has_factors else (None,)):
                cases.append(Case(endpoint, n, f"{n:,} row{'s' if n > 1 else ''} ({who})", factors, frames,
                                  routed_by=catalog.INDUSTRY_ID, expect_model=model.model_name))
        out.append((model, cases))
    return out


class Client:
    """Sequential POSTs of pre-encoded bodies over one keep-alive connection."""

    def __init__(self, name: str, port: int, path: str, headers: dict[str, str], bodies: list[bytes]):
        self.name, self.port, self.path, self.headers, self.bodies = name, port, path, headers, bodies
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

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
            raise RuntimeError(f"{self.name} {self.path}: HTTP {response.status}: {data[:300]!r}")
        return data


def timed(call: Callable[[int], object], count: int, max_seconds: float) -> list[float]:
    out: list[float] = []
    deadline = time.perf_counter() + max_seconds
    for i in range(count):
        t0 = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - t0)
        if t0 > deadline and len(out) >= 5:
            break
    return out


def same_answer(ours: bytes, theirs: bytes, expect_model: str | None = None) -> None:
    """Both servers must give the same records, or the timings compare different work; on a routed
    endpoint every row must also name the model expected to score it."""
    mine, anchor = json.loads(ours), json.loads(theirs)["predictions"]
    if expect_model is not None:
        named = set()
        for record in mine:
            named.add(record.pop("model_name", None))
            record.pop("model_version", None)
        if named != {expect_model}:
            raise AssertionError(f"rows were scored by {sorted(map(str, named))}, expected {expect_model}")
    if not _close(mine, anchor):
        raise AssertionError(f"the two servers disagree: {str(mine)[:300]} vs {str(anchor)[:300]}")


def _close(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-9 * max(1.0, abs(b))
    if isinstance(a, str) and isinstance(b, str) and a != b:  # the same instant, written two ways
        try:
            return pd.Timestamp(a) == pd.Timestamp(b)
        except ValueError:
            return False
    return a == b


@dataclass
class Result:
    case: Case
    ours: list[list[float]] = field(default_factory=list)  # per round, seconds
    theirs: list[list[float]] = field(default_factory=list)

    @staticmethod
    def p50s(rounds: list[list[float]]) -> list[float]:
        return [float(np.percentile(r, 50)) * 1000 for r in rounds]

    def p50(self, rounds: list[list[float]]) -> float:
        return statistics.median(self.p50s(rounds))

    @staticmethod
    def p99(rounds: list[list[float]]) -> float:
        return float(np.percentile([x for r in rounds for x in r], 99)) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, default=None,
                        help="SALESRISK_HOME of a make run (e.g. .salesrisk); default: train everything afresh")
    parser.add_argument("--lake", type=Path, default=None, help="the lake of --state (default: ./lake beside it)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per case (the verdict uses their median p50)")
    parser.add_argument("--requests", type=int, default=200, help="requests per contender, case and round (at most)")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="time cap per contender, case and round")
    parser.add_argument("--no-readme", action="store_true", help="print the tables only")
    parser.add_argument("--explanations-only", action="store_true",
                        help="only the in-process explanation table (needs --state; no servers)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--endpoints", type=lambda text: [k for k in text.split(",") if k], default=None,
                        help="time only these endpoint keys (comma-separated); the README is then left alone")
    args = parser.parse_args(argv)
    if args.endpoints:
        args.no_readme = True  # a partial table must not replace the whole one

    WORK.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="serving-", dir=WORK))
    load_before = os.getloadavg()
    started = dt.datetime.now(dt.timezone.utc)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # mlflow execs uvicorn
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from salesrisk import runtime

    runtime.quiet_libraries()
    processes: list[subprocess.Popen] = []
    results: list[Result] = []
    try:
        print(f"work folder {work}", file=sys.stderr)
        if args.state is not None:
            home = args.state.resolve()
            lake = (args.lake or home.parent / "lake").resolve()
        else:
            home, lake = train_all(work)
        lives = deployed(home)
        if args.explanations_only:
            explained = explanation_table(lives, lake)
            print(explained)
            if not args.no_readme:
                write_readme(explained, EXPLAIN_MARKERS)
            return 0
        key = secrets.token_urlsafe(32)
        port = free_port()
        env = {**os.environ, "SALESRISK_HOME": str(home), "SALESRISK_LAKE": str(work / "inference-lake"),
               "SALESRISK_ENDPOINT_KEY": key, "SALESRISK_SERVE_PORT": str(port),
               "SALESRISK_ENDPOINT_MAP": str(work / "endpoints.yaml")}
        log = open(work / "servers.log", "wb")
        ours = subprocess.Popen([sys.executable, "-m", "deployments.serve", "--port", str(port), "--log-level", "warning",
                                 "--poll-seconds", "5"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        processes.append(ours)
        wait_http(port, "/health", ours)
        for model, cases in planned(lives, lake, args.endpoints):
            mlflow_port = free_port()
            model_folder = str(ROOT / model.path)  # a make run's state names its folders from the project folder
            anchor = subprocess.Popen(["mlflow", "models", "serve", "-m", model_folder, "--env-manager", "local",
                                       "-h", "127.0.0.1", "-p", str(mlflow_port)],
                                      cwd=work, stdout=log, stderr=subprocess.STDOUT)
            processes.append(anchor)
            try:
                wait_http(mlflow_port, "/ping", anchor)
                for case in cases:
                    print(f"{case.key}: {case.label}, top_factors {case.factors}", file=sys.stderr)
                    results.append(run_case(case, port, mlflow_port, key, args))
            finally:
                stop(anchor)
                processes.remove(anchor)
        explained = explanation_table(lives, lake)  # in process, servers idle
    finally:
        for process in processes:
            stop(process)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    finished = dt.datetime.now(dt.timezone.utc)
    table = report(results, args, started, finished, load_before, os.getloadavg())
    print(table)
    print(explained)
    if not args.no_readme:
        write_readme(table, MARKERS)
        write_readme(explained, EXPLAIN_MARKERS)
    return 0


def planned(lives: list[Live], lake: Path, only: list[str] | None = None) -> list[tuple[Live, list[Case]]]:
    """(the model ``mlflow models serve`` runs, the cases timed against it), endpoint by endpoint:
    each deployed endpoint with its own model, and each industry slot through its routing endpoint
    (rows of that industry, and rows that fall back to the fallback endpoint's model)."""
    from salesrisk import catalog

    by_key = {live.key: live for live in lives}
    slots: dict[str, set[str]] = {}
    for live in lives:
        endpoint, industry = catalog.split_slot(live.key)
        if industry is not None:
            slots.setdefault(endpoint, set()).add(industry)
    timed_fallback: set[str] = set()
    out = []
    for live in lives:
        endpoint, industry = catalog.split_slot(live.key)
        if only and endpoint not in only:
            continue
        if industry is None:
            out.append((live, cases_for(live, lake)))
        else:
            fallback = None if endpoint in timed_fallback else by_key.get(catalog.fallback_endpoint(endpoint))
            timed_fallback.add(endpoint)
            out.extend(routed_cases(live, fallback, lake, slots[endpoint]))
    return out


def explanation_table(lives: list[Live], lake: Path) -> str:
    """In process, on each model's held-out rows: the served SHAP table against CatBoost's exact
    and approximate calls (largest difference, top-3 agreement, time per call on one thread)."""
    import mlflow.pyfunc
    import polars as pl
    from catboost import Pool

    from models import risk_scoring, win_probability

    load = os.getloadavg()
    lines = [
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `.venv/bin/python -m benchmarks.serving "
        f"{' '.join(sys.argv[1:])}`, {os.cpu_count()} cores, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the "
        "start. In process, one thread, held-out rows of each deployed model (the trainer's own `holdout`). Agreement: share of rows whose top 3 features (by |SHAP|) are the same set / in "
        "the same order / have the same first feature as exact SHAP. Times: medians of repeated calls.",
        "",
        "| model | trees | held-out rows | served table vs exact: max abs diff | approximate top-3 set / order / first | "
        "rows | served table ms | CatBoost exact ms | CatBoost approximate ms |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for live in lives:
        if live.key not in ("win_probability", "risk_scoring_global"):
            continue
        module = win_probability if live.key == "win_probability" else risk_scoring
        inner = mlflow.pyfunc.load_model(live.path).unwrap_python_model()
        if live.key == "win_probability":
            model, table, columns = inner._fast.summed, inner._fast._explain, list(inner._model.spec.columns)
        else:
            model, table, columns = inner._model, inner._explain, list(inner.spec.columns)
        held = module.holdout(pl.from_pandas(prepared_rows(lake, PREPARED[live.key])))
        x = held.select(columns).to_pandas().astype("float64").to_numpy()
        exact = model.get_feature_importance(Pool(x), type="ShapValues", thread_count=1)[:, :-1]
        approx = model.get_feature_importance(Pool(x), type="ShapValues", shap_calc_type="Approximate", thread_count=1)[:, :-1]
        served = table(x)
        top_e, top_a = (np.argsort(-np.abs(a), axis=1, kind="stable")[:, :3] for a in (exact, approx))
        same_set = np.mean([set(a) == set(b) for a, b in zip(top_e, top_a)])
        same_order = np.mean((top_e == top_a).all(axis=1))
        first = np.mean(top_e[:, 0] == top_a[:, 0])
        for i, n in enumerate((1, 100, 1000)):
            rows = x[:n]
            times = [
                _median_ms(lambda: table(rows), 30),
                _median_ms(lambda: model.get_feature_importance(Pool(rows), type="ShapValues", thread_count=1), 5),
                _median_ms(lambda: model.get_feature_importance(Pool(rows), type="ShapValues", shap_calc_type="Approximate",
                                                                thread_count=1), 5),
            ]
            head = (f"| {live.key} | {model.tree_count_} | {len(x):,} | {np.abs(served - exact).max():.1e} | "
                    f"{same_set:.3f} / {same_order:.3f} / {first:.3f} |") if i == 0 else "| | | | | |"
            lines.append(f"{head} {len(rows):,} | {times[0]:.2f} | {times[1]:.2f} | {times[2]:.2f} |")
    return "\n".join(lines)


def _median_ms(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def run_case(case: Case, port: int, mlflow_port: int, key: str, args: argparse.Namespace) -> Result:
    json_headers = {"Content-Type": "application/json"}
    ours = Client("salesrisk serve", port, f"/score/{case.key}", {**json_headers, "Authorization": f"Bearer {key}"},
                  case.bodies("input_data"))
    theirs = Client("mlflow models serve", mlflow_port, "/invocations", json_headers, case.bodies("dataframe_split"))
    same_answer(ours.call(0), theirs.call(0), case.expect_model)
    result = Result(case)
    warm = max(3, args.requests // 10)
    for client in (ours, theirs):
        client.reconnect()
        timed(client.call, warm, args.max_seconds)
    for _ in range(args.repeats):
        for client, rounds in ((ours, result.ours), (theirs, result.theirs)):
            client.reconnect()
            rounds.append(timed(client.call, args.requests, args.max_seconds))
    for client in (ours, theirs):
        client.conn.close()
    return result


def report(results: list[Result], args: argparse.Namespace, started: dt.datetime, finished: dt.datetime,
           load_before: tuple[float, float, float], load_after: tuple[float, float, float]) -> str:
    lines = [
        f"Measured {started:%Y-%m-%d %H:%M}-{finished:%H:%M} UTC by `.venv/bin/python -m benchmarks.serving"
        f"{' --state ' + str(args.state) if args.state else ''}{' --endpoints ' + ','.join(args.endpoints) if args.endpoints else ''}"
        f" --repeats {args.repeats} --requests {args.requests}`, "
        f"{os.cpu_count()} cores, load average (1/5/15 min) {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f} "
        f"before and {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f} after. p50: median over the "
        f"{args.repeats} rounds of each round's p50; p99 over all rounds' requests.",
        "",
        "| endpoint | request | top_factors | salesrisk p50 ms | salesrisk p99 ms | mlflow serve p50 ms | speed-up | "
        "target p50 | verdict |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        ours, theirs = r.p50(r.ours), r.p50(r.theirs)
        target = target_ms(r.case.key, r.case.rows, bool(r.case.factors))
        verdict = "-" if target is None else ("met" if ours <= target else "not met")
        factors = {True: "on", False: "off", None: "n/a"}[r.case.factors]
        rounds = ", ".join(f"{p:.2f}" for p in r.p50s(r.ours))
        lines.append(
            f"| {r.case.key} | {r.case.label} | {factors} | {ours:.2f} ({rounds}) | {r.p99(r.ours):.2f} | {theirs:.2f} | "
            f"{theirs / ours:.1f}x | {'' if target is None else f'<= {target:g} ms'} | {verdict} |"
        )
    return "\n".join(lines)


def write_readme(table: str, markers: tuple[str, str]) -> None:
    text = README.read_text()
    start, end = markers
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{README} has no {start} ... {end} block to write the table into")
    README.write_text(pattern.sub(lambda _: f"{start}\n{table}\n{end}", text))
    print(f"wrote the table into {README}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
