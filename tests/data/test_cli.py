"""Both command lines, as the runbook and the Azure ML job files run them: real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl

from salesrisk import catalog
from tests.data.conftest import files_under

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_generate_append_then_prepare(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    made = _run(
        "models.synthetic", "--output-path", str(lake), "--n-opportunities", "300", "--tenants", "2",
        "--start", "2024-01-01", "--end", "2024-06-30", "--seed", "4",
    )
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)
    assert summary["output_path"] == str(lake) and summary["rows"][catalog.ML_OUTCOMES] > 100
    appended = _run("models.synthetic", "--output-path", str(lake), "--append-days", "5", "--seed", "4")
    assert appended.returncode == 0, appended.stderr
    assert json.loads(appended.stdout)["rows"][catalog.REVENUE_DAILY] == 2 * 5

    out = tmp_path / "prep"
    prepared = _run(
        "models.prepare", "--risk-evaluations", str(lake / catalog.RISK_EVALUATIONS),
        "--ml-outcomes", str(lake / catalog.ML_OUTCOMES), "--model-id", "win_probability",
        "--output", str(out), "--tenant-id", "tenant-01", "--partition-date", "2024-05-31",
    )
    assert prepared.returncode == 0, prepared.stderr
    result = json.loads(prepared.stdout)
    frame = pl.read_parquet(result["output_uri"])
    assert result["rows"] == frame.height == catalog.MODELS["win_probability"].min_rows
    assert result["synthetic_rows"] == frame[catalog.IS_SYNTHETIC].sum() > 0
    assert "synthetic rows" in prepared.stderr
    real = frame.filter(pl.col(catalog.IS_SYNTHETIC) == 0)
    assert set(real["tenant_id"]) == {"tenant-01"} and real["closed_date"].max().isoformat() <= "2024-05-31"

    trajectory = _run(
        "models.prepare", "--risk-evaluations", str(lake / catalog.RISK_EVALUATIONS),
        "--ml-outcomes", str(lake / catalog.ML_OUTCOMES), "--model-id", "risk_trajectory",
        "--output", str(tmp_path / "traj"), "--no-top-up",
    )
    assert trajectory.returncode == 0, trajectory.stderr
    assert json.loads(trajectory.stdout)["rows"] == pl.read_parquet(tmp_path / "traj" / "prepared.parquet").height

    # Each model's command line needs only the tables it reads (as its Azure ML prepare job mounts them).
    for model_id, spec in catalog.MODELS.items():
        flags = [arg for table in spec.sources for arg in (f"--{table.replace('_', '-')}", str(lake / table))]
        own = _run("models.prepare", *flags, "--model-id", model_id, "--output", str(tmp_path / "own" / model_id))
        assert own.returncode == 0, (model_id, own.stderr[-2000:])
    none = _run("models.prepare", "--model-id", "win_probability", "--output", str(tmp_path / "none"))
    assert none.returncode == 2 and "--risk-evaluations and --ml-outcomes" in none.stderr, none.stderr
    assert not (tmp_path / "none").exists()


def test_prepare_bad_input_exits_2_names_file_and_column(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert _run("models.synthetic", "--output-path", str(lake), "--n-opportunities", "200", "--tenants", "1",
                "--start", "2024-01-01", "--end", "2024-03-31").returncode == 0
    for path in files_under(lake / catalog.ML_OUTCOMES):
        pl.read_parquet(path).with_columns(closed_date=pl.col("closed_date").cast(pl.String)).write_parquet(path)
    out = tmp_path / "prep"
    done = _run(
        "models.prepare", "--risk-evaluations", str(lake / catalog.RISK_EVALUATIONS),
        "--ml-outcomes", str(lake / catalog.ML_OUTCOMES), "--model-id", "risk_scoring", "--output", str(out),
    )
    assert done.returncode == 2
    assert str(lake / catalog.ML_OUTCOMES) in done.stderr and "'closed_date'" in done.stderr and "date column" in done.stderr
    assert files_under(out) == []


def test_cli_argument_errors(tmp_path: Path) -> None:
    wrong_model = _run("models.prepare", "--risk-evaluations", "x", "--ml-outcomes", "y", "--model-id", "nope", "--output", str(tmp_path))
    assert wrong_model.returncode == 2 and "--model-id" in wrong_model.stderr
    missing = _run("models.prepare", "--risk-evaluations", str(tmp_path / "none"), "--ml-outcomes", "y",
                   "--model-id", "anomaly", "--output", str(tmp_path / "o"))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    bad_range = _run("models.synthetic", "--output-path", str(tmp_path / "l"), "--start", "2025-01-02", "--end", "2025-01-01")
    assert bad_range.returncode == 2 and "after end" in bad_range.stderr
    not_generated = _run("models.synthetic", "--output-path", str(tmp_path / "empty"), "--append-days", "3")
    assert not_generated.returncode == 2 and "generator.json" in not_generated.stderr
    assert files_under(tmp_path) == []
