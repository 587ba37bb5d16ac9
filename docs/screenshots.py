"""Screenshots of what a user sees after `make run`, taken with headless Chromium.

Usage: .venv/bin/python docs/screenshots.py [--state DIR] [--out docs/screenshots]

Without ``--state`` it makes its own state first, as a new user would: a small generated lake and
``python flows/retrain_all.py`` twice (cold, then the unchanged rerun), in ``docs/.work/state``.
With ``--state DIR`` it shows what ``make run`` left in DIR (e.g. the project folder).

Then it starts, on free loopback ports, the Prefect UI on DIR's ``.prefect``, the MLflow UI on DIR's
``mlflow.db`` and the endpoint server on DIR's endpoint state, finds the pages through their APIs
and saves, in ``--out``:

- ``prefect-run-graph.png``: a model's flow run of the first run, its task graph (fetch ->
  prepare -> train -> evaluate -> register -> deploy);
- ``prefect-rerun-graph.png``: the same model in the rerun, prepare and train ``Cached``;
- ``prefect-artifact.png``: that model's metrics artifact (links into MLflow, the decision);
- ``prefect-summary.png``: retrain-all's summary table with its decision column;
- ``mlflow-run-plots.png``: the model's MLflow run, showing its ROC curve report plot;
- ``mlflow-model.png``: the registered model with its ``champion`` and ``challenger`` aliases;
- ``endpoint-docs.png``: the endpoint server's ``/docs`` page.

Needs Debian's ``chromium`` (``apt-get install -y chromium``); nothing else beyond the project.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORK = ROOT / "docs" / ".work"
MODEL = "win-probability-model"
MODEL_FLOW = "win-probability"
WINDOW = "1440,1000"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def state_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update({
        "PREFECT_HOME": str(state / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        "SALESRISK_HOME": str(state / ".salesrisk"),
        "SALESRISK_LAKE": str(state / "lake"),
        "SALESRISK_ENDPOINT_MAP": str(state / "config" / "endpoints.yaml"),
        "MPLCONFIGDIR": str(WORK / "mpl"),
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    })
    return env


def make_state(state: Path) -> None:
    """A small lake and two `make run`s into ``state``."""
    from models import synthetic

    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    synthetic.generate(str(state / "lake"), n_opportunities=2000, tenants=2, start=date(2024, 1, 1),
                       end=date(2025, 6, 30), seed=7)
    for label in ("cold run", "unchanged rerun"):
        print(f"{label}: python flows/retrain_all.py", flush=True)
        subprocess.run([sys.executable, str(ROOT / "flows" / "retrain_all.py")], cwd=state, env=state_env(state),
                       check=True, stdout=subprocess.DEVNULL)


@contextmanager
def server(command: list[str], env: dict[str, str], health: str, log: Path, timeout: float = 240) -> Iterator[None]:
    """Run ``command`` until the block ends; wait for ``health`` to answer 200 first."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited {process.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(health, timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{health} did not answer within {timeout:.0f} s; see {log}")
            time.sleep(1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def shoot(url: str, path: Path, budget_ms: int = 25_000, window: str = WINDOW) -> Path:
    """One headless Chromium screenshot of ``url`` after ``budget_ms`` of (virtual) page time."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    profile = WORK / "chromium-profile"
    subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         f"--user-data-dir={profile}", f"--window-size={window}", f"--virtual-time-budget={budget_ms}",
         f"--screenshot={path}", url],
        check=True, capture_output=True, timeout=180,
    )
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  <-  {url}", flush=True)
    return path


def blank(path: Path) -> bool:
    """Whether the screenshot is one colour only (nothing rendered)."""
    from PIL import Image

    with Image.open(path) as image:
        return all(low == high for low, high in image.convert("RGB").getextrema())


def post(api: str, path: str, body: dict) -> list[dict]:
    answer = httpx.post(f"{api}{path}", json=body, timeout=30)
    answer.raise_for_status()
    return answer.json()


def prefect_pages(api: str) -> dict[str, str]:
    """Paths (under the UI) of the pages to show, found through the REST API the UI reads."""
    runs = post(api, "/flow_runs/filter", {"flows": {"name": {"any_": ["retrain-all"]}}, "sort": "START_TIME_ASC"})
    if len(runs) < 2:
        raise SystemExit(f"expected two retrain-all runs in the state, found {len(runs)}")
    cold, rerun = runs[-2], runs[-1]

    def model_run(parent: dict) -> str:
        children = post(api, "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [parent["id"]]}},
                                                  "flows": {"name": {"any_": [MODEL_FLOW]}}})
        return children[0]["id"]

    def artifact(key: str, flow_run: str) -> str:
        found = post(api, "/artifacts/filter", {"artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [flow_run]}}})
        return found[0]["id"]

    cold_model = model_run(cold)
    return {
        "prefect-run-graph.png": f"/runs/flow-run/{cold_model}",
        "prefect-rerun-graph.png": f"/runs/flow-run/{model_run(rerun)}",
        "prefect-artifact.png": f"/artifacts/artifact/{artifact(f'metrics-{MODEL}', cold_model)}",
        "prefect-summary.png": f"/artifacts/artifact/{artifact('retrain-all-summary', rerun['id'])}",
    }


def mlflow_pages(state: Path) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
    champion = client.get_model_version_by_alias(MODEL, "champion")
    run = client.get_run(champion.run_id)
    return {
        "mlflow-run-plots.png": f"/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/artifactPath/report/roc_curve.png",
        "mlflow-model.png": f"/#/models/{MODEL}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python docs/screenshots.py", description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, help="a folder `make run` ran in (default: make a fresh one)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLCONFIGDIR", str(WORK / "mpl"))
    state = args.state.resolve() if args.state else WORK / "state"
    if args.state is None:
        make_state(state)
    args.out.mkdir(parents=True, exist_ok=True)
    env = state_env(state)
    prefect_port, mlflow_port, serve_port = free_port(), free_port(), free_port()
    prefect_ui, mlflow_ui, serve = (f"http://127.0.0.1:{p}" for p in (prefect_port, mlflow_port, serve_port))
    failed = []
    with ExitStack() as stack:
        stack.enter_context(server(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port), "--analytics-off"],
            {**env, "PREFECT_UI_API_URL": f"{prefect_ui}/api"}, f"{prefect_ui}/api/health", WORK / "prefect-ui.log"))
        stack.enter_context(server(
            [str(BIN / "mlflow"), "ui", "--backend-store-uri", env["MLFLOW_TRACKING_URI"], "--host", "127.0.0.1",
             "--port", str(mlflow_port)],
            env, f"{mlflow_ui}/health", WORK / "mlflow-ui.log"))
        for name, path in prefect_pages(f"{prefect_ui}/api").items():
            shoot(prefect_ui + path, args.out / name)
        for name, path in mlflow_pages(state).items():
            shoot(mlflow_ui + path, args.out / name)
        try:
            stack.enter_context(server([sys.executable, "-m", "deployments.serve", "--port", str(serve_port)],
                                       env, f"{serve}/health", WORK / "endpoint-server.log"))
            docs = shoot(f"{serve}/docs", args.out / "endpoint-docs.png", budget_ms=10_000)
            if blank(docs):  # e.g. Swagger UI's assets could not load
                docs.unlink()
                failed.append("endpoint-docs.png: /docs rendered a blank page")
        except (RuntimeError, subprocess.CalledProcessError) as error:
            failed.append(f"endpoint-docs.png: {error}")
    for line in failed:
        print(f"not taken: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
