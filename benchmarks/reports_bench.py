"""What a training report costs: ``models.reports.log_training_report`` against the model's own
scoring of the same held-out rows, per model.

Usage: .venv/bin/python -m benchmarks.reports_bench [--opportunities 4000] [--repeats 3] [--models a,b]

Inputs are built in memory by the project's own generator and preparation (``models.synthetic``,
``models.prepare``): win probability and risk scoring on the closed deals of ``--opportunities``
opportunities, the trajectory on their daily snapshots, the forecast on two years of daily
revenue, anomaly on the open evaluations. Each model is trained once with the trainer's default
parameters (through ``main(argv)``, into a temporary MLflow store); then, in the same warm process,
the report is drawn and logged ``--repeats`` times and the baseline (``pyfunc.predict`` on the
held-out rows the report scores, which the report cannot avoid) is timed as often. Reported: the
medians and report / baseline. The trainer's own fit is printed for scale.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import polars as pl

MODELS = ("win_probability", "risk_scoring", "anomaly", "risk_trajectory", "revenue_forecast")


def inputs(n_opportunities: int) -> dict[str, pl.DataFrame]:
    from models import prepare, synthetic
    from salesrisk import catalog

    spec = synthetic.make_spec(n_opportunities=n_opportunities, tenants=2, end=date(2025, 12, 31), seed=3)
    tables = synthetic.build_tables(spec, spec.start, spec.end)
    evaluations = tables[catalog.RISK_EVALUATIONS].lazy()
    outcomes = tables[catalog.ML_OUTCOMES].lazy()
    return {
        "win_probability": prepare.opportunity_frame("win_probability", evaluations, outcomes).collect(),
        "risk_scoring": prepare.opportunity_frame("risk_scoring", evaluations, outcomes).collect(),
        "anomaly": prepare.anomaly_frame(evaluations, labelled=True).collect(),
        "risk_trajectory": prepare.trajectory_frame(tables[catalog.RISK_SNAPSHOTS].lazy(), outcomes).collect(),
        "revenue_forecast": prepare.revenue_frame(tables[catalog.REVENUE_DAILY].lazy()).collect(),
    }


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench(model_id: str, data: pl.DataFrame, workdir: Path, repeats: int) -> dict[str, object]:
    import argparse as ap
    import importlib

    import mlflow

    from models import reports, tabular

    module = importlib.import_module(f"models.{model_id}")
    path = workdir / f"{model_id}.parquet"
    data.write_parquet(path)
    output = workdir / model_id
    started = time.perf_counter()
    code = module.main(["--training-data", str(path), "--output", str(output)])
    trained_in = time.perf_counter() - started
    assert code == 0, f"{model_id} exited {code}"
    args = module.build_parser().parse_args(["--training-data", str(path), "--output", str(output)])
    predictor = mlflow.pyfunc.load_model(str(output / "model"))
    rows = reports.report_rows(model_id, data, args)
    if model_id == "risk_trajectory":  # the report scores nothing; the baseline is a predict on the held-out rows
        rows = reports.held_out(model_id, data, args)
    frame = rows.drop("y").to_pandas() if model_id == "revenue_forecast" else tabular.pandas_input(rows, predictor)
    if model_id == "risk_trajectory":
        frame = rows.to_pandas()
    baseline = median_seconds(lambda: predictor.predict(frame), repeats)
    with mlflow.start_run():
        reports.log_training_report(model_id, output / "model", data, args)  # warm-up (first matplotlib use)
        report = median_seconds(lambda: reports.log_training_report(model_id, output / "model", data, ap.Namespace(**vars(args))), repeats)
    return {"model": model_id, "rows": rows.height, "train_s": trained_in, "report_s": report, "predict_s": baseline}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reports_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--opportunities", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args(argv)
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="reports-bench-") as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        os.environ.setdefault("MPLCONFIGDIR", f"{tmp}/mpl")
        os.chdir(tmp)
        data = inputs(args.opportunities)
        print("| model | held-out rows scored | report median s | predict median s (baseline) | ratio | trainer s |")
        print("|---|---|---|---|---|---|")
        for model_id in chosen:
            r = bench(model_id, data[model_id], Path(tmp), args.repeats)
            print(f"| {r['model']} | {r['rows']} | {r['report_s']:.2f} | {r['predict_s']:.2f} | "
                  f"{r['report_s'] / max(r['predict_s'], 1e-9):.1f} | {r['train_s']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
