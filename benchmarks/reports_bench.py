"""What a training report costs: ``models.reports.log_training_report`` against the model's own
scoring of the same held-out rows, per model.

Usage: .venv/bin/python -m benchmarks.reports_bench [--opportunities 4000] [--repeats 3] [--models a,b] [--no-readme]

Inputs are built in memory by the project's own generator and preparation (``models.synthetic``,
``models.prepare``): win probability and risk scoring on the closed deals of ``--opportunities``
opportunities, the trajectory on their daily snapshots, the forecast on two years of daily
revenue, anomaly on the open evaluations. Each model is trained once with the trainer's default
parameters (through ``main(argv)``, into a temporary MLflow store); then, in the same warm process,
the report is drawn and logged ``--repeats`` times and the baseline (``pyfunc.predict`` on the
held-out rows the report scores, which the report cannot avoid) is timed as often. Reported: the
medians and report / baseline. The trainer's own fit is printed for scale. With every model
chosen, the script writes its section of benchmarks/README.md.
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


REPORT_TARGET_S = 2.0  # per training run, on top of the fit


def render(results: list[dict[str, object]], args: argparse.Namespace) -> str:
    from benchmarks.readme_section import stamp, verdict

    lines = [
        "## Training reports",
        "",
        f"Command: `.venv/bin/python -m benchmarks.reports_bench --opportunities {args.opportunities} "
        f"--repeats {args.repeats}` (this section is written by it). Each model is trained once with its "
        f"defaults on generated data ({args.opportunities:,} opportunities), then, in one warm process, "
        "`models.reports.log_training_report` (load the saved pyfunc, score every held-out row the logged "
        "metrics used, draw and log the PNGs and the reference sample) is timed against the baseline of "
        "the model's own `pyfunc.predict` on the same rows. "
        f"Medians of {args.repeats}; measured {stamp()}; the machine was shared with other jobs unless "
        "the load average says otherwise.",
        "",
        f"| model | held-out rows scored | report s (median) | predict s (baseline, median) | ratio | trainer s | "
        f"target: report <= {REPORT_TARGET_S:g} s |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        ratio = float(r["report_s"]) / max(float(r["predict_s"]), 1e-9)
        lines.append(f"| {r['model']} | {r['rows']:,} | {r['report_s']:.2f} | {r['predict_s']:.2f} | {ratio:.1f} | "
                     f"{r['train_s']:.0f} | {verdict(float(r['report_s']), REPORT_TARGET_S)} |")
    lines += ["", "risk_trajectory's report plots the run's logged metrics and scores nothing; its baseline is a "
              "predict on its held-out snapshot rows."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reports_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--opportunities", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--no-readme", action="store_true", help="print the section, leave README.md alone")
    args = parser.parse_args(argv)
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    cwd = os.getcwd()
    results = []
    with tempfile.TemporaryDirectory(prefix="reports-bench-") as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        os.environ.setdefault("MPLCONFIGDIR", f"{tmp}/mpl")
        os.chdir(tmp)
        data = inputs(args.opportunities)
        for model_id in chosen:
            r = bench(model_id, data[model_id], Path(tmp), args.repeats)
            results.append(r)
            print(f"{r['model']}: {r['rows']} rows, report {r['report_s']:.2f} s, predict {r['predict_s']:.2f} s, "
                  f"trainer {r['train_s']:.0f} s", flush=True)
        os.chdir(cwd)
    section = render(results, args)
    print(section)
    if not args.no_readme and set(chosen) == set(MODELS):
        from benchmarks.readme_section import replace_section

        replace_section("training-reports", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
