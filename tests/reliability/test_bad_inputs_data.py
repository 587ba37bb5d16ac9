"""Bad lakes and bad arguments through the data command lines: ``python -m models.prepare`` (the
runbook's prepare_training_data.py) and ``python -m models.synthetic`` (its
generate_synthetic_opportunities.py), each a real process as a user runs it.

A rejected case exits 2 with one ``error:`` line naming the culprit file or folder, the column and
the expected form, writes nothing to its output and leaves the lake byte for byte as it was. Too
few rows is an error where no top-up applies and a synthetic top-up where the runbook allows one
(risk scoring below 3k rows, win probability below 5k).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from salesrisk import catalog
from tests.reliability.bad_input_support import assert_rejected, files_under, run_cli, run_main, tree_digest

EVALUATIONS, OUTCOMES, SNAPSHOTS, REVENUE = (
    catalog.RISK_EVALUATIONS,
    catalog.ML_OUTCOMES,
    catalog.RISK_SNAPSHOTS,
    catalog.REVENUE_DAILY,
)


@pytest.fixture(scope="module")
def lake_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Half a year of one tenant: about 200 closed deals, below both top-up thresholds."""
    from models import synthetic

    root = tmp_path_factory.mktemp("bad-lake") / "lake"
    synthetic.generate(str(root), n_opportunities=300, tenants=1, start=dt.date(2024, 1, 1), end=dt.date(2024, 6, 30), seed=5)
    return root


def parts(lake: Path, table: str) -> list[Path]:
    return sorted((lake / table).rglob("*.parquet"))


def rewrite(change: Callable[[pl.DataFrame], pl.DataFrame], table: str, first_only: bool = True):
    """Damage: rewrite the table's first part file (or all of them) through ``change``."""

    def damage(lake: Path) -> None:
        for path in parts(lake, table)[: 1 if first_only else None]:
            change(pl.read_parquet(path)).write_parquet(path)

    return damage


def overwrite_first(table: str, data: bytes):
    return lambda lake: parts(lake, table)[0].write_bytes(data)


def only_one_revenue_day(lake: Path) -> None:
    files = parts(lake, REVENUE)
    for path in files[1:]:
        path.unlink()
    pl.read_parquet(files[0]).head(1).write_parquet(files[0])


@dataclass(frozen=True)
class Case:
    id: str
    model_id: str
    damage: Callable[[Path], None]
    culprit: Callable[[Path], str]  # the file or folder the message must name
    names: tuple[str, ...]  # the column and the expected form
    args: tuple[str, ...] = ()
    via: str = "main"  # "cli": a fresh interpreter, exactly as typed; "main": the same argv in process

    def __str__(self) -> str:
        return self.id


def folder(table: str) -> Callable[[Path], str]:
    return lambda lake: str(lake / table)


def first_part(table: str) -> Callable[[Path], str]:
    return lambda lake: str(parts(lake, table)[0])


CASES: list[Case] = [
    Case("corrupt-parquet-in-the-lake", "risk_scoring", overwrite_first(EVALUATIONS, b"PAR1 garbage PAR1"), first_part(EVALUATIONS),
         ("cannot read",), via="cli"),
    Case("empty-file-in-the-lake", "win_probability", overwrite_first(OUTCOMES, b""), first_part(OUTCOMES), ("cannot read",)),
    Case("missing-column-in-every-part", "risk_trajectory", rewrite(lambda f: f.drop("risk_score"), SNAPSHOTS, first_only=False),
         folder(SNAPSHOTS), ("'risk_score'", "missing")),
    Case("wrong-type-date-as-text", "anomaly",
         rewrite(lambda f: f.with_columns(pl.col("evaluation_date").cast(pl.String)), EVALUATIONS, first_only=False),
         folder(EVALUATIONS), ("'evaluation_date'", "a date column, got String")),
    Case("negative-amounts", "risk_scoring", rewrite(lambda f: f.with_columns(amount=-pl.col("amount")), EVALUATIONS),
         folder(EVALUATIONS), ("'amount'", "finite values >= 0")),
    Case("duplicate-outcome", "win_probability", rewrite(lambda f: pl.concat([f, f.head(2)]), OUTCOMES),
         folder(OUTCOMES), ("'tenant_id, opportunity_id'", "unique (tenant_id, opportunity_id)"), via="cli"),
    Case("outcomes-before-every-evaluation", "risk_scoring",
         rewrite(lambda f: f.with_columns(pl.col("closed_date") - dt.timedelta(days=400)), OUTCOMES, first_only=False),
         folder(OUTCOMES), ("'closed_date'", "after an evaluation_date of the same (tenant_id, opportunity_id)")),
    Case("future-revenue-dates", "revenue_forecast",
         rewrite(lambda f: f.with_columns(pl.col("date") + dt.timedelta(days=3650)), REVENUE), folder(REVENUE),
         ("'date'", "not in the future")),
    Case("too-few-rows-revenue-no-top-up", "revenue_forecast", only_one_revenue_day, folder(REVENUE),
         ("'(rows)'", "at least 2 row(s)")),
    Case("azureml-reference-on-local-compute", "anomaly", lambda lake: None, lambda lake: "azureml:risk_evaluations:3",
         ("azureml:<name>:<version>", "compute=azureml"), ("--risk-evaluations", "azureml:risk_evaluations:3")),
    Case("unparsable-partition-date", "win_probability", lambda lake: None, lambda lake: "--partition-date",
         ("2024-13-01",), ("--partition-date", "2024-13-01")),
]


def prepare_args(lake: Path, model_id: str, output: Path, extra: tuple[str, ...]) -> list[str]:
    """The lake's tables, then ``extra`` (argparse keeps the last of a repeated option)."""
    return [
        "--risk-evaluations", str(lake / EVALUATIONS), "--ml-outcomes", str(lake / OUTCOMES),
        "--model-id", model_id, "--output", str(output), *extra,
    ]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_lake_is_rejected_and_nothing_is_written(case: Case, lake_template: Path, tmp_path: Path) -> None:
    lake = Path(shutil.copytree(lake_template, tmp_path / "lake"))
    case.damage(lake)
    before = tree_digest(lake)
    out = tmp_path / "out"
    run = run_cli if case.via == "cli" else run_main
    result = run("models.prepare", prepare_args(lake, case.model_id, out, case.args), tmp_path)

    assert_rejected(result, case.culprit(lake), *case.names)
    assert files_under(out) == [], "a rejected input must not leave a prepared file"
    assert tree_digest(lake) == before, "the lake must be left as it was"


@pytest.mark.parametrize("model_id", ["risk_scoring", "win_probability"])
def test_too_few_rows_are_topped_up_with_marked_synthetic_rows(model_id: str, lake_template: Path, tmp_path: Path) -> None:
    """The runbook: below 3k (risk scoring) / 5k (win probability) rows, add synthetic ones."""
    before = tree_digest(lake_template)
    minimum = catalog.MODELS[model_id].min_rows
    done = run_cli("models.prepare", prepare_args(lake_template, model_id, tmp_path / "out", ()), tmp_path)
    assert done.code == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    prepared = pl.read_parquet(result["output_uri"])
    real = prepared.filter(pl.col(catalog.IS_SYNTHETIC) == 0)
    synthetic = prepared.filter(pl.col(catalog.IS_SYNTHETIC) == 1)
    assert 0 < real.height == result["source_rows"] < minimum
    assert prepared.height == result["rows"] == minimum
    assert synthetic.height == result["synthetic_rows"] == minimum - real.height
    assert set(synthetic["tenant_id"]) == {"synthetic"} and set(real["tenant_id"]) == {"tenant-01"}
    assert f"added {synthetic.height} synthetic rows" in done.stderr
    assert tree_digest(lake_template) == before


def test_no_top_up_keeps_only_the_real_rows_and_says_so(lake_template: Path, tmp_path: Path) -> None:
    done = run_cli("models.prepare", prepare_args(lake_template, "risk_scoring", tmp_path / "out", ("--no-top-up",)), tmp_path)
    assert done.code == 0, done.stderr[-3000:]
    prepared = pl.read_parquet(tmp_path / "out" / "prepared.parquet")
    assert prepared.height < catalog.MODELS["risk_scoring"].min_rows
    assert catalog.IS_SYNTHETIC not in prepared.columns or prepared[catalog.IS_SYNTHETIC].sum() == 0
    assert json.loads(done.stdout)["synthetic_rows"] == 0
    assert "runbook minimum 3000" in done.stderr and "no top-up" in done.stderr


@pytest.mark.parametrize(
    "args, names",
    [
        (("--pct-closed", "1.5"), ("pct_closed must be in [0, 1]", "1.5")),
        (("--n-opportunities", "-5"), ("n_opportunities must be >= 0", "-5")),
        (("--end", "2024-02-30"), ("--end", "2024-02-30")),
        (("--tables", "risk_evaluations,opportunities"), ("unknown tables", "opportunities")),
    ],
    ids=["pct-closed-out-of-range", "negative-opportunity-count", "unparsable-end-date", "unknown-table"],
)
def test_bad_generator_arguments_are_named_and_nothing_is_written(args: tuple[str, ...], names: tuple[str, ...], tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    run = run_cli if args[0] == "--end" else run_main  # one real process; the rest in process
    result = run("models.synthetic", ["--output-path", lake, "--n-opportunities", "50", *args], tmp_path)
    assert_rejected(result, *names)
    assert files_under(lake) == []
