"""Data contracts: every lake table and every model's training input as a small set of rules.

A contract is data (a tuple of rules), evaluated with polars expressions in one pass, so it reads
like the runbook's column table and a new rule is one line, not another branch. The first broken
rule becomes one :class:`DataContractError` naming the file or URI, the column, what was
expected, how many rows break it and a few examples; the other broken rules are listed with it.
Callers validate before they write, so bad input never leaves a file behind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Union

import polars as pl

from salesrisk import catalog

MAX_EXAMPLES = 5

# --- dtype families -----------------------------------------------------------------------------


def _is_string(dtype: pl.DataType) -> bool:
    return dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum))


def _is_date(dtype: pl.DataType) -> bool:
    return dtype == pl.Date or isinstance(dtype, pl.Datetime)


FAMILIES: dict[str, tuple[str, Callable[[pl.DataType], bool]]] = {
    "numeric": ("a numeric column", lambda t: t.is_numeric() or t == pl.Boolean),
    "integer": ("an integer column", lambda t: t.is_integer()),
    "string": ("a string column", _is_string),
    "id": ("a string or integer id column", lambda t: _is_string(t) or t.is_integer()),
    "date": ("a date column", _is_date),
    "date_like": ("a date column or ISO date strings", lambda t: _is_date(t) or t == pl.String),
    "binary": ("a 0/1 or boolean column", lambda t: t.is_integer() or t.is_float() or t == pl.Boolean),
    "any": ("a column", lambda t: True),
    "feature": ("a numeric, boolean or string/categorical feature column", lambda t: t.is_numeric() or t == pl.Boolean or _is_string(t)),
}


def _value(column: str, schema: pl.Schema) -> pl.Expr:
    """The column as rules compare it: ISO date strings parsed, booleans as 0/1."""
    dtype = schema[column]
    if dtype == pl.String and column in _DATE_STRING_COLUMNS:
        return pl.col(column).str.to_date(strict=False)
    if dtype == pl.Boolean:
        return pl.col(column).cast(pl.Int8)
    if isinstance(dtype, pl.Datetime):
        return pl.col(column).dt.date()
    return pl.col(column)


# Columns that may hold dates as strings; parsed before comparing (see Parseable).
_DATE_STRING_COLUMNS = frozenset({"date", "ds", catalog.TRAJECTORY_TIME})

# --- rules ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """The column exists (unless optional) and its dtype belongs to ``family``."""

    name: str
    family: str
    required: bool = True
    expected: str | None = None  # overrides "<family> named <name>" when the column is missing


@dataclass(frozen=True)
class NotNull:
    column: str

    columns = property(lambda self: (self.column,))
    expected = property(lambda self: "no nulls")

    def bad(self, schema: pl.Schema) -> pl.Expr:
        return pl.col(self.column).is_null()


@dataclass(frozen=True)
class InRange:
    """Inclusive bounds; nulls are NotNull's business; NaN and infinities are out of range."""

    column: str
    low: float | None = None
    high: float | None = None

    columns = property(lambda self: (self.column,))

    @property
    def expected(self) -> str:
        if self.low is not None and self.high is not None:
            return f"values in [{self.low}, {self.high}]"
        if self.low is not None:
            return f"finite values >= {self.low}"
        if self.high is not None:
            return f"finite values <= {self.high}"
        return "finite numbers"

    def bad(self, schema: pl.Schema) -> pl.Expr:
        value = _value(self.column, schema)
        ok = pl.lit(True)
        if schema[self.column].is_float():
            ok = value.is_finite()
        if self.low is not None:
            ok = ok & (value >= self.low)
        if self.high is not None:
            ok = ok & (value <= self.high)
        return (~ok).fill_null(False)


@dataclass(frozen=True)
class OneOf:
    column: str
    values: tuple[Any, ...]

    columns = property(lambda self: (self.column,))
    expected = property(lambda self: f"one of {list(self.values)}")

    def bad(self, schema: pl.Schema) -> pl.Expr:
        # polars 2 compares like with like: numbers as Float64, everything else as strings
        if all(isinstance(v, (int, float)) for v in self.values):
            value = _value(self.column, schema).cast(pl.Float64, strict=False)
            allowed = pl.Series(self.values, dtype=pl.Float64)
        else:
            value = pl.col(self.column).cast(pl.String)
            allowed = pl.Series([str(v) for v in self.values], dtype=pl.String)
        return (~value.is_in(allowed.implode())).fill_null(False)


@dataclass(frozen=True)
class Parseable:
    """Date strings parse as dates."""

    column: str

    columns = property(lambda self: (self.column,))
    expected = property(lambda self: "parseable dates (YYYY-MM-DD)")

    def bad(self, schema: pl.Schema) -> pl.Expr:
        if schema[self.column] != pl.String:
            return pl.lit(False)
        return pl.col(self.column).is_not_null() & pl.col(self.column).str.to_date(strict=False).is_null()


@dataclass(frozen=True)
class UniqueKey:
    key: tuple[str, ...]

    columns = property(lambda self: self.key)
    expected = property(lambda self: f"unique ({', '.join(self.key)})")

    def bad(self, schema: pl.Schema) -> pl.Expr:
        if len(self.key) == 1:
            return _value(self.key[0], schema).is_duplicated()
        return pl.struct([_value(c, schema) for c in self.key]).is_duplicated()

    def screen(self, schema: pl.Schema) -> pl.Expr:
        """A cheaper test with no false negatives: equal keys have equal hashes. Where it finds
        duplicates (a true one or, rarely, a hash collision) the exact test decides."""
        if len(self.key) == 1 and not _is_string(schema[self.key[0]]):
            return self.bad(schema)
        return pl.struct([_value(c, schema) for c in self.key]).hash(seed=0).is_duplicated()


@dataclass(frozen=True)
class DateOrder:
    """``earlier`` comes before ``later`` (strictly, or on the same day when not strict)."""

    earlier: str
    later: str
    strict: bool = False

    columns = property(lambda self: (self.earlier, self.later))

    @property
    def expected(self) -> str:
        return f"{self.earlier} {'<' if self.strict else '<='} {self.later}"

    def bad(self, schema: pl.Schema) -> pl.Expr:
        a, b = _value(self.earlier, schema), _value(self.later, schema)
        return (a >= b if self.strict else a > b).fill_null(False)


def latest_date() -> date:
    """The last date a training row may carry: today (UTC) plus a day, so a lake written in
    another time zone is not "in the future". Read at check time, never at import."""
    return datetime.now(timezone.utc).date() + timedelta(days=1)


@dataclass(frozen=True)
class NotFuture:
    """Dates are not in the future: a row dated after today is a typo (2204 for 2024) or a leak."""

    column: str

    columns = property(lambda self: (self.column,))
    expected = property(lambda self: f"dates on or before {latest_date()} (not in the future)")

    def bad(self, schema: pl.Schema) -> pl.Expr:
        return (_value(self.column, schema) > pl.lit(latest_date())).fill_null(False)


@dataclass(frozen=True)
class Check:
    """Any other row condition, as a polars expression that is true on a good row."""

    column: str
    expected: str
    ok: Callable[[], pl.Expr]
    uses: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column, *self.uses)

    def bad(self, schema: pl.Schema) -> pl.Expr:
        return (~self.ok()).fill_null(False)


@dataclass(frozen=True)
class MinRows:
    n: int

    columns = property(lambda self: ())
    expected = property(lambda self: f"at least {self.n} row(s)")


RowRule = Union[NotNull, InRange, OneOf, Parseable, UniqueKey, DateOrder, NotFuture, Check]
Rule = Union[Column, RowRule, MinRows]


# --- the error ----------------------------------------------------------------------------------


@dataclass(eq=False)
class DataContractError(ValueError):
    """Input that breaks a contract; raised before anything is written."""

    source: str
    column: str
    expected: str
    n_bad: int
    examples: list[Any] = field(default_factory=list)
    also_broken: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        if not hasattr(self, "source"):  # built without __init__ (e.g. by a retry policy's probe)
            return "data contract violated"
        shown = ", ".join(repr(e) for e in self.examples[:MAX_EXAMPLES])
        text = (
            f"{self.source}: column {self.column!r}: expected {self.expected}; "
            f"{self.n_bad} row(s) break it" + (f", e.g. {shown}" if shown else "")
        )
        if self.also_broken:
            text += f" (also broken: {'; '.join(self.also_broken)})"
        return text


# --- evaluation ---------------------------------------------------------------------------------


def _height(data: pl.DataFrame | pl.LazyFrame) -> int:
    if isinstance(data, pl.DataFrame):
        return data.height
    return int(data.select(pl.len()).collect().item())


def _examples(data: pl.DataFrame | pl.LazyFrame, columns: Sequence[str], mask: pl.Expr | None = None) -> list[Any]:
    frame = data.lazy() if mask is None else data.lazy().filter(mask)
    rows = frame.select(columns).head(MAX_EXAMPLES).collect()
    if len(columns) == 1:
        return rows.get_column(columns[0]).to_list()
    return [dict(zip(columns, row)) for row in rows.iter_rows()]


def _check_schema(rules: Sequence[Rule], data: pl.DataFrame | pl.LazyFrame, source: str, schema: pl.Schema) -> None:
    for rule in rules:
        if not isinstance(rule, Column):
            continue
        label, accepts = FAMILIES[rule.family]
        if rule.name not in schema:
            if rule.required:
                present = ", ".join(schema.names()[:12]) + (" ..." if len(schema) > 12 else "")
                wanted = rule.expected or f"{label} named {rule.name!r}"
                raise DataContractError(source, rule.name, f"{wanted} (missing; present: {present})", _height(data))
            continue
        if not accepts(schema[rule.name]):
            raise DataContractError(
                source,
                rule.name,
                f"{label}, got {schema[rule.name]}",
                _height(data),
                _examples(data, [rule.name]),
            )


Contract = tuple[Sequence[Rule], str]  # rules, and the file or URI to name when they break


def check(rules: Sequence[Rule], data: pl.DataFrame | pl.LazyFrame, source: str) -> None:
    """Evaluate ``rules`` on ``data``: schema first, then every row rule in one pass.

    Row rules whose columns are absent (optional columns) are skipped. Raises the first broken
    rule as a DataContractError that lists the other broken ones.
    """
    check_all([(rules, source)], data)


def check_all(contracts: Sequence[Contract], data: pl.DataFrame | pl.LazyFrame) -> None:
    """Several contracts on one frame in one pass (e.g. a source table's rules for the columns a
    step carried over, then the step's output rules); a broken rule names its own source."""
    schema = data.collect_schema()
    for rules, source in contracts:
        _check_schema(rules, data, source, schema)
    row_rules: dict[RowRule, str] = {}
    min_rows: list[tuple[MinRows, str]] = []
    for rules, source in contracts:
        for rule in rules:
            if isinstance(rule, MinRows):
                min_rows.append((rule, source))
            elif not isinstance(rule, Column) and all(c in schema for c in rule.columns):
                row_rules.setdefault(rule, source)  # a rule in two contracts is checked once
    listed = list(row_rules)
    first = [(r.screen(schema) if isinstance(r, UniqueKey) else r.bad(schema)).sum() for r in listed]
    counts = list(_sums(data, [*first, pl.len()]))
    height = counts.pop()
    recount = [i for i, r in enumerate(listed) if isinstance(r, UniqueKey) and counts[i]]
    for i, n in zip(recount, _sums(data, [listed[i].bad(schema).sum() for i in recount])):
        counts[i] = n
    broken: list[tuple[RowRule | MinRows, str, int]] = [(r, src, height) for r, src in min_rows if height < r.n]
    broken += [(r, row_rules[r], int(n)) for r, n in zip(listed, counts) if n]
    if not broken:
        return
    rule, source, n_bad = broken[0]
    others = [f"{_rule_column(r)}: {r.expected} ({n} rows)" for r, _, n in broken[1:]]
    if isinstance(rule, MinRows):
        raise DataContractError(source, "(rows)", rule.expected, rule.n - height, [f"{height} row(s)"], others)
    shown = list(dict.fromkeys(rule.columns))
    raise DataContractError(
        source, _rule_column(rule), rule.expected, n_bad, _examples(data, shown, rule.bad(schema)), others
    )


def _sums(data: pl.DataFrame | pl.LazyFrame, exprs: Sequence[pl.Expr]) -> tuple:
    if not exprs:
        return ()
    named = [e.alias(f"c{i}") for i, e in enumerate(exprs)]
    return data.lazy().select(named).collect(engine="streaming").row(0)


def _rule_column(rule: RowRule | MinRows) -> str:
    if isinstance(rule, MinRows):
        return "(rows)"
    if isinstance(rule, UniqueKey):
        return ", ".join(rule.key)
    if isinstance(rule, DateOrder):
        return f"{rule.earlier}, {rule.later}"
    return rule.columns[0]


# --- lake tables (docs/data-lake-layout.md) -----------------------------------------------------

STAGES: tuple[str, ...] = (
    "prospecting",
    "qualification",
    "proposal",
    "negotiation",
    "commit",
    "closed_won",
    "closed_lost",
)
PARTITION_DATE = "partition_date"


def _columns(family: str, *names: str, required: bool = True) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    for name in names:
        rules.append(Column(name, family, required))
        rules.append(NotNull(name))
    return tuple(rules)


def _in_month(event: str) -> Check:
    return Check(
        PARTITION_DATE,
        f"the first day of {event}'s month",
        lambda: pl.col(PARTITION_DATE) == pl.col(event).dt.month_start(),
        uses=(event,),
    )


_KEYS = _columns("string", "tenant_id") + _columns("id", "opportunity_id")
_PARTITION = (Column(PARTITION_DATE, "date", required=False),)

TABLE_CONTRACTS: dict[str, tuple[Rule, ...]] = {
    catalog.RISK_EVALUATIONS: (
        *_KEYS,
        *_columns("date", "evaluation_date"),
        *_columns("string", "industry_id", "stage"),
        *_columns("integer", "stage_encoded", "industry_encoded"),
        *_columns(
            "numeric",
            "amount",
            "probability",
            "days_to_close",
            "days_since_last_activity",
            "activity_count_30d",
            "stakeholder_count",
            "risk_score",
        ),
        Column(catalog.ANOMALY_LABEL, "binary", required=False),
        *_PARTITION,
        OneOf("stage", STAGES),
        InRange("stage_encoded", 0, len(STAGES) - 1),
        InRange("industry_encoded", 0),
        InRange("amount", 0),
        InRange("probability", 0, 1),
        InRange("days_to_close", -3650, 3650),
        InRange("days_since_last_activity", 0),
        InRange("activity_count_30d", 0),
        InRange("stakeholder_count", 0),
        InRange("risk_score", 0, 1),
        OneOf(catalog.ANOMALY_LABEL, (0, 1)),
        UniqueKey(("tenant_id", "opportunity_id", "evaluation_date")),
        _in_month("evaluation_date"),
    ),
    catalog.ML_OUTCOMES: (
        *_KEYS,
        *_columns("string", "outcome"),
        *_columns("binary", catalog.WIN_TARGET),
        *_columns("date", "closed_date"),
        *_columns("numeric", "close_amount"),
        *_PARTITION,
        OneOf("outcome", ("won", "lost")),
        OneOf(catalog.WIN_TARGET, (0, 1)),
        Check(
            catalog.WIN_TARGET,
            "1 where outcome is 'won', else 0",
            lambda: pl.col(catalog.WIN_TARGET).cast(pl.Int8) == (pl.col("outcome") == "won").cast(pl.Int8),
            uses=("outcome",),
        ),
        InRange("close_amount", 0),
        UniqueKey(("tenant_id", "opportunity_id")),
        _in_month("closed_date"),
    ),
    catalog.RISK_SNAPSHOTS: (
        *_KEYS,
        *_columns("date", "snapshot_date"),
        *_columns("numeric", "risk_score", "activity_count_30d", "days_since_last_activity"),
        *_PARTITION,
        InRange("risk_score", 0, 1),
        InRange("activity_count_30d", 0),
        InRange("days_since_last_activity", 0),
        UniqueKey(("tenant_id", "opportunity_id", "snapshot_date")),
        _in_month("snapshot_date"),
    ),
    catalog.REVENUE_DAILY: (
        *_columns("string", "tenant_id"),
        *_columns("date", "date"),
        *_columns("numeric", "revenue", "pipeline_value"),
        *_PARTITION,
        InRange("revenue", 0),
        InRange("pipeline_value", 0),
        UniqueKey(("tenant_id", "date")),
        _in_month("date"),
    ),
    # written by deployments/inference_log.py: endpoint=<key>/date=<YYYY-MM-DD>/ folders
    catalog.ML_INFERENCE_LOGS: (
        *_columns("string", "request_id", "deployment", "model_name", "inputs", "outputs"),
        *_columns("date", "logged_at"),
        *_columns("id", "model_version"),
        *_columns("integer", "rows"),
        InRange("rows", 0),
        UniqueKey(("request_id",)),
    ),
}


def validate_table(table: str, data: pl.DataFrame | pl.LazyFrame, source: str) -> None:
    """Check a lake table (a frame or a lazy scan of it) against its contract."""
    if table not in TABLE_CONTRACTS:
        raise ValueError(f"no contract for table {table!r}; known: {sorted(TABLE_CONTRACTS)}")
    check(TABLE_CONTRACTS[table], data, source)


def validate_schema(table: str, data: pl.DataFrame | pl.LazyFrame, source: str, columns: Sequence[str]) -> None:
    """Only the presence and dtype of ``columns`` of ``table``: free on a lazy scan."""
    wanted = set(columns)
    rules = [r for r in TABLE_CONTRACTS[table] if isinstance(r, Column) and r.name in wanted]
    rules += [Column(c, "any") for c in columns if c not in {r.name for r in rules}]
    _check_schema(rules, data, source, data.collect_schema())


def column_rules(table: str, columns: Sequence[str]) -> list[Rule]:
    """The rules of ``table`` that touch only ``columns`` (e.g. the ones a step carried over)."""
    wanted = set(columns)
    return [
        r
        for r in TABLE_CONTRACTS[table]
        if (r.name if isinstance(r, Column) else None) in wanted
        or (not isinstance(r, (Column, MinRows)) and set(r.columns) <= wanted)
    ]


# --- training inputs (runbook section 3) --------------------------------------------------------

# Present in prepared inputs; when present they must hold, so a leak cannot reach a trainer.
_POINT_IN_TIME: tuple[Rule, ...] = (
    Column("tenant_id", "string", required=False),
    Column("opportunity_id", "id", required=False),
    Column("evaluation_date", "date", required=False),
    Column("closed_date", "date", required=False),
    Column(catalog.INDUSTRY_ID, "string", required=False),
    Column(catalog.IS_SYNTHETIC, "binary", required=False),
    DateOrder("evaluation_date", "closed_date", strict=True),
    NotFuture("evaluation_date"),
    NotFuture("closed_date"),
    UniqueKey(("tenant_id", "opportunity_id")),
    OneOf(catalog.IS_SYNTHETIC, (0, 1)),
)


# The runbook's own feature columns are numbers: a string there is a broken export, not a category.
_NUMERIC_FEATURES = frozenset({*catalog.OPPORTUNITY_FEATURES, *catalog.TRAJECTORY_FEATURES})


def _feature_rules(features: Sequence[str]) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    for name in features:
        rules += [Column(name, "numeric" if name in _NUMERIC_FEATURES else "feature"), NotNull(name)]
    return tuple(rules)


def _opportunity_ranges(features: Sequence[str]) -> list[Rule]:
    """The lake's ranges (amount >= 0, probability in [0, 1], ...) for the features that carry them."""
    return [r for r in TABLE_CONTRACTS[catalog.RISK_EVALUATIONS] if isinstance(r, InRange) and r.column in features]


def _first_present(options: Sequence[Sequence[str]], names: Sequence[str]) -> Sequence[str] | None:
    return next((option for option in options if all(c in names for c in option)), None)


def _trajectory_rules(names: Sequence[str]) -> tuple[Rule, ...]:
    rules: list[Rule] = [
        *_columns("id", catalog.TRAJECTORY_ID),
        *_columns("date_like", catalog.TRAJECTORY_TIME),
        Parseable(catalog.TRAJECTORY_TIME),
        NotFuture(catalog.TRAJECTORY_TIME),
        UniqueKey((catalog.TRAJECTORY_ID, catalog.TRAJECTORY_TIME)),
        *_columns("numeric", *catalog.TRAJECTORY_FEATURES),
        InRange("risk_score", 0, 1),
        InRange("activity_count_30d", 0),
        InRange("days_since_last_activity", 0),
    ]
    # Targets: +30/60/90-day risk, or one target_risk. Null = not observed yet (see data-lake-layout).
    targets = _first_present([catalog.TRAJECTORY_TARGETS, (catalog.RISK_TARGET,)], names)
    if targets is None:
        missing = next(t for t in catalog.TRAJECTORY_TARGETS if t not in names)
        wanted = "numeric target columns target_risk_30/60/90 (or target_risk)"
        return (*rules, Column(missing, "numeric", expected=wanted))
    for target in targets:
        rules += [Column(target, "numeric"), InRange(target, 0, 1)]
    return tuple(rules)


def _revenue_rules(names: Sequence[str]) -> tuple[Rule, ...]:
    pair = _first_present(catalog.REVENUE_COLUMN_PAIRS, names)
    if pair is None:
        options = " or ".join(f"({d}, {v})" for d, v in catalog.REVENUE_COLUMN_PAIRS)
        date_col = "ds" if "ds" in names else "date"
        value_col = next(v for d, v in catalog.REVENUE_COLUMN_PAIRS if d == date_col)
        missing = date_col if date_col not in names else value_col
        return (Column(missing, "numeric", expected=f"a column pair {options}"),)
    date_col, value_col = pair
    return (
        *_columns("date_like", date_col),
        Parseable(date_col),
        NotFuture(date_col),
        UniqueKey((date_col,)),
        *_columns("numeric", value_col),
        # revenue and pipeline value are amounts (>= 0, as in the lake); a generic y may be any number
        InRange(value_col, 0 if value_col in ("revenue", "pipeline_value") else None),
        Check(
            value_col,
            "a series that varies (not one constant value)",
            lambda: (pl.col(value_col).n_unique() > 1) | pl.col(value_col).is_null(),
        ),
        MinRows(2),
    )


def risk_score_rules(names: Sequence[str], features: Sequence[str]) -> tuple[Rule, ...]:
    del names
    return (*_columns("numeric", catalog.RISK_TARGET), InRange(catalog.RISK_TARGET, 0, 1), *_POINT_IN_TIME,
            *_opportunity_ranges(features))


def win_rules(names: Sequence[str], features: Sequence[str]) -> tuple[Rule, ...]:
    del names
    rules: list[Rule] = []
    for column in (catalog.WIN_TARGET, catalog.IS_CLOSED):
        rules += [*_columns("binary", column), OneOf(column, (0, 1))]
    return (*rules, *_POINT_IN_TIME, *_opportunity_ranges(features))


def trajectory_rules(names: Sequence[str], features: Sequence[str]) -> tuple[Rule, ...]:
    del features
    return _trajectory_rules(names)


def revenue_rules(names: Sequence[str], features: Sequence[str]) -> tuple[Rule, ...]:
    del features
    return _revenue_rules(names)


def anomaly_rules(names: Sequence[str], features: Sequence[str]) -> tuple[Rule, ...]:
    del names
    rules: list[Rule] = []
    if not features:
        rules.append(Column("(features)", "numeric", expected="at least one numeric feature column"))
    return (*rules, Column(catalog.ANOMALY_LABEL, "binary", required=False), OneOf(catalog.ANOMALY_LABEL, (0, 1)))


def auto_features(names: Sequence[str]) -> list[str]:
    """Every column but identifiers, dates and targets (``--features auto``)."""
    return [n for n in names if n not in catalog.NON_FEATURE_COLUMNS and not n.endswith("_id")]


def training_rules(model_id: str, names: Sequence[str], features: Sequence[str] | None = None) -> tuple[Rule, ...]:
    """The contract of ``model_id``'s training input, given the frame's column names: the shared
    rules (rows, features) plus the model's own, from its spec binding."""
    from models import specs

    binding = specs.get(model_id)
    if features is None:
        features = auto_features(names) if binding.default_features is None else binding.default_features
    return (MinRows(1), *_feature_rules(features), *binding.contract(names, features))


def validate_training_input(
    model_id: str, df: pl.DataFrame, source: str, features: Sequence[str] | None = None
) -> None:
    """Check one model's training input before a trainer fits or preparation writes it.

    ``features`` are the columns the trainer will use (default: the runbook's for the model).
    """
    check(training_rules(model_id, df.columns, features), df, source)
