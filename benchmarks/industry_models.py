"""Industry risk models against the global model, on generated lakes of several seeds.

``.venv/bin/python benchmarks/industry_models.py [--seeds 0,1,2,3,4,5,6,7] [--n-opportunities 8000]
[--min-closed-deals 600] [--no-industry-drivers] [--no-readme]``

For each seed: the default lake in memory, the risk-scoring rows as preparation makes them, the
global model, and for every industry with enough closed deals its model fitted two ways: from
scratch on the industry's rows (``--from-scratch``) and warm-started from the global base (the
trainer's default). Each is scored on the industry's held-out rows the global model never trained
on, the rows the gate compares on, against the outcomes (RMSE, MAE: what the gate sees) and
against the generator's true risk, 1 - true win probability (RMSE: what the model should learn,
free of the coin flips of ~140 outcomes). "serves" applies the gate's rule (RMSE and MAE at
least as good as global's, tolerance 0). Fit times are per industry model, in this process.
``--no-industry-drivers`` sets every industry driver of the generator to 0 (the lake from before
they existed), to see what the industry models do when industries differ only by a shift.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: benchmarks/ is importable from the project folder
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import polars as pl
from sklearn.metrics import mean_absolute_error, root_mean_squared_error

from benchmarks.readme_section import replace_section, stamp
from models import prepare, risk_scoring, segments, synthetic
from salesrisk import catalog

FEATURES = list(catalog.RISK_SCORING_FEATURES)
_ROW = "__bench_row"


def _predict(trained: risk_scoring.TrainedRisk, rows: pl.DataFrame) -> np.ndarray:
    frame = rows.select(trained.spec.columns).to_pandas()
    return risk_scoring.score_frame(trained.model, trained.spec, trained.target_range, frame)["risk_score"].to_numpy()


def _scores(rows: pl.DataFrame, predicted: np.ndarray) -> dict[str, float]:
    actual = rows.get_column(catalog.RISK_TARGET).to_numpy()
    return {
        "RMSE": float(root_mean_squared_error(actual, predicted)),
        "MAE": float(mean_absolute_error(actual, predicted)),
        "truth": float(root_mean_squared_error(rows.get_column("true_risk").to_numpy(), predicted)),
    }


def lake_rows(seed: int, n_opportunities: int) -> pl.DataFrame:
    """Prepared risk-scoring rows of a generated lake, with each deal's true risk beside them."""
    spec = synthetic.make_spec(seed=seed, n_opportunities=n_opportunities)
    tables = synthetic.build_tables(spec, spec.start, spec.end, [catalog.RISK_EVALUATIONS, catalog.ML_OUTCOMES, catalog.TRUTH])
    rows = prepare.opportunity_frame(
        "risk_scoring", tables[catalog.RISK_EVALUATIONS].lazy(), tables[catalog.ML_OUTCOMES].lazy()
    ).collect()
    truth = tables[f"{catalog.TRUTH}/{synthetic.TRUTH_OPPORTUNITIES}"].select(
        "opportunity_id", (1 - pl.col("true_win_probability")).alias("true_risk")
    )
    return rows.join(truth, on="opportunity_id", how="left").with_row_index(_ROW)


def measure_seed(seed: int, n_opportunities: int, min_closed_deals: int) -> list[dict]:
    rows = lake_rows(seed, n_opportunities)
    params = risk_scoring.RiskParams()
    global_train, global_valid, _ = risk_scoring.split(risk_scoring.training_rows(rows))
    started = time.perf_counter()
    global_model = risk_scoring.train(global_train, global_valid, FEATURES, params)
    global_seconds = time.perf_counter() - started
    seen = pl.concat([global_train, global_valid]).get_column(_ROW)
    results = []
    for industry in segments.eligible_industries(rows, min_closed_deals):
        held = risk_scoring.holdout(rows, industry_id=industry).filter(~pl.col(_ROW).is_in(seen.implode()))
        train, valid, _ = risk_scoring.split(risk_scoring.training_rows(rows, industry))
        result = {"seed": seed, "industry": industry, "rows": held.height, "global_seconds": global_seconds,
                  "global": _scores(held, _predict(global_model, held))}
        started = time.perf_counter()
        scratch = risk_scoring.train(train, valid, FEATURES, params)
        result["scratch_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        base = risk_scoring.train(*risk_scoring.base_split(rows, industry), FEATURES, params)
        warm = risk_scoring.train(train, valid, FEATURES, params, base)
        result["warm_seconds"] = time.perf_counter() - started
        result["warm_trees"] = warm.best_iteration + 1
        for name, model in (("scratch", scratch), ("warm", warm)):
            scores = _scores(held, _predict(model, held))
            scores["serves"] = scores["RMSE"] <= result["global"]["RMSE"] and scores["MAE"] <= result["global"]["MAE"]
            result[name] = scores
        results.append(result)
        print(
            f"seed {seed} {industry:14s} n={held.height:4d} global {result['global']['RMSE']:.4f}/{result['global']['MAE']:.4f}"
            f" truth {result['global']['truth']:.4f} | scratch {result['scratch']['RMSE']:.4f}/{result['scratch']['MAE']:.4f}"
            f" truth {result['scratch']['truth']:.4f} | warm {result['warm']['RMSE']:.4f}/{result['warm']['MAE']:.4f}"
            f" truth {result['warm']['truth']:.4f} (+{result['warm_trees']} trees)",
            flush=True,
        )
    return results


def section(results: list[dict], command: str) -> str:
    def row(name: str) -> str:
        serves = sum(r[name]["serves"] for r in results)
        closer = sum(r[name]["truth"] < r["global"]["truth"] for r in results)
        d_rmse = statistics.mean(r[name]["RMSE"] - r["global"]["RMSE"] for r in results)
        d_mae = statistics.mean(r[name]["MAE"] - r["global"]["MAE"] for r in results)
        d_truth = statistics.mean(r[name]["truth"] - r["global"]["truth"] for r in results)
        seconds = statistics.median(r[f"{name}_seconds"] for r in results)
        return (f"| {name} | {serves}/{len(results)} | {d_rmse:+.4f} | {d_mae:+.4f} | {d_truth:+.4f} | {closer}/{len(results)} "
                f"| {seconds:.2f} |")

    seeds = sorted({r["seed"] for r in results})
    return "\n".join([
        "## Industry risk models against the global model", "",
        f"Command: {command}. Seeds {', '.join(map(str, seeds))}; every industry with enough closed deals; scored on the "
        "industry's held-out rows the global model never trained on. Differences are industry model minus global "
        "(negative is better); 'truth' is RMSE against the generator's true risk. Fit time is the median per "
        f"industry model (warm includes refitting its base), 2 threads; measured {stamp()}, on a shared machine.", "",
        "| industry model | serves (gate rule) | mean dRMSE | mean dMAE | mean dRMSE vs truth | closer to truth than global | fit s (median) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        row("scratch"),
        row("warm"),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7")
    parser.add_argument("--n-opportunities", type=int, default=8000)
    parser.add_argument("--min-closed-deals", type=int, default=600)
    parser.add_argument("--no-industry-drivers", action="store_true", help="generate with every industry driver 0")
    parser.add_argument("--no-readme", action="store_true", help="print the section, do not write benchmarks/README.md")
    args = parser.parse_args(argv)
    if args.no_industry_drivers:
        synthetic.INDUSTRY_DRIVERS = {industry: (0.0, 0.0, 0.0) for industry in synthetic.INDUSTRY_DRIVERS}
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        results.extend(measure_seed(seed, args.n_opportunities, args.min_closed_deals))
    command = (f"`.venv/bin/python benchmarks/industry_models.py --seeds {args.seeds} --n-opportunities {args.n_opportunities} "
               f"--min-closed-deals {args.min_closed_deals}{' --no-industry-drivers' if args.no_industry_drivers else ''}`")
    text = section(results, command)
    print(text)
    if not args.no_readme:
        replace_section("industry-models", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
