"""Run every benchmark in turn (each writes its own section of benchmarks/README.md or prints).

Usage: .venv/bin/python -m benchmarks.run_all [--only NAME ...]
Takes about two hours on a 2-core machine; run one with `python -m benchmarks.<name>`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

BENCHMARKS = {
    "prepare": "benchmarks.prepare_bench",
    "generator": "benchmarks.generator_bench",
    "model_quality": "benchmarks.model_quality",
    "serving": "benchmarks.serving",
    "load": "benchmarks.load",
    "fuzz": "benchmarks.fuzz",
    "orchestration": "benchmarks.orchestration",
    "reports": "benchmarks.reports_bench",
    "anomaly_quality": "benchmarks.anomaly_quality",
    "forecast_quality": "benchmarks.forecast_quality",
    "scaling": "benchmarks.scaling",
    "industry_models": "benchmarks.industry_models",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=sorted(BENCHMARKS))
    args = parser.parse_args()
    failed = []
    for name in args.only:
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, "-m", BENCHMARKS[name]]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
