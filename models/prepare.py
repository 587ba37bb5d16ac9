"""Training-data preparation: one model's input from the lake, point-in-time correct.

``python -m models.prepare --risk-evaluations URI --ml-outcomes URI [--risk-snapshots URI]
[--revenue-daily URI] --model-id ID --output URI [--tenant-id T] [--partition-date YYYY-MM-DD]
[--no-top-up]`` (the runbook's ``prepare_training_data.py``) writes ``URI/prepared.parquet``.

Why it is built this way: reads are lazy and prune hive partitions by folder name before any
file is opened, so a tenant or as-of filter costs only what it selects; the join keeps, per
closed opportunity, the latest evaluation strictly before its close date, so no feature is from
on or after the outcome it predicts; the result is checked against the model's contract before
the one atomic write, so a bad input never leaves a file. Rules in docs/data-lake-layout.md.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import posixpath
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta

import polars as pl

from models import contracts
from models import specs
from salesrisk import catalog, storage

log = logging.getLogger("salesrisk.prepare")

PREPARED_FILE = "prepared.parquet"
HIVE_SCHEMA = {"tenant_id": pl.String, "partition_date": pl.Date}
KEYS = ("tenant_id", "opportunity_id")
# the date each table's rows are known on: the as-of filter and the partition_date folders use it
EVENT_DATE = {
    catalog.RISK_EVALUATIONS: "evaluation_date",
    catalog.ML_OUTCOMES: "closed_date",
    catalog.RISK_SNAPSHOTS: "snapshot_date",
    catalog.REVENUE_DAILY: "date",
}
SYNTHETIC_TENANT = "synthetic"
DEFAULT_TOP_UP_END = date(2025, 12, 31)  # the generator's default end: a fixed date keeps top-ups repeatable
_OUTCOME_ROW = "_outcome_row"
_ROW = "_evaluation_row"
_DAYS_1900_TO_1970 = 25_567
CLOSED_STAGE_CODE = 5  # stage_encoded >= 5: closed_won / closed_lost, written on the close day


@dataclass(frozen=True)
class PrepareResult:
    """Where the prepared file is and how its rows break down (rows = source + synthetic)."""

    output_uri: str
    rows: int
    synthetic_rows: int
    source_rows: int


@dataclass(frozen=True)
class Scope:
    """Which slice of the lake to read: one tenant, and only what was known on ``as_of``."""

    tenant_id: str | None = None
    as_of: date | None = None

    def partitions(self) -> storage.PartitionFilter:
        where: dict = {}
        if self.tenant_id is not None:
            where["tenant_id"] = lambda value: value == self.tenant_id
        if self.as_of is not None:
            where["partition_date"] = lambda value: _partition_start(value) <= self.as_of
        return where

    def rows(self, table: str) -> list[pl.Expr]:
        filters = []
        if self.tenant_id is not None:
            filters.append(pl.col("tenant_id") == self.tenant_id)
        if self.as_of is not None:
            filters.append(pl.col(EVENT_DATE[table]) <= self.as_of)
        return filters


def _partition_start(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return date.min  # unparseable folder name: keep it, the row filter still applies


def read_table(
    table: str, uri: str, scope: Scope, columns: Sequence[str], optional: Sequence[str] = ()
) -> pl.LazyFrame:
    """A lazy scan of ``columns`` (and ``optional`` ones if present) of one lake table, pruned to
    ``scope`` and schema-checked; nothing outside the scope's partitions is opened."""
    frame = storage.scan_dataset(uri, where=scope.partitions(), hive_schema=HIVE_SCHEMA)
    try:
        present = frame.collect_schema()  # reads the footers of the files in scope
    except pl.exceptions.PolarsError as error:
        raise storage.StorageError(f"{_unreadable_file([uri], scope) or uri}: cannot read: {error}") from error
    columns = list(dict.fromkeys([*columns, *(c for c in optional if c in present)]))
    contracts.validate_schema(table, frame, uri, columns)
    frame = frame.select(columns)
    for condition in scope.rows(table):
        frame = frame.filter(condition)
    return frame


# --- the model inputs (pure functions of lazy frames; the top-up reuses them) ------------------

EVALUATION_COLUMNS = (*KEYS, "evaluation_date", catalog.INDUSTRY_ID, *catalog.OPPORTUNITY_FEATURES)
OUTCOME_COLUMNS = (*KEYS, "closed_date", catalog.WIN_TARGET)


def last_before_close(evaluations: pl.LazyFrame, outcomes: pl.LazyFrame) -> pl.LazyFrame:
    """Per closed opportunity, its latest evaluation strictly before the close date.

    Two passes, so the expensive part touches only the key columns. First, keys and dates
    only: join on (tenant_id, opportunity_id), keep dates before the close, and per outcome take
    the maximum of (date, row number) packed into one integer - a streaming group-by on an int,
    no sort. Second, the picked rows' other columns, found by row number. (The one-pass version,
    a join of every column then a window, took about 1.5x the CPU and twice the memory:
    benchmarks/README.md.) The first pass runs here; the returned plan is the second.
    """
    keys = list(KEYS)
    numbered = evaluations.with_row_index(_ROW)
    closes = outcomes.with_row_index(_OUTCOME_ROW)
    days = pl.col("evaluation_date").cast(pl.Int64) + _DAYS_1900_TO_1970  # >= 0 from 1900 on
    packed = days * (1 << 32) + pl.col(_ROW).cast(pl.Int64)
    picks = (
        numbered.select(*keys, "evaluation_date", _ROW)
        .join(closes.select(*keys, "closed_date", _OUTCOME_ROW), on=keys, how="inner")
        .filter(pl.col("evaluation_date") < pl.col("closed_date"))
        .group_by(_OUTCOME_ROW)
        .agg(packed.max().alias(_ROW))
        .select(_OUTCOME_ROW, (pl.col(_ROW) % (1 << 32)).cast(pl.UInt32).alias(_ROW))
        .collect(engine="streaming")
    )
    # the keys come back with the outcome (they are equal), so pass two never decodes them
    rest = [c for c in evaluations.collect_schema().names() if c not in KEYS]
    outcome_only = [c for c in outcomes.collect_schema().names() if c not in KEYS and c not in rest]
    return (
        numbered.select(_ROW, *rest)
        .filter(pl.col(_ROW).is_in(picks.get_column(_ROW).implode()))
        .join(picks.lazy(), on=_ROW, how="inner")
        .join(closes.select(_OUTCOME_ROW, *keys, *outcome_only), on=_OUTCOME_ROW, how="inner")
        .sort(_ROW)  # an integer sort: stable files, and rows in the lake's order
        .select(*keys, *rest, *outcome_only)
    )


def opportunity_frame(model_id: str, evaluations: pl.LazyFrame, outcomes: pl.LazyFrame) -> pl.LazyFrame:
    """risk_scoring / win_probability rows: keys, dates, industry, features, target."""
    rows = last_before_close(evaluations.select(EVALUATION_COLUMNS), outcomes.select(OUTCOME_COLUMNS))
    head = [*KEYS, catalog.INDUSTRY_ID, "evaluation_date", "closed_date", *catalog.OPPORTUNITY_FEATURES]
    if model_id == "win_probability":
        return rows.select(
            *head,
            pl.col(catalog.WIN_TARGET).cast(pl.Int32),
            pl.lit(1, dtype=pl.Int32).alias(catalog.IS_CLOSED),
        )
    return rows.select(*head, (1.0 - pl.col(catalog.WIN_TARGET).cast(pl.Float64)).alias(catalog.RISK_TARGET))


SNAPSHOT_COLUMNS = (*KEYS, "snapshot_date", *catalog.TRAJECTORY_FEATURES)


def trajectory_frame(snapshots: pl.LazyFrame, outcomes: pl.LazyFrame) -> pl.LazyFrame:
    """Per-opportunity daily rows with the risk observed +30/60/90 days later.

    A target is the snapshot's risk_score on that day; once the deal has closed by then it is the
    settled risk (0 won, 1 lost); otherwise (not yet observed, or a stalled deal's history ended)
    it is null, and the trainer must skip it as a target.
    """
    keys = list(KEYS)
    frame = snapshots.join(outcomes.select(*keys, "closed_date", catalog.WIN_TARGET), on=keys, how="left")
    for horizon, target in zip(catalog.TRAJECTORY_HORIZONS, catalog.TRAJECTORY_TARGETS):
        future = snapshots.select(
            *keys, (pl.col("snapshot_date") - timedelta(days=horizon)).alias("snapshot_date"), pl.col("risk_score").alias(target)
        )
        settled = pl.when(pl.col("closed_date") <= pl.col("snapshot_date") + timedelta(days=horizon)).then(
            1.0 - pl.col(catalog.WIN_TARGET).cast(pl.Float64)
        )
        frame = frame.join(future, on=[*keys, "snapshot_date"], how="left").with_columns(
            pl.coalesce(pl.col(target), settled).alias(target)
        )
    return frame.select(
        pl.col("opportunity_id").alias(catalog.TRAJECTORY_ID),
        pl.col("snapshot_date").alias(catalog.TRAJECTORY_TIME),
        *catalog.TRAJECTORY_FEATURES,
        *catalog.TRAJECTORY_TARGETS,
        "tenant_id",
    ).sort(catalog.TRAJECTORY_ID, catalog.TRAJECTORY_TIME)


def revenue_frame(revenue: pl.LazyFrame) -> pl.LazyFrame:
    """Daily (date, revenue), summed over the tenants in scope."""
    return revenue.group_by("date").agg(pl.col("revenue").sum()).sort("date")


ANOMALY_EXTRA = ("risk_score",)


def anomaly_frame(evaluations: pl.LazyFrame, labelled: bool) -> pl.LazyFrame:
    """Open-pipeline evaluations (not the close-day ones) with their features and label."""
    label = [pl.col(catalog.ANOMALY_LABEL).cast(pl.Int32)] if labelled else []
    return (
        evaluations.filter(pl.col("stage_encoded") < CLOSED_STAGE_CODE)
        .select(
            *KEYS, catalog.INDUSTRY_ID, "evaluation_date", *catalog.OPPORTUNITY_FEATURES, *ANOMALY_EXTRA, *label
        )
        .sort("evaluation_date", *KEYS)
    )


# --- top-up -----------------------------------------------------------------------------------


def synthetic_rows(model_id: str, needed: int, *, seed: int, end: date) -> pl.DataFrame:
    """``needed`` generated rows for ``model_id``, made by the same join as the real ones."""
    from models import synthetic

    n_opportunities = math.ceil(needed / 0.8) + 50
    while True:
        spec = synthetic.make_spec(
            n_opportunities=n_opportunities,
            pct_closed=0.9,
            tenants=1,
            end=end,
            seed=seed,
            tables=(catalog.RISK_EVALUATIONS, catalog.ML_OUTCOMES),
        )
        tables = synthetic.build_tables(spec, spec.start, spec.end)
        rows = opportunity_frame(
            model_id,
            tables[catalog.RISK_EVALUATIONS].lazy().select(EVALUATION_COLUMNS),
            tables[catalog.ML_OUTCOMES].lazy().select(OUTCOME_COLUMNS),
        ).collect()
        if rows.height >= needed:
            break
        n_opportunities *= 2
    return (
        rows.sort("closed_date", "opportunity_id")
        .head(needed)
        .with_columns(
            pl.lit(SYNTHETIC_TENANT).alias("tenant_id"),
            ("syn-" + pl.col("opportunity_id")).alias("opportunity_id"),
        )
    )


def add_synthetic_rows(model_id: str, real: pl.DataFrame, *, seed: int, end: date) -> pl.DataFrame:
    """Real rows plus synthetic ones up to the runbook's minimum, marked ``is_synthetic``."""
    needed = catalog.MODELS[model_id].min_rows - real.height
    real = real.with_columns(pl.lit(0, dtype=pl.Int32).alias(catalog.IS_SYNTHETIC))
    if needed <= 0:
        return real
    extra = synthetic_rows(model_id, needed, seed=seed, end=end).with_columns(
        pl.lit(1, dtype=pl.Int32).alias(catalog.IS_SYNTHETIC)
    )
    log.info(
        "%s: %d real rows < %d: added %d synthetic rows (is_synthetic = 1)",
        model_id,
        real.height,
        catalog.MODELS[model_id].min_rows,
        needed,
    )
    return pl.concat([real, extra.select([pl.col(c).cast(t) for c, t in real.schema.items()])])


# --- the step ---------------------------------------------------------------------------------


def write_prepared(
    model_id: str,
    frame: pl.DataFrame,
    uri: str,
    *,
    source: str | None = None,
    sources: Sequence[contracts.Contract] = (),
) -> str:
    """Check ``frame`` against the model's contract, then write it atomically; else write nothing.

    ``sources`` are source-table rules for the columns the frame carried over, checked in the
    same pass and first, so a bad source value is reported against its source file.
    """
    contracts.check_all([*sources, (contracts.training_rules(model_id, frame.columns), source or uri)], frame)
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", compression_level=1)  # a third of the default's CPU
    return storage.write_bytes(buffer.getvalue(), uri)


def sibling(uri: str, table: str) -> str:
    """The folder of ``table`` next to another table's folder (``lake/risk_evaluations`` -> ``lake/<table>``)."""
    trimmed = uri.rstrip("/")
    parent = posixpath.dirname(trimmed) if storage.is_remote(uri) else os.path.dirname(trimmed)
    return storage.join(parent, table)


def _collect(plan: Callable[[], pl.LazyFrame], inputs: Sequence[str], scope: Scope) -> pl.DataFrame:
    """Build and run the plan; if a file cannot be read, name that file (polars does not)."""
    try:
        return plan().collect(engine="streaming")
    except pl.exceptions.PolarsError as error:
        culprit = _unreadable_file(inputs, scope)
        raise storage.StorageError(f"{culprit or ', '.join(inputs)}: cannot read: {error}") from error


def _unreadable_file(inputs: Sequence[str], scope: Scope) -> str | None:
    for uri in inputs:
        for file in storage.list_dataset(uri, scope.partitions()):
            try:
                pl.scan_parquet(file, storage_options=storage.polars_storage_options(file)).collect_schema()
            except pl.exceptions.PolarsError:
                return file
    return None


def _require_joined_rows(frame: pl.DataFrame, outcomes: pl.LazyFrame, ml_outcomes: str, risk_evaluations: str) -> None:
    """Outcomes that all close before any evaluation of their deal (swapped or shifted dates)
    would leave only synthetic rows after the top-up: name the outcomes instead."""
    if frame.height:
        return
    sample = outcomes.select(*KEYS, "closed_date").head(contracts.MAX_EXAMPLES).collect()
    if sample.height == 0:  # no outcome in scope at all: the top-up is what the runbook asks for
        return
    raise contracts.DataContractError(
        ml_outcomes,
        "closed_date",
        f"closed_date after an evaluation_date of the same (tenant_id, opportunity_id) in {risk_evaluations}; "
        "no outcome has an evaluation before it closed",
        int(outcomes.select(pl.len()).collect().item()),
        sample.to_dicts(),
    )


# --- each model's preparation (bound to its spec in models/specs.py) ----------------------------


def prepare_opportunities(inp: specs.PrepareInputs) -> specs.Prepared:
    """Evaluations joined to their outcomes, topped up to the spec's minimum rows."""
    risk_evaluations, ml_outcomes = inp.uris[catalog.RISK_EVALUATIONS], inp.uris[catalog.ML_OUTCOMES]
    inputs = [risk_evaluations, ml_outcomes]
    evaluations = read_table(catalog.RISK_EVALUATIONS, risk_evaluations, inp.scope, EVALUATION_COLUMNS)
    outcomes = read_table(catalog.ML_OUTCOMES, ml_outcomes, inp.scope, OUTCOME_COLUMNS)
    frame = _collect(lambda: opportunity_frame(inp.model_id, evaluations, outcomes), inputs, inp.scope)
    _require_joined_rows(frame, outcomes, ml_outcomes, risk_evaluations)
    checks = [  # outcomes first: the keys come from them, so a duplicated outcome is named there
        (contracts.column_rules(catalog.ML_OUTCOMES, [*KEYS, "closed_date"]), ml_outcomes),
        (contracts.column_rules(catalog.RISK_EVALUATIONS, EVALUATION_COLUMNS), risk_evaluations),
    ]
    contracts.check_all(checks, frame)  # before the top-up: a bad source fails before rows are generated
    real_rows = frame.height
    min_rows = catalog.MODELS[inp.model_id].min_rows
    if inp.top_up:
        end = inp.partition_date or frame.get_column("closed_date").max() or DEFAULT_TOP_UP_END
        frame = add_synthetic_rows(inp.model_id, frame, seed=inp.seed, end=end)
    elif real_rows < min_rows:
        log.warning("%s: only %d rows (runbook minimum %d); no top-up", inp.model_id, real_rows, min_rows)
    return specs.Prepared(frame, inputs, [], real_rows)


def prepare_trajectories(inp: specs.PrepareInputs) -> specs.Prepared:
    risk_snapshots, ml_outcomes = inp.uris[catalog.RISK_SNAPSHOTS], inp.uris[catalog.ML_OUTCOMES]
    inputs = [risk_snapshots, ml_outcomes]
    snapshots = read_table(catalog.RISK_SNAPSHOTS, risk_snapshots, inp.scope, SNAPSHOT_COLUMNS)
    outcomes = read_table(catalog.ML_OUTCOMES, ml_outcomes, inp.scope, OUTCOME_COLUMNS)
    frame = _collect(lambda: trajectory_frame(snapshots, outcomes), inputs, inp.scope)
    checks = [(contracts.column_rules(catalog.RISK_SNAPSHOTS, catalog.TRAJECTORY_FEATURES), risk_snapshots)]
    return specs.Prepared(frame, inputs, checks)


def prepare_revenue(inp: specs.PrepareInputs) -> specs.Prepared:
    revenue_daily = inp.uris[catalog.REVENUE_DAILY]
    revenue = read_table(catalog.REVENUE_DAILY, revenue_daily, inp.scope, ("tenant_id", "date", "revenue"))
    frame = _collect(lambda: revenue_frame(revenue), [revenue_daily], inp.scope)
    return specs.Prepared(frame, [revenue_daily])  # sums of checked rows; the output contract covers the rest


def prepare_anomaly(inp: specs.PrepareInputs) -> specs.Prepared:
    risk_evaluations = inp.uris[catalog.RISK_EVALUATIONS]
    columns = (*EVALUATION_COLUMNS, "stage_encoded", *ANOMALY_EXTRA)
    evaluations = read_table(
        catalog.RISK_EVALUATIONS, risk_evaluations, inp.scope, columns, optional=(catalog.ANOMALY_LABEL,)
    )
    labelled = catalog.ANOMALY_LABEL in evaluations.collect_schema()
    frame = _collect(lambda: anomaly_frame(evaluations, labelled), [risk_evaluations], inp.scope)
    checks = [(contracts.column_rules(catalog.RISK_EVALUATIONS, frame.columns), risk_evaluations)]
    return specs.Prepared(frame, [risk_evaluations], checks)


def table_uris(model_id: str, given: dict[str, str | None]) -> dict[str, str]:
    """Each lake table's URI: as given, else the folder beside the first table given.

    Raises ValueError naming the flags when none of the tables the model reads was given.
    """
    anchor = next((uri for uri in given.values() if uri), None)
    if anchor is None:
        flags = " and ".join(f"--{t.replace('_', '-')}" for t in catalog.MODELS[model_id].sources)
        raise ValueError(f"prepare {model_id}: it reads {flags}; give them (a table not given is read from "
                         "the folder beside the first one given)")
    return {table: uri or sibling(anchor, table) for table, uri in given.items()}


def prepare(
    model_id: str,
    *,
    output: str,
    risk_evaluations: str | None = None,
    ml_outcomes: str | None = None,
    risk_snapshots: str | None = None,
    revenue_daily: str | None = None,
    tenant_id: str | None = None,
    partition_date: date | None = None,
    top_up: bool = True,
    seed: int = 0,
) -> PrepareResult:
    """Write ``output/prepared.parquet`` for ``model_id`` from the lake, or raise and write nothing.

    ``partition_date`` means "as of": only partitions and rows dated on or before it, and only
    outcomes closed by then. Below the runbook's minimum rows (risk_scoring 3k, win_probability
    5k) synthetic rows are added unless ``top_up`` is False.
    """
    binding = specs.get(model_id)
    for uri in (risk_evaluations, ml_outcomes, risk_snapshots, revenue_daily):
        if uri:
            storage.reject_asset_reference(uri)
    storage.require_output_folder(output)
    scope = Scope(tenant_id, partition_date)
    uris = table_uris(model_id, {
        catalog.RISK_EVALUATIONS: risk_evaluations,
        catalog.ML_OUTCOMES: ml_outcomes,
        catalog.RISK_SNAPSHOTS: risk_snapshots,
        catalog.REVENUE_DAILY: revenue_daily,
    })
    out_uri = storage.join(output, PREPARED_FILE)
    prepared = binding.prepare(specs.PrepareInputs(model_id, uris, scope, top_up, seed, partition_date))
    frame, inputs, checks = prepared.frame, prepared.inputs, prepared.checks
    real_rows = frame.height if prepared.real_rows is None else prepared.real_rows

    write_prepared(model_id, frame, out_uri, source=f"{out_uri} (prepared from {', '.join(inputs)})", sources=checks)
    result = PrepareResult(out_uri, frame.height, frame.height - real_rows, real_rows)
    log.info("prepared %s for %s: %s", out_uri, model_id, result)
    return result


# --- command line -------------------------------------------------------------------------------


TABLE_FLAGS = (catalog.RISK_EVALUATIONS, catalog.ML_OUTCOMES, catalog.RISK_SNAPSHOTS, catalog.REVENUE_DAILY)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models.prepare", description=__doc__.split("\n\n")[0])
    for table in TABLE_FLAGS:
        parser.add_argument(f"--{table.replace('_', '-')}", default=None,
                            help=f"{table} folder or URI (default: beside the first table given); "
                            "give the tables the model reads")
    parser.add_argument("--model-id", required=True, help="a model id of salesrisk.catalog.MODELS")
    parser.add_argument("--output", required=True, help="folder (or URI) that receives prepared.parquet")
    parser.add_argument("--tenant-id", default=None)
    parser.add_argument("--partition-date", type=date.fromisoformat, default=None, help="as of YYYY-MM-DD")
    parser.add_argument("--no-top-up", dest="top_up", action="store_false", help="never add synthetic rows")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic top-up rows")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.model_id not in catalog.MODELS:
        parser.error(f"argument --model-id: invalid choice: {args.model_id!r} (choose from {', '.join(sorted(catalog.MODELS))})")
    if not any(getattr(args, table) for table in TABLE_FLAGS):
        needed = " and ".join(f"--{t.replace('_', '-')}" for t in catalog.MODELS[args.model_id].sources)
        parser.error(f"{args.model_id} reads {needed}: give them (a table not given is read from the folder "
                     "beside the first one given)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = prepare(
            args.model_id,
            risk_evaluations=args.risk_evaluations,
            ml_outcomes=args.ml_outcomes,
            output=args.output,
            risk_snapshots=args.risk_snapshots,
            revenue_daily=args.revenue_daily,
            tenant_id=args.tenant_id,
            partition_date=args.partition_date,
            top_up=args.top_up,
            seed=args.seed,
        )
    except (contracts.DataContractError, storage.StorageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(result), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
