"""Every flow is a script whose --help lists the runbook's inputs, built from the flow's signature."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from flows import cli

ROOT = Path(__file__).resolve().parents[2]

EXPECTED_FLAGS = {
    ("retrain_all", "retrain_all"): ["--models", "--compute", "--no-deploy", "--lake"],
    ("risk_scoring", "risk_scoring"): ["--training-data", "--model-name", "--industry-id", "--no-deploy", "--tenant-id", "--partition-date"],
    ("risk_trajectory", "risk_trajectory"): ["--training-data", "--sequence-length", "--no-deploy"],
    ("win_probability", "win_probability"): ["--training-data", "--model-name", "--no-deploy", "--tenant-id", "--partition-date"],
    ("revenue_forecasting", "revenue_forecasting"): ["--training-data", "--no-deploy"],
    ("anomaly_detection", "anomaly_detection"): ["--training-data", "--param-contamination", "--param-n-estimators", "--no-deploy"],
    ("prepare_training", "prepare_training"): ["--model-id", "--risk-evaluations", "--ml-outcomes", "--tenant-id", "--partition-date"],
    ("pipelines", "prepare_then_win_probability"): ["--risk-evaluations", "--ml-outcomes", "--no-deploy"],
    ("pipelines", "prepare_then_risk_scoring"): ["--risk-evaluations", "--ml-outcomes", "--industry-id"],
    ("backfill_synthetic", "backfill_synthetic"): ["--days", "--lake"],
    ("rollback", "rollback_model"): ["--endpoint", "--to-version", "--reason"],
    ("monitor", "monitor_models"): ["--endpoints", "--lake"],
}


@pytest.mark.parametrize(("module", "name"), sorted(EXPECTED_FLAGS))
def test_flow_help_lists_its_inputs(module: str, name: str) -> None:
    flow = getattr(importlib.import_module(f"flows.{module}"), name)
    text = cli.build_parser(flow).format_help()
    for flag in EXPECTED_FLAGS[(module, name)]:
        assert flag in text, f"flows/{module}.py ({name}) --help does not list {flag}"


@pytest.mark.parametrize(("module", "name"), sorted(EXPECTED_FLAGS))
def test_every_flag_says_what_it_does(module: str, name: str) -> None:
    """Help written from the runbook table or the model's spec, not the parameter's own name
    (which read "--no-industries: do not industries")."""
    flow = getattr(importlib.import_module(f"flows.{module}"), name)
    for action in cli.build_parser(flow)._actions:
        if action.dest == "help":
            continue
        words = action.dest.replace("_", " ")
        assert action.help and action.help.removeprefix("do not ") not in (action.dest, words), (
            f"flows/{module}.py ({name}) {action.option_strings[0]}: help is only its name: {action.help!r}"
        )


def test_flow_files_run_as_scripts() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "flows" / "retrain_all.py"), "--help"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--no-deploy" in done.stdout


def test_parsed_values_take_the_parameter_types() -> None:
    from flows.anomaly_detection import anomaly_detection

    args = cli.build_parser(anomaly_detection).parse_args(
        ["--param-contamination", "0.05", "--param-n-estimators", "200", "--partition-date", "2025-06-30", "--no-deploy"]
    )
    assert (args.param_contamination, args.param_n_estimators, args.deploy) == (0.05, 200, False)
    assert args.partition_date.isoformat() == "2025-06-30"
