"""Sequence-model quality: the risk trajectory LSTM against the generator's truth.

Usage: .venv/bin/python -m benchmarks.quality_sequence [--data ../shared/data] [--no-readme]

The model is trained through its command line (``python -m models.risk_trajectory
--training-data ... --output ...`` in a fresh process, MLflow on a SQLite file under the work
folder), loaded with ``mlflow.pyfunc.load_model`` and scored through the pyfunc on opportunities it
never trained on. The baseline is computed in the same run; nothing is tuned on a test part.

- risk_trajectory, generated lake: the held-out opportunities (``risk_trajectory.holdout``), cut at
  snapshots whose +30/60/90-day date is a weekly evaluation of the still-open deal, so the
  generator's noise-free ``true_risk`` for that day is known (``_truth/risk_evaluations``); MAE
  of the forecast against it, beside persistence (today's observed risk_score for every horizon).

The revenue forecast has its own benchmark, ``benchmarks.forecast_quality`` (rolling-origin
backtests on the six shared series, Walmart and the generated lake, baselines on the same origins).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "quality_sequence"
DEFAULT_DATA = ROOT.parent / "shared" / "data"
README = ROOT / "benchmarks" / "README.md"
START, END = "<!-- sequence-models:start -->", "<!-- sequence-models:end -->"
COMMAND = ".venv/bin/python -m benchmarks.quality_sequence"
CUTS_PER_HORIZON = 2000

log = logging.getLogger("benchmarks.quality_sequence")


def _row(model: str, data: str, metric: str, value: float, baseline: str = "", target: str = "", met: bool | None = None, note: str = "") -> dict[str, Any]:
    return {"model": model, "data": data, "metric": metric, "value": float(value), "baseline": baseline, "target": target, "met": met, "note": note}


def _timing(model: str, data: str, rows: int, trained: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "data": data, "rows": rows, "wall_seconds": trained["wall_seconds"], "fit_seconds": trained["fit_seconds"]}


# --- running things the way a job runs them ------------------------------------------------------


def _env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MPLCONFIGDIR": str(work / "mpl"),
    }


def _run(python: str, args: Sequence[str], work: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([python, *map(str, args)], cwd=work, env=_env(work), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done


def train_cli(python: str, module: str, data: Path, output: Path, work: Path, *args: str) -> dict[str, Any]:
    """``python -m models.<module>``: metrics.json, the fit time from run.json, and the wall time."""
    if output.exists():
        shutil.rmtree(output)
    started = time.perf_counter()
    _run(python, ["-m", f"models.{module}", "--training-data", data, "--output", output, *args], work)
    wall = time.perf_counter() - started
    run = json.loads((output / "run.json").read_text()) if (output / "run.json").exists() else {}
    return {
        "metrics": json.loads((output / "metrics.json").read_text()),
        "fit_seconds": float(run.get("fit_seconds", float("nan"))),
        "wall_seconds": wall,
        "model_dir": output / "model",
    }


def load(model_dir: Path) -> Any:
    import mlflow

    return mlflow.pyfunc.load_model(str(model_dir))


def generated_lake(python: str, work: Path, lake: Path | None) -> Path:
    """The generator's default lake (deterministic), made once under ``work`` unless given."""
    lake = lake or work / "lake"
    if not (lake / "_truth" / "generator.json").exists():
        _run(python, ["-m", "models.synthetic", "--output-path", lake], work)
    return lake


def prepared(python: str, lake: Path, model_id: str, work: Path) -> Path:
    out = work / f"prepared-{model_id}"
    if not (out / "prepared.parquet").exists():
        _run(
            python,
            ["-m", "models.prepare", "--risk-evaluations", lake / "risk_evaluations", "--ml-outcomes", lake / "ml_outcomes",
             "--model-id", model_id, "--output", out, "--no-top-up"],
            work,
        )
    return out / "prepared.parquet"


# --- risk trajectory against the generator's truth ---------------------------------------------------


def truth_cuts(held: pl.DataFrame, truth: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """Per horizon, up to :data:`CUTS_PER_HORIZON` snapshots (row ``end`` of ordered ``held``) whose
    +h day has a true risk, with that ``truth`` and the snapshot's own ``risk_score``."""
    from models import risk_trajectory as rt

    rows = held.with_row_index("end").select("end", rt.ID, rt.TIME, "risk_score")
    known = truth.select(
        pl.col("opportunity_id").alias(rt.ID), pl.col("evaluation_date").cast(pl.Datetime("us")).alias("__at"), pl.col("true_risk")
    )
    parts = []
    for horizon in rt.HORIZONS:
        found = rows.with_columns((pl.col(rt.TIME) + pl.duration(days=horizon)).alias("__at")).join(known, on=[rt.ID, "__at"])
        if found.height > CUTS_PER_HORIZON:
            found = found.sample(CUTS_PER_HORIZON, seed=seed + horizon).sort("end")
        parts.append(found.select("end", "risk_score", "true_risk", pl.lit(horizon).alias("horizon")))
    return pl.concat(parts)


def trajectory(lake: Path, work: Path, python: str) -> tuple[list[dict], list[dict]]:
    from models import risk_trajectory as rt
    from salesrisk import storage

    path = prepared(python, lake, "risk_trajectory", work)
    frame = pl.read_parquet(path)
    trained = train_cli(python, "risk_trajectory", path, work / "out-gen-trajectory", work)
    model = load(trained["model_dir"])
    held = rt.ordered(rt.holdout(frame))
    truth = storage.read_parquet(str(lake / "_truth" / "risk_evaluations"))
    cuts = truth_cuts(held, truth)
    keys = [f"cut-{i}" for i in range(cuts.height)]
    answer = pl.from_pandas(model.predict(rt.histories(held, cuts.get_column("end").to_numpy(), keys, 30).to_pandas()))
    forecast = dict(zip(answer.get_column(rt.ID).to_list(), answer.select(rt.OUTPUTS).to_numpy()))
    column = {h: i for i, h in enumerate(rt.HORIZONS)}
    predicted = np.array([forecast[k][column[h]] for k, h in zip(keys, cuts.get_column("horizon").to_list())])
    scored = cuts.with_columns(pl.Series("predicted", predicted))
    opportunities = held.get_column(rt.ID).n_unique()
    data = f"generated lake, {opportunities} held-out opportunities ({frame.height} snapshots in all)"
    rows = []
    for horizon in (*rt.HORIZONS, None):
        part = scored if horizon is None else scored.filter(pl.col("horizon") == horizon)
        true = part.get_column("true_risk").to_numpy()
        ours = float(np.mean(np.abs(part.get_column("predicted").to_numpy() - true)))
        persistence = float(np.mean(np.abs(part.get_column("risk_score").to_numpy() - true)))
        label = f"+{horizon} days" if horizon else "all horizons"
        rows.append(
            _row("risk_trajectory", data, f"MAE vs true risk, {label}", ours, f"persistence {persistence:.4f}", "< baseline", ours < persistence,
                 f"{part.height} cuts; ratio {ours / persistence:.2f}")
        )
    metrics = trained["metrics"]
    rows.append(
        _row("risk_trajectory", data, "val_mae (metrics.json)", metrics["val_mae"], "", "", None,
             "vs observed targets, incl. settled 0/1 outcomes of deals closed by +h (irreducible)")
    )
    return rows, [_timing("risk_trajectory", "generated lake (daily snapshots)", frame.height, trained)]


# --- entry points ------------------------------------------------------------------------------------


def run_all(
    data_dir: Path | None = None, work_dir: Path | None = None, lake: Path | None = None, python: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Rows (keys of model_quality.Row) and timings (keys of model_quality.Timing) of every case."""
    data_dir = Path(data_dir or os.environ.get("SALESRISK_BENCH_DATA", DEFAULT_DATA))
    work = Path(work_dir or WORK)
    work.mkdir(parents=True, exist_ok=True)
    python = python or sys.executable
    rows: list[dict[str, Any]] = []
    timings: list[dict[str, Any]] = []
    more_rows, more_timings = trajectory(generated_lake(python, work, lake), work, python)
    rows += more_rows
    timings += more_timings
    return {"rows": rows, "timings": timings}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "/")


def render(result: dict[str, list[dict[str, Any]]], seconds: float) -> str:
    met = {True: "yes", False: "**no**", None: ""}
    lines = [
        f"Figures below: `{COMMAND}` (about {seconds / 60:.0f} min on this shared 2-core machine).",
        "",
        "| model | data, protocol | metric | ours | baseline (same run) | target | met | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {_cell(r['data'])} | {_cell(r['metric'])} | {_cell(r['value'])} | {_cell(r['baseline'])} | "
            f"{_cell(r['target'])} | {met[r['met']]} | {_cell(r['note'])} |"
        )
    lines += ["", "| model | data | rows in | wall s | fit s |", "|---|---|---|---|---|"]
    lines += [
        f"| {t['model']} | {t['data']} | {t['rows']} | {t['wall_seconds']:.1f} | {t['fit_seconds']:.1f} |" for t in result["timings"]
    ]
    return "\n".join(lines) + "\n"


def write_readme(table: str) -> None:
    """Replace only the generated table inside the "Sequence models" subsection."""
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    block = f"{START}\n{table}{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n## Sequence models\n\n{block}\n"
    README.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality_sequence", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="../shared/data by default")
    parser.add_argument("--no-readme", action="store_true", help="print the table, leave README.md alone")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    started = time.perf_counter()
    result = run_all(data_dir=args.data)
    table = render(result, time.perf_counter() - started)
    print(table)
    if not args.no_readme:
        write_readme(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
