"""The industry family's cost as the industries grow: 1, 4 and 16 industries, and a larger lake.

Usage: .venv/bin/python -m benchmarks.scaling [--no-readme] [--iterations 60]

Each case trains the family the way retrain-all does: the global model, then every industry model
at once, as many at a time as this machine has cores (on Azure ML each is one command job,
AZURE_ML_MAX_CONCURRENT_JOBS at a time). The industries are the lake's deals relabelled into N
equal groups (the generator has eight), so every case trains on the same rows. The fits are the
trainer's own (``models.risk_scoring``: split, CatBoost fit with early stopping, held-out scoring
with SHAP factors), in this process, with fast options so the run stays short. An industry fit
includes its base, the global rows refitted inside the industry's job, which the industry model
continues from (docs/industry-models.md): each industry costs about one global fit. What a fit does not
include, the trainer *job* (a process: imports, MLflow run, model files, report plots), is measured
once per lake as the full command line ``python -m <trainer> --training-data ... --industry-id ...``
that the local compute and the Azure ML job run, and reported as the fixed per-job overhead.
The script writes its section of benchmarks/README.md itself.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl

from benchmarks.readme_section import load_average, replace_section, stamp
from models import prepare as prepare_mod
from models import segments, specs, synthetic
from salesrisk import catalog

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "scaling"
FAMILY = next(spec for spec in catalog.MODELS.values() if spec.industry_name)
CASES = ((8000, 1), (8000, 4), (8000, 16), (32000, 16))  # (opportunities in the lake, industries)


def prepared_frame(opportunities: int) -> pl.DataFrame:
    """The family's prepared training rows from a generated lake of ``opportunities`` deals."""
    lake = WORK / f"lake-{opportunities}"
    if not (lake / catalog.ML_OUTCOMES).exists():
        shutil.rmtree(lake, ignore_errors=True)
        synthetic.generate(str(lake), n_opportunities=opportunities, start=date(2024, 1, 1), end=date(2025, 6, 30), seed=11)
    out = WORK / f"prepared-{opportunities}"
    if not (out / "prepared.parquet").exists():
        prepare_mod.main(["--risk-evaluations", str(lake / catalog.RISK_EVALUATIONS), "--ml-outcomes",
                          str(lake / catalog.ML_OUTCOMES), "--model-id", FAMILY.model_id, "--output", str(out), "--no-top-up"])
    return pl.read_parquet(out / "prepared.parquet")


def relabelled(frame: pl.DataFrame, industries: int) -> pl.DataFrame:
    """The same deals in ``industries`` equal groups, by a hash of the opportunity id."""
    group = (pl.col("opportunity_id").hash(seed=3) % industries).cast(pl.String).str.zfill(2)
    return frame.with_columns(pl.format("ind{}", group).alias(catalog.INDUSTRY_ID))


FAMILY_FEATURES = catalog.RISK_SCORING_FEATURES


def fit_seconds(frame: pl.DataFrame, industry: str | None, iterations: int) -> float:
    """The trainer's split, fit and held-out scoring of one model, in this process; an industry
    model first fits its base on the global rows (as the trainer does) and continues from it."""
    trainer = specs.get(FAMILY.model_id).trainer.load()
    params = trainer.RiskParams(iterations=iterations)
    start = time.perf_counter()
    train, valid, test = trainer.split(trainer.training_rows(frame, industry))
    base = None
    if industry is not None:
        base = trainer.train(*trainer.base_split(frame, industry), list(FAMILY_FEATURES), params)
    fitted = trainer.train(train, valid, list(FAMILY_FEATURES), params, base)
    trainer.score_frame(fitted.model, fitted.spec, fitted.target_range, test.to_pandas())
    return time.perf_counter() - start


def job_seconds(data: Path, output: Path, industry: str | None, iterations: int) -> tuple[float, float]:
    """One trainer job as the local compute runs it (a process); returns its wall seconds and peak MiB."""
    args = [sys.executable, "-m", specs.get(FAMILY.model_id).trainer.module, "--training-data", str(data),
            "--output", str(output), "--iterations", str(iterations)]
    if industry:
        args += ["--industry-id", industry]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{WORK / 'mlflow.db'}"}
    start = time.perf_counter()
    # a small launcher runs the job, so the job's peak memory is its own, not this process's copy
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, *args], env=env, capture_output=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"trainer for {industry or 'global'} failed: {done.stderr.decode()[-800:]}")
    return seconds, int(done.stdout.decode().strip().splitlines()[-1]) / 1024


_LAUNCHER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def run_case(frame: pl.DataFrame, opportunities: int, industries: int, iterations: int) -> dict:
    labelled = relabelled(frame, industries)
    names = list(segments.closed_deals_by_industry(labelled))
    start = time.perf_counter()
    global_seconds = fit_seconds(labelled, None, iterations)  # industries are gated against it
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        times = list(pool.map(lambda i: fit_seconds(labelled, i, iterations), names))
    wall = time.perf_counter() - start
    return {
        "opportunities": opportunities, "rows": labelled.height, "industries": len(names), "wall": wall,
        "global": global_seconds, "median_industry": statistics.median(times), "sum_industry": sum(times),
        "rows_per_industry": labelled.height // len(names), "load": load_average(),
        "peak_self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def job_overhead(frame: pl.DataFrame, opportunities: int, iterations: int) -> dict:
    """One industry's trainer job (of 16) against its in-process fit: what each Azure ML job adds."""
    case = WORK / f"job-{opportunities}"
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir(parents=True)
    labelled = relabelled(frame, 16)
    data = case / "training.parquet"
    labelled.write_parquet(data)
    industry = next(iter(segments.closed_deals_by_industry(labelled)))
    fit = fit_seconds(labelled, industry, iterations)
    job, peak = job_seconds(data, case / "out", industry, iterations)
    return {"opportunities": opportunities, "job": job, "fit": fit, "peak_job_mib": peak, "load": load_average()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60, help="CatBoost iterations per model (fast)")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    results = []
    fit_seconds(relabelled(prepared_frame(CASES[0][0]), 1), None, args.iterations)  # imports and first-fit set-up, untimed
    for opportunities, industries in CASES:
        result = run_case(prepared_frame(opportunities), opportunities, industries, args.iterations)
        results.append(result)
        print(result, flush=True)
    jobs = [job_overhead(prepared_frame(n), n, args.iterations) for n in dict.fromkeys(n for n, _ in CASES)]
    print(jobs, flush=True)
    base = {r["opportunities"]: r for r in results if r["industries"] == 1}
    lines = [
        "## Industry family scaling (`benchmarks/scaling.py`)",
        "",
        f"Command: `.venv/bin/python -m benchmarks.scaling --iterations {args.iterations}`; {stamp()}. "
        "The machine was shared with other work (load average per row): absolute seconds are inflated, ratios less so.",
        f"Each case fits the global model, then every industry model at once, {os.cpu_count()} at a time, "
        "in one process (CatBoost, 2 threads per fit), after one untimed warm-up fit. Peak MiB is this process's peak so far (the larger lake's frames included).",
        "",
        "| lake (deals) | rows | industries | rows / industry | wall s | global fit s | median industry fit s | "
        "per-industry wall s | peak MiB | load (1/5/15) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        one = base.get(r["opportunities"])
        extra = f"{(r['wall'] - one['wall']) / (r['industries'] - 1):.2f}" if one is not None and r["industries"] > 1 else "-"
        lines.append(
            f"| {r['opportunities']} | {r['rows']} | {r['industries']} | {r['rows_per_industry']} | {r['wall']:.1f} | "
            f"{r['global']:.1f} | {r['median_industry']:.2f} | {extra} | {r['peak_self_mib']:.0f} | {r['load']} |"
        )
    small = [r for r in results if r["opportunities"] == CASES[0][0]]
    if len(small) >= 2:
        first, last = small[0], small[-1]
        lines += ["", f"From {first['industries']} to {last['industries']} industries on the same rows: wall "
                  f"x{last['wall'] / first['wall']:.2f} for x{last['industries'] / first['industries']:.0f} models; "
                  f"summed industry fit time x{last['sum_industry'] / max(first['sum_industry'], 1e-9):.2f}."]
    lines += ["", "Per trainer job (one of 16 industries, the full command line as a process):", "",
              "| lake (deals) | job s | of which fit s | fixed job overhead s | peak job MiB | load (1/5/15) |",
              "|---|---|---|---|---|---|"]
    for j in jobs:
        lines.append(f"| {j['opportunities']} | {j['job']:.1f} | {j['fit']:.2f} | {j['job'] - j['fit']:.1f} | "
                     f"{j['peak_job_mib']:.0f} | {j['load']} |")
    body = "\n".join(lines)
    print(body)
    if not args.no_readme:
        replace_section("scaling", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
