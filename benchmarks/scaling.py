"""The industry family's cost as the industries grow: 1, 4 and 16 industries, and a larger lake.

Usage: .venv/bin/python -m benchmarks.scaling [--no-readme] [--iterations 60]

For each case the family is trained the way retrain-all trains it: the global model, then one
trainer per industry, all at once, as many at a time as this machine has cores (on Azure ML each is
one command job, AZURE_ML_MAX_CONCURRENT_JOBS at a time). Every trainer is the same command line the
local compute and the Azure ML job run (``python -m <trainer module> --training-data ...
--industry-id ...``), with fast trainer options so the run stays short. The industries are the
lake's deals relabelled into N equal groups (the generator has eight), so each case trains N
industry models on the same rows. Reported: wall time of the family, peak memory of the largest
trainer process and of this process, and the per-industry overhead ((wall(N) - wall(1)) / (N - 1)
and the median trainer time). The script writes its section of benchmarks/README.md itself.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import resource
import shutil
import statistics
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
    group = (pl.col("opportunity_id").hash(seed=3) % industries).cast(pl.Int32)
    return frame.with_columns(pl.format("ind{}", group.cast(pl.String).str.zfill(2)).alias(catalog.INDUSTRY_ID))


def train_one(data: Path, output: Path, industry: str | None, iterations: int) -> float:
    """One trainer process, as the local compute runs it; returns its wall seconds."""
    import subprocess

    args = [sys.executable, "-m", specs.get(FAMILY.model_id).trainer.module, "--training-data", str(data),
            "--output", str(output), "--iterations", str(iterations)]
    if industry:
        args += ["--industry-id", industry]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{WORK / 'mlflow.db'}"}
    start = time.perf_counter()
    done = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"trainer for {industry or 'global'} failed: {done.stderr.decode()[-800:]}")
    return time.perf_counter() - start


def run_case(frame: pl.DataFrame, opportunities: int, industries: int, iterations: int) -> dict:
    case = WORK / f"case-{opportunities}-{industries}"
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir(parents=True)
    data = case / "training.parquet"
    labelled = relabelled(frame, industries)
    labelled.write_parquet(data)
    names = list(segments.closed_deals_by_industry(labelled))
    workers = os.cpu_count() or 1
    start = time.perf_counter()
    global_seconds = train_one(data, case / "global", None, iterations)  # industries are gated against it
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        times = list(pool.map(lambda i: train_one(data, case / i, i, iterations), names))
    wall = time.perf_counter() - start
    return {
        "opportunities": opportunities, "rows": labelled.height, "industries": len(names), "wall": wall,
        "global": global_seconds, "median_industry": statistics.median(times), "sum_industry": sum(times),
        "rows_per_industry": labelled.height // len(names), "load": load_average(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60, help="CatBoost iterations per model (fast)")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    results = []
    for opportunities, industries in CASES:
        result = run_case(prepared_frame(opportunities), opportunities, industries, args.iterations)
        # the largest trainer process so far (ru_maxrss of children is the maximum, not a sum)
        result["peak_child_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        result["peak_self_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.append(result)
        print(result, flush=True)
    base = {r["opportunities"]: r for r in results if r["industries"] == 1}
    lines = [
        "## Industry family scaling (`benchmarks/scaling.py`)",
        "",
        f"Command: `.venv/bin/python -m benchmarks.scaling --iterations {args.iterations}`; {stamp()}. "
        "The machine was shared with other work: absolute seconds are inflated, ratios less so.",
        "Each case trains the global model, then every industry model at once, "
        f"{os.cpu_count()} trainer processes at a time (one Azure ML job each on a cluster).",
        "",
        "| lake (deals) | rows | industries | rows / industry | wall s | global s | median industry s | "
        "per-industry overhead s | peak trainer MiB | peak driver MiB | load (1/5/15) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        one = base.get(r["opportunities"]) or results[0]
        extra = (r["wall"] - one["wall"]) / (r["industries"] - 1) if r["industries"] > 1 and one is not r else float("nan")
        lines.append(
            f"| {r['opportunities']} | {r['rows']} | {r['industries']} | {r['rows_per_industry']} | {r['wall']:.1f} | "
            f"{r['global']:.1f} | {r['median_industry']:.1f} | {extra:.2f} | {r['peak_child_mib']:.0f} | "
            f"{r['peak_self_mib']:.0f} | {r['load']} |"
        )
    small = [r for r in results if r["opportunities"] == CASES[0][0]]
    if len(small) >= 2:
        first, last = small[0], small[-1]
        lines += ["", f"Wall time from {first['industries']} to {last['industries']} industries: "
                  f"x{last['wall'] / first['wall']:.2f} for x{last['industries'] / first['industries']:.0f} models; "
                  f"summed trainer time x{last['sum_industry'] / max(first['sum_industry'], 1e-9):.2f}."]
    body = "\n".join(lines)
    print(body)
    if not args.no_readme:
        replace_section("scaling", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
