"""Bad training inputs through the trainer command line (``python -m models.<id> --training-data
FILE --output DIR``), one row of CASES each.

Every case must end in exit code 2 with one ``error:`` line naming the file, the column and the
expected form, no traceback, nothing in the output folder, no MLflow run, no registered version,
and the baseline model still registered and served as before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tests.reliability import frames
from tests.reliability.bad_input_support import (  # noqa: F401  (fixtures)
    assert_rejected,
    assert_unchanged,
    baseline,
    baseline_store,
    files_under,
    run_cli,
    run_main,
    snapshot,
)

pytestmark = pytest.mark.slow  # the baseline trains, registers and deploys a real model

FUTURE = dt.date.today() + dt.timedelta(days=400)


@dataclass(frozen=True)
class Case:
    id: str
    module: str
    write: Callable[[Path], None]  # writes the bad input at the given path
    names: tuple[str, ...]  # besides the file: the column (or setting) and the expected form
    args: tuple[str, ...] = ()
    via: str = "main"  # "cli": a fresh interpreter, exactly as typed; "main": the same argv in process
    uri: str | None = None  # a --training-data that is not a file this test writes

    def __str__(self) -> str:
        return self.id


def frame(make: Callable[[], pl.DataFrame], change: Callable[[pl.DataFrame], pl.DataFrame] = lambda f: f):
    return lambda path: change(make()).write_parquet(path)


def raw(data: bytes):
    return lambda path: path.write_bytes(data)


def nothing(path: Path) -> None:
    """The file is simply not there."""


opp, traj, rev = frames.opportunities, frames.trajectory, frames.revenue
set_row = frames.set_row

CASES: list[Case] = [
    # --- the file itself
    Case("missing-file", "models.risk_scoring", nothing, ("no such file or folder",)),
    Case("empty-file", "models.win_probability", raw(b""), ("cannot read as Parquet",), via="cli"),
    Case("corrupt-parquet", "models.risk_scoring", raw(b"PAR1" + b"\x00not parquet\x00" * 20 + b"PAR1"), ("cannot read as Parquet",)),
    Case("no-rows", "models.anomaly", frame(frames.anomalies, lambda f: f.head(0)), ("(rows)", "at least 1 row")),
    # --- columns and types
    Case("missing-target-column", "models.risk_scoring", frame(opp, lambda f: f.drop("target_risk")), ("'target_risk'", "missing")),
    Case("missing-feature-column", "models.win_probability", frame(opp, lambda f: f.drop("stage_encoded")), ("'stage_encoded'", "missing")),
    Case("unknown-feature-column-asked-for", "models.risk_scoring", frame(opp), ("'no_such_column'", "missing"),
         args=("--features", "amount,probability,no_such_column")),
    Case("wrong-type-amount-as-text", "models.risk_scoring",
         frame(opp, lambda f: f.with_columns(pl.col("amount").round(2).cast(pl.String))), ("'amount'", "numeric column, got String")),
    Case("wrong-type-target-as-text", "models.win_probability",
         frame(opp, lambda f: f.with_columns(target_win=pl.when(pl.col("target_win") == 1).then(pl.lit("won")).otherwise(pl.lit("lost")))),
         ("'target_win'", "0/1 or boolean column, got String")),
    Case("wrong-type-snapshot-date-as-number", "models.risk_trajectory",
         frame(traj, lambda f: f.with_columns(snapshotDate=pl.int_range(pl.len()))), ("'snapshotDate'", "date column", "got Int64")),
    # --- dates
    Case("unparsable-revenue-date", "models.revenue_forecast",
         frame(rev, lambda f: set_row(f.with_columns(pl.col("date").cast(pl.String)), "date", 5, "2024-02-31")),
         ("'date'", "parseable dates", "2024-02-31")),
    Case("unparsable-snapshot-date", "models.risk_trajectory",
         frame(traj, lambda f: set_row(f.with_columns(pl.col("snapshotDate").cast(pl.String)), "snapshotDate", 7, "yesterday")),
         ("'snapshotDate'", "parseable dates", "yesterday")),
    Case("future-evaluation-date", "models.risk_scoring",
         frame(opp, lambda f: f.with_columns(pl.col("evaluation_date", "closed_date") + (FUTURE - frames.START))),
         ("'evaluation_date'", "not in the future")),
    Case("future-revenue-date", "models.revenue_forecast",
         frame(rev, lambda f: f.with_columns(pl.col("date") + (FUTURE - frames.START))), ("'date'", "not in the future")),
    Case("outcome-before-evaluation", "models.win_probability",
         frame(opp, lambda f: set_row(f, "closed_date", 3, dt.date(2023, 6, 1))),
         ("'evaluation_date, closed_date'", "evaluation_date < closed_date")),
    # --- targets
    Case("nan-target", "models.risk_scoring", frame(opp, lambda f: set_row(f, "target_risk", 11, float("nan"))),
         ("'target_risk'", "values in [0, 1]", "nan")),
    Case("out-of-range-risk-target", "models.risk_scoring", frame(opp, lambda f: set_row(f, "target_risk", 4, 1.5)),
         ("'target_risk'", "values in [0, 1]", "1.5")),
    Case("out-of-range-win-target", "models.win_probability", frame(opp, lambda f: set_row(f, "target_win", 4, 2)),
         ("'target_win'", "one of [0, 1]")),
    Case("out-of-range-trajectory-target", "models.risk_trajectory", frame(traj, lambda f: set_row(f, "target_risk", 9, -0.2)),
         ("'target_risk'", "values in [0, 1]", "-0.2")),
    Case("single-class", "models.win_probability", frame(opp, lambda f: f.with_columns(target_win=pl.lit(1, pl.Int32))),
         ("'target_win'", "wins and", "losses")),
    # --- values
    Case("negative-amount", "models.win_probability", frame(opp, lambda f: set_row(f, "amount", 8, -250.0)),
         ("'amount'", ">= 0", "-250.0")),
    Case("negative-revenue", "models.revenue_forecast", frame(rev, lambda f: set_row(f, "revenue", 8, -40.0)),
         ("'revenue'", ">= 0", "-40.0")),
    Case("constant-revenue-series", "models.revenue_forecast", frame(rev, lambda f: f.with_columns(revenue=pl.lit(500.0))),
         ("'revenue'", "a series that varies")),
    Case("revenue-series-with-a-gap", "models.revenue_forecast",
         frame(rev, lambda f: f.filter(~pl.col("date").is_between(dt.date(2024, 3, 1), dt.date(2024, 4, 14)))),
         ("'date'", "no gap longer than 10 periods", "2024-02-29 -> 2024-04-15")),
    # --- rows
    Case("duplicate-opportunity-keys", "models.risk_scoring", frame(opp, lambda f: pl.concat([f, f.slice(10, 2)])),
         ("'tenant_id, opportunity_id'", "unique (tenant_id, opportunity_id)")),
    Case("duplicate-snapshot-keys", "models.risk_trajectory", frame(traj, lambda f: pl.concat([f, f.slice(5, 1)])),
         ("'opportunityId, snapshotDate'", "unique (opportunityId, snapshotDate)")),
    Case("duplicate-revenue-dates", "models.revenue_forecast", frame(rev, lambda f: pl.concat([f, f.slice(3, 1)])),
         ("'date'", "unique (date)")),
    # too few rows: no top-up applies once a file reaches a trainer (models.prepare tops up; see test_bad_inputs_data.py)
    Case("too-few-rows-risk-scoring", "models.risk_scoring", frame(lambda: opp(12)), ("'target_risk'", "at least 20 rows")),
    Case("too-few-rows-revenue", "models.revenue_forecast", frame(lambda: rev(40)), ("'(rows)'", "at least 84 daily rows")),
    Case("too-few-rows-anomaly", "models.anomaly", frame(lambda: frames.anomalies(6)), ("'(rows)'", "at least 10 rows")),
    # --- where the file is
    Case("azureml-reference-on-local-compute", "models.win_probability", nothing, ("azureml:<name>:<version>", "compute=azureml"),
         uri="azureml:win_probability_training:3"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_training_input_is_rejected_and_changes_nothing(case: Case, baseline, tmp_path: Path) -> None:
    data = case.uri or str(tmp_path / f"{case.id}.parquet")
    if case.uri is None:
        case.write(Path(data))
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    before = snapshot()
    run = run_cli if case.via == "cli" else run_main
    result = run(case.module, ["--training-data", data, "--output", out, *case.args], cwd)

    assert_rejected(result, data, *case.names)
    assert files_under(out) == [] and not out.exists(), "the output folder must not be left behind"
    assert files_under(cwd) == [], "nothing may land in the working folder"
    assert_unchanged(before, baseline)


@pytest.mark.parametrize(
    "module, make",
    [
        ("models.risk_scoring", opp),
        ("models.win_probability", opp),
        ("models.risk_trajectory", traj),
        ("models.revenue_forecast", rev),
        ("models.anomaly", frames.anomalies),
    ],
    ids=["risk_scoring", "win_probability", "risk_trajectory", "revenue_forecast", "anomaly"],
)
def test_the_unbroken_inputs_pass_the_same_checks(module: str, make: Callable[[], pl.DataFrame]) -> None:
    """Each case breaks one thing in an input that is otherwise valid: the checks accept these."""
    import importlib

    from models import contracts, specs, trainer

    model_id = module.split(".")[1]
    args = importlib.import_module(module).build_parser().parse_args(["--training-data", "x", "--output", "y"])
    df = make()
    features = trainer.resolve_features(args.features, df, specs.get(model_id).default_features or ())
    contracts.validate_training_input(model_id, df, "x", features=features)
    if model_id == "revenue_forecast":
        from models import revenue_forecast as rf

        series = rf.normalise(df).get_column(rf.DS)
        rf.check_gaps(series, rf.detect_frequency(series))


@pytest.mark.parametrize(
    "module, make",
    [("models.anomaly", frames.anomalies), ("models.prepare", None)],
    ids=["trainer", "prepare"],
)
def test_output_that_is_a_file_is_named_and_left_alone(module: str, make, tmp_path: Path) -> None:
    """``--output`` naming an existing file: exit 2 naming it, and the file keeps its bytes."""
    output = tmp_path / "results.txt"
    output.write_text("someone's notes")
    if make is not None:
        data = tmp_path / "train.parquet"
        make().write_parquet(data)
        args = ["--training-data", data, "--output", output]
    else:
        args = ["--risk-evaluations", tmp_path / "lake" / "risk_evaluations", "--ml-outcomes", tmp_path / "lake" / "ml_outcomes",
                "--model-id", "anomaly", "--output", output]
    result = run_main(module, args, tmp_path)
    assert_rejected(result, str(output), "--output is a file", "expected a folder")
    assert output.read_text() == "someone's notes"
