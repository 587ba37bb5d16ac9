"""From a request body to the model's answer and back, with the model's signature as the contract.

Built once per loaded model version so the request path only indexes prepared structures: the
column order, each column's converter, and whether the whole input is one numeric block. For every
model whose signature names its columns with plain types (numbers, integers, booleans, strings,
dates) the rows are checked and converted here, column by column, with errors that name the
column, the row and the expected type; the model's own predict is then called directly, with
MLflow's own parameter validation. MLflow's per-call schema enforcement would re-check what was
just checked and costs more than the model itself on a single row (and several milliseconds on a
thousand). Numeric-only inputs are built straight from the parsed rows as one float block. Models
with no signature, tensor signatures or nested types (arrays, objects, maps, bytes) go through
``PyFuncModel.predict`` and MLflow's own enforcement.
"""

from __future__ import annotations

import datetime as dt
import inspect
import operator
import threading
import time
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

try:  # orjson is a dependency of Prefect; the standard library is the fallback
    import orjson

    def loads(data: bytes) -> Any:
        return orjson.loads(data)

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY, default=str)

    DECODE_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError,)
except ImportError:  # pragma: no cover - exercised only without orjson
    import json

    def loads(data: bytes) -> Any:
        return json.loads(data)

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)).encode()

    DECODE_ERRORS = (ValueError,)

REQUEST_SHAPES = (
    'expected {"input_data": {"columns": [...], "data": [[...], ...]}} '
    'or a list of records [{"column": value, ...}, ...]'
)
_NUMERIC_BLOCK_TYPES = {"double": np.float64, "float": np.float32}
_ANY = "AnyType"
SLOW_SECONDS = 0.005  # models slower than this are predicted in a worker thread
IDENTIFIER_COLUMNS = ("tenant_id", "opportunity_id", "industry_id")  # logged with the inputs when sent


class PayloadError(Exception):
    """The request cannot be scored as sent; ``status`` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse(body: bytes) -> tuple[list[str] | None, list, dict[str, Any] | None]:
    """Decode the body into ``(columns, rows, params)`` (split shape) or ``(None, records, params)``.

    ``params`` is the optional top-level ``"params"`` object of MLflow and Azure ML requests,
    handed to the model's predict (e.g. ``{"top_factors": false}`` for win_probability).
    """
    try:
        payload = loads(body)
    except DECODE_ERRORS as error:
        raise PayloadError(400, f"body is not valid JSON ({error}); {REQUEST_SHAPES}") from None
    params = None
    if isinstance(payload, dict):
        params = payload.get("params")
        if params is not None and not isinstance(params, dict):
            raise PayloadError(400, 'params must be an object of parameter names to values, e.g. {"top_factors": false}')
        inner = payload.get("input_data")
        if isinstance(inner, dict):
            columns, data = inner.get("columns"), inner.get("data")
            if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
                raise PayloadError(400, f"input_data.columns must be a list of column names; {REQUEST_SHAPES}")
            if len(set(columns)) != len(columns):
                repeated = sorted({c for c in columns if columns.count(c) > 1})
                raise PayloadError(400, f"input_data.columns names {repeated} more than once")
            if not isinstance(data, list):  # each row is checked where it is read
                raise PayloadError(400, f"input_data.data must be a list of rows (lists); {REQUEST_SHAPES}")
            return columns, data, params or None
        if isinstance(inner, list):
            payload = inner  # {"input_data": [records]} is accepted too
        else:
            raise PayloadError(400, f"no input_data in the body; {REQUEST_SHAPES}")
    if isinstance(payload, list) and all(isinstance(r, dict) for r in payload):
        return None, payload, params or None
    raise PayloadError(400, f"unrecognised body; {REQUEST_SHAPES}")


class Scorer:
    """Turns parsed rows into the frame a model expects, predicts, and encodes the answer as records."""

    def __init__(self, model: Any, path: str | None = None) -> None:
        self.model = model
        self.path = path
        self._description: dict[str, Any] | None = None
        self.columns: tuple[str, ...] | None = None
        self.required: frozenset[str] = frozenset()
        self.types: dict[str, str] = {}
        self.block_dtype: type | None = None
        self._predict: Callable[..., Any] = model.predict
        self.direct = False  # True: rows are checked here and the model's predict is called without MLflow's enforcement
        self._params_schema: Any = None
        schema = model.metadata.get_input_schema() if model.metadata else None
        if schema is not None and not schema.is_tensor_spec() and schema.has_input_names():
            self.columns = tuple(schema.input_names())
            self.required = frozenset(schema.required_input_names())
            # DataType members have a name ("double"); Array/Object/Map/AnyType do not
            self.types = {spec.name: getattr(spec.type, "name", None) or type(spec.type).__name__ for spec in schema.inputs}
            # Our trainers sign numeric features ``Any`` (JSON turns 5.0 into 5) and name them in
            # the model's metadata: those columns are numbers, checked and blocked like ``double``.
            for name in numeric_inputs(model):
                if self.types.get(name) == _ANY:
                    self.types[name] = "double"
            kinds = {self.types[c] for c in self.columns}
            if len(kinds) == 1 and next(iter(kinds)) in _NUMERIC_BLOCK_TYPES:
                self.block_dtype = _NUMERIC_BLOCK_TYPES[next(iter(kinds))]
            if kinds <= _CONVERTED_TYPES:
                direct = direct_predict(model)
                if direct is not None:
                    self._predict, self.direct = direct, True
                    self._params_schema = model.metadata.get_params_schema()
        self.output_names = _output_names(model)
        self._positions = {name: i for i, name in enumerate(self.columns or ())}
        self._index = pd.Index(self.columns) if self.columns is not None else None  # built once: 4x faster frames
        self._identifiers = tuple(c for c in IDENTIFIER_COLUMNS if c not in self._positions)
        self._lock = threading.Lock()
        self._recent_seconds = 0.0  # moving average of predict time

    # --- description -----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What a caller needs to build a request: the input columns with their types, the
        predict parameters, the output columns (with the units of ``top_factors`` when the model
        states them) and a request built from the model's own input example."""
        if self._description is None:
            self._description = describe_model(self.model, self.path, self.types, self.required)
        return self._description

    # --- input ---------------------------------------------------------------------------
    def frame(self, columns: list[str] | None, rows: list) -> pd.DataFrame:
        if not rows:
            raise PayloadError(400, "no rows to score")
        if self.columns is None:
            return pd.DataFrame(rows, columns=columns) if columns is not None else pd.DataFrame.from_records(rows)
        if columns is not None:
            self._check_columns(columns)
        if self.block_dtype is not None:
            return self._numeric_frame(columns, rows)
        if self.direct:
            return self._typed_frame(columns, rows)
        return self._pandas_frame(columns, rows)

    def identifiers(self, columns: list[str] | None, rows: list) -> dict[str, list] | None:
        """Identifier columns the client sent but the model does not take (``opportunity_id``...),
        kept for the inference log so monitoring can join scores to outcomes. Call after
        :meth:`frame` accepted the rows."""
        if self.columns is None:
            return None  # the frame already holds every column sent
        wanted = self._identifiers
        if columns is not None:
            found = [(c, columns.index(c)) for c in wanted if c in columns]
            return {c: [row[i] for row in rows] for c, i in found} or None
        present = [c for c in wanted if c in rows[0]]
        return {c: [r.get(c) for r in rows] for c in present} or None

    def _check_columns(self, given: Sequence[str]) -> None:
        missing = [c for c in self.columns if c in self.required and c not in given]  # type: ignore[union-attr]
        if missing:
            unexpected = [c for c in given if c not in self._positions]
            raise PayloadError(
                422,
                f"missing column(s) {missing}"
                + (f"; unexpected column(s) {unexpected}" if unexpected else "")
                + f"; the model expects {list(self.columns)}",  # type: ignore[arg-type]
            )

    def _numeric_frame(self, columns: list[str] | None, rows: list) -> pd.DataFrame:
        names = self.columns
        assert names is not None
        try:
            if columns is None:
                rows = _record_rows(rows, names, self._check_columns)
            elif columns != list(names):
                index = [columns.index(c) if c in columns else None for c in names]
                if None not in index and len(index) > 1 and _uniform_lists(rows, len(columns)):
                    # the model's columns picked out of each row in C, a tuple per row
                    rows = list(map(operator.itemgetter(*index), rows))
                else:
                    rows = [[None if i is None else row[i] for i in index] for row in rows]
        except (IndexError, TypeError):
            raise PayloadError(400, f"every row of data must hold {len(columns or names)} values, one per column") from None
        width = len(names)
        try:
            # one pass over the parsed values, straight into the float block (2x np.array(rows));
            # None becomes NaN here as well
            if not (_uniform_lists(rows, width) or _uniform_lists(rows, width, tuple)):
                raise ValueError
            block = np.fromiter(chain.from_iterable(rows), dtype=self.block_dtype, count=len(rows) * width)
            block = block.reshape(len(rows), width)
        except (TypeError, ValueError):
            block = self._coerce_slowly(rows)
        if block.ndim != 2 or block.shape[1] != len(names):
            raise PayloadError(400, f"every row of data must hold {len(columns or names)} values, one per column")
        # Column-major, as pandas keeps its blocks: models reading columns (CatBoost builds its
        # pool feature by feature) were 1.6x faster on 1,000 rows than with the row-major parse.
        return pd.DataFrame(np.asfortranarray(block), columns=self._index, copy=False)

    def _coerce_slowly(self, rows: list) -> np.ndarray:
        """Nulls become NaN; anything else that is not a number is named by column and row."""
        block = np.empty((len(rows), len(self.columns)), dtype=self.block_dtype)  # type: ignore[arg-type]
        for i, row in enumerate(rows):
            if not isinstance(row, (list, tuple)) or len(row) != len(self.columns):  # type: ignore[arg-type]
                raise PayloadError(400, f"row {i} must hold {len(self.columns)} values, one per column")  # type: ignore[arg-type]
            for j, value in enumerate(row):
                if value is None:
                    block[i, j] = np.nan
                    continue
                try:
                    block[i, j] = value
                except (TypeError, ValueError):
                    raise PayloadError(
                        422, f"column {self.columns[j]!r} row {i}: expected a number, got {value!r}"  # type: ignore[index]
                    ) from None
        return block

    def _typed_frame(self, columns: list[str] | None, rows: list) -> pd.DataFrame:
        """Each column converted by its signature type; a value that is not of that type is a 422
        naming the column, the row and the expected type. Gives the frame MLflow's enforcement
        would give for the same rows, so the model's own predict can take it as is."""
        names = self.columns
        assert names is not None
        width = len(columns or names)
        try:
            if columns is None:
                rows = _record_rows(rows, names, self._check_columns)
            else:
                if not all(type(row) is list and len(row) == width for row in rows):
                    raise ValueError
                if columns != list(names):
                    index = [columns.index(c) if c in columns else None for c in names]
                    rows = [[None if i is None else row[i] for i in index] for row in rows]
        except (IndexError, TypeError, ValueError):
            raise PayloadError(400, f"every row of data must hold {width} values, one per column") from None
        values = list(zip(*rows))
        data = {name: _CONVERTERS[self.types[name]](name, list(column)) for name, column in zip(names, values)}
        return pd.DataFrame(data, columns=self._index, copy=False)

    def _pandas_frame(self, columns: list[str] | None, rows: list) -> pd.DataFrame:
        """A frame for ``PyFuncModel.predict``, whose enforcement checks it against the signature."""
        try:
            frame = pd.DataFrame(rows, columns=columns) if columns is not None else pd.DataFrame.from_records(rows)
        except (TypeError, ValueError) as error:
            raise PayloadError(400, f"rows do not match the columns ({error})") from None
        self._check_columns(list(frame.columns))
        frame = frame[[c for c in self.columns if c in frame.columns]].copy()  # type: ignore[union-attr]
        for name in frame.columns:
            kind = self.types[name]
            try:
                if kind == "datetime":
                    frame[name] = pd.to_datetime(frame[name])
                elif kind in ("double", "float", "long", "integer") and frame[name].dtype == object:
                    frame[name] = pd.to_numeric(frame[name])
            except (TypeError, ValueError) as error:
                raise PayloadError(422, f"column {name!r}: expected {kind} values ({error})") from None
        return frame

    # --- predict -------------------------------------------------------------------------
    @property
    def slow(self) -> bool:
        """Whether recent predictions took long enough to be worth running off the event loop."""
        return self._recent_seconds > SLOW_SECONDS

    def predict(self, frame: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """One prediction at a time per model: not every flavour's predict is thread-safe."""
        from mlflow.exceptions import MlflowException

        if self.direct:
            if self._params_schema is None:
                # what MLflow gives such a model, without its warning log line on every request
                params = {} if params else params
            else:
                from mlflow.models.utils import _enforce_params_schema

                try:  # MLflow's own: defaults filled in, types checked, undeclared names dropped
                    params = _enforce_params_schema(_booleans_from_text(params, self._params_schema), self._params_schema)
                except MlflowException as error:
                    raise PayloadError(422, f"params do not match the model's signature: {error.message}") from None
        with self._lock:
            started = time.perf_counter()
            try:
                if self.direct:
                    return self._predict(frame, params)
                return self._predict(frame) if params is None else self._predict(frame, params=params)
            except MlflowException as error:  # schema enforcement: the input is wrong, not the server
                raise PayloadError(422, f"input does not match the model's signature: {error.message}") from None
            finally:
                self._recent_seconds = 0.8 * self._recent_seconds + 0.2 * (time.perf_counter() - started)

    # --- output --------------------------------------------------------------------------
    def encode(self, output: Any) -> bytes:
        """The pyfunc output as a JSON array of records (one object per output row).

        A single numeric column (a score per row) is spliced from orjson's array encoding; larger
        numeric tables are written by polars; small ones, dates and objects take the plain Python
        route, which is faster below a few dozen rows.
        """
        table = self._table(output)
        if table is None:
            return dumps(output if isinstance(output, list) else [{self.output_names[0]: output}])
        names, arrays = table
        spliced = _one_score(names, arrays)
        if spliced is not None:  # one score per row: the common case, spliced in C
            return _spliced_list(*spliced)
        numeric = all(a.dtype.kind in "fiub" for a in arrays)
        if numeric and len(arrays[0]) >= POLARS_ROWS:
            return pl.DataFrame(dict(zip(names, arrays))).write_json().encode()
        return dumps(_records(names, arrays))

    def encode_tagged(self, output: Any, extra: dict[str, str]) -> tuple[bytes, list[bytes] | None]:
        """:meth:`encode`'s answer, and for one score per row also each record with ``extra``'s
        fields appended, as bytes (what ``dumps`` gives for the record decoded and extended), so a
        routing endpoint can name the model of each row without decoding the answer again.
        ``None`` for other outputs."""
        table = self._table(output)
        spliced = _one_score(*table) if table is not None else None
        if spliced is None:
            return self.encode(output), None
        key, values = spliced
        content = _spliced_list(key, values)
        suffix = b"".join(b"," + dumps(k) + b":" + dumps(v) for k, v in extra.items()) + b"}"
        return content, [key + v + suffix for v in values]

    def _table(self, output: Any) -> tuple[list[str], list[np.ndarray]] | None:
        """Output as named columns, or ``None`` when it is not tabular (passed through as JSON)."""
        if isinstance(output, pd.DataFrame):
            return [str(c) for c in output.columns], _frame_arrays(output)
        if isinstance(output, pd.Series):
            return [str(output.name) if output.name is not None else self.output_names[0]], [_array(output)]
        if isinstance(output, dict):
            return self._table(pd.DataFrame(output))
        if isinstance(output, list) and output and not all(isinstance(r, dict) for r in output):
            output = np.asarray(output)
        if isinstance(output, np.ndarray) and output.ndim in (1, 2):
            if output.ndim == 1:
                return [self.output_names[0]], [output]
            width = output.shape[1]
            names = self.output_names if len(self.output_names) == width else [str(i) for i in range(width)]
            return names, [output[:, i] for i in range(width)]
        return None


POLARS_ROWS = 32


def _one_score(names: list[str], arrays: list[np.ndarray]) -> tuple[bytes, list[bytes]] | None:
    """For a single numeric output column: the opening of each record (``{"name":``) and each
    row's value as JSON; else ``None``."""
    if len(arrays) != 1 or arrays[0].dtype.kind not in "fiub":
        return None
    values = dumps(np.ascontiguousarray(arrays[0]))[1:-1]
    return b"{" + dumps(names[0]) + b":", values.split(b",") if values else []


def _spliced_list(key: bytes, values: list[bytes]) -> bytes:
    """The JSON list of one-field records from :func:`_one_score`'s parts."""
    return b"[" + key + (b"}," + key).join(values) + b"}]" if values else b"[]"


def direct_predict(model: Any) -> Callable[[pd.DataFrame, dict[str, Any] | None], Any] | None:
    """The loaded pyfunc's own predict, called as ``PyFuncModel.predict`` calls it after its
    schema enforcement, or ``None`` when that call cannot be reproduced (then keep
    ``PyFuncModel.predict``). For a ``PythonModel`` taking a DataFrame the wrapper's per-call
    signature inspection is done once, here."""
    meta = model.metadata
    impl = getattr(model, "_model_impl", None)
    predict = getattr(impl, "predict", None)
    if meta is None or not callable(predict):
        return None
    try:
        if meta._is_signature_from_type_hint() or meta._is_type_hint_from_example():
            return None  # PyFuncModel converts the input to the type hint or the example's format
    except AttributeError:
        return None
    python_model = getattr(impl, "python_model", None)
    hints = getattr(python_model, "predict_type_hints", None)
    if python_model is not None and hasattr(impl, "context") and getattr(hints, "input", None) in (None, pd.DataFrame, Any):
        # _PythonModelPyfuncWrapper.predict with its input conversion (none for a DataFrame) and
        # its inspection of python_model.predict resolved now
        fn = python_model.predict
        parameters = inspect.signature(fn).parameters
        takes_params = "params" in parameters
        if "context" in parameters or len([n for n in parameters if n not in ("self", "params")]) == 2:
            context = impl.context
            if takes_params:
                return lambda frame, params: fn(context, frame, params=params)
            return lambda frame, params: fn(context, frame)
        if takes_params:
            return lambda frame, params: fn(frame, params=params)
        return lambda frame, params: fn(frame)
    parameter = inspect.signature(predict).parameters.get("params")
    if parameter is not None and parameter.kind != inspect.Parameter.VAR_KEYWORD:
        return lambda frame, params: predict(frame, params=params)
    return lambda frame, params: predict(frame)


def _booleans_from_text(params: dict[str, Any] | None, schema: Any) -> dict[str, Any] | None:
    """``"false"`` / ``"true"`` (any case) and 0 / 1 for a boolean parameter, as a form or query
    string sends them, made booleans before MLflow's validation (which accepts JSON booleans only)."""
    if not params:
        return params
    out = params
    for spec in schema.params:
        value = params.get(spec.name)
        if value is None or getattr(spec.dtype, "name", None) != "boolean" or type(value) is bool:
            continue
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            out = {**out, spec.name: value.strip().lower() == "true"}
        elif type(value) is int and value in (0, 1):
            out = {**out, spec.name: bool(value)}
    return out


def _bad(name: str, values: list, ok: Callable[[Any], bool], expected: str) -> PayloadError:
    """The 422 for the first value of column ``name`` that is not ``ok``."""
    for i, value in enumerate(values):
        if not ok(value):
            shown = "null" if value is None else repr(value)
            return PayloadError(422, f"column {name!r} row {i}: expected {expected}, got {shown}")
    return PayloadError(422, f"column {name!r}: expected {expected}")


def _is_number(value: Any) -> bool:
    if value is None:
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, (list, dict))


def _numbers(dtype: type) -> Callable[[str, list], np.ndarray]:
    def convert(name: str, values: list) -> np.ndarray:
        try:  # None becomes NaN
            return np.fromiter(values, dtype=dtype, count=len(values))
        except (TypeError, ValueError, OverflowError):
            raise _bad(name, values, _is_number, "a number") from None

    return convert


def _integers(dtype: type, expected: str) -> Callable[[str, list], np.ndarray]:
    limits = np.iinfo(dtype)

    def convert(name: str, values: list) -> np.ndarray:
        if all(type(v) is int for v in values):
            if limits.min <= min(values) and max(values) <= limits.max:  # numpy 1.x would wrap around
                return np.array(values, dtype=dtype)
            raise _bad(name, values, lambda v: limits.min <= v <= limits.max, expected)
        raise _bad(name, values, lambda v: type(v) is int, expected + " (integer columns cannot hold nulls)")

    return convert


def _booleans(name: str, values: list) -> np.ndarray:
    if all(type(v) is bool for v in values):
        return np.array(values, dtype=bool)
    if all(v is None or type(v) is bool for v in values):
        return np.array(values, dtype=object)  # as pandas keeps booleans with nulls, unconverted by MLflow
    raise _bad(name, values, lambda v: v is None or type(v) is bool, "true, false or null")


def _strings(name: str, values: list) -> np.ndarray:
    if all(v is None or type(v) is str for v in values):
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    raise _bad(name, values, lambda v: v is None or type(v) is str, "a string")


_DATES = "an ISO 8601 date or time without a time zone, e.g. '2025-01-31' or '2025-01-31T09:30:00'"


def _date_like(value: Any) -> bool:
    """Text (from JSON), or a date or time object (from an in-process caller's frame)."""
    return value is None or isinstance(value, (str, dt.date, np.datetime64))


def _date_ok(value: Any) -> bool:
    return _date_like(value) and _dates("", [value]) is not None


def _dates(name: str, values: list) -> pd.Series | None:
    """datetime64[ns], converted as MLflow converts a column of date strings (``astype``)."""
    if not all(_date_like(v) for v in values):
        raise _bad(name, values, _date_like, _DATES)
    try:
        return pd.Series(values, dtype=object).astype("datetime64[ns]")
    except (TypeError, ValueError, OverflowError):
        if not name:
            return None
        raise _bad(name, values, _date_ok, _DATES) from None


def _anything(name: str, values: list) -> pd.Series:
    """An ``Any`` column the model does not name as numeric: as pandas infers it, unchecked (MLflow
    does not check it either)."""
    return pd.Series(values)


_CONVERTERS: dict[str, Callable[[str, list], Any]] = {
    "double": _numbers(np.float64),
    "float": _numbers(np.float32),
    "long": _integers(np.int64, "an integer"),
    "integer": _integers(np.int32, "an integer between -2147483648 and 2147483647"),
    "boolean": _booleans,
    "string": _strings,
    "datetime": _dates,
    _ANY: _anything,
}
_CONVERTED_TYPES = frozenset(_CONVERTERS)


def numeric_inputs(model: Any) -> frozenset[str]:
    """Input columns the model's metadata names as numeric: ``numeric_inputs`` (written by
    ``models.pyfunc_support.save_pyfunc``), else the trainers' ``features`` (a list of numeric
    columns, or ``{"columns", "categorical"}``)."""
    meta = getattr(model.metadata, "metadata", None) if model.metadata else None
    if not isinstance(meta, dict):
        return frozenset()
    listed = meta.get("numeric_inputs")
    if isinstance(listed, list):
        return frozenset(str(c) for c in listed)
    features = meta.get("features")
    if isinstance(features, list):
        return frozenset(str(c) for c in features)
    if isinstance(features, dict) and isinstance(features.get("columns"), list):
        categorical = set(features.get("categorical") or ())
        return frozenset(str(c) for c in features["columns"] if c not in categorical)
    return frozenset()


def _output_names(model: Any) -> list[str]:
    schema = model.metadata.get_output_schema() if model.metadata else None
    if schema is not None and not schema.is_tensor_spec() and schema.has_input_names():
        return [str(n) for n in schema.input_names()]
    return ["prediction"]


def _array(column: pd.Series) -> np.ndarray:
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return column.astype(object).to_numpy()
    return column.to_numpy()


def _frame_arrays(frame: pd.DataFrame) -> list[np.ndarray]:
    """Each column's values. A model's answer is a frame built for this request, and the first
    ``frame[name]`` of each column builds and caches a Series (about 40 us, more than encoding a
    one-row answer): columns held as numpy arrays are read from the frame's blocks instead."""
    read = getattr(frame, "_get_column_array", None)  # pandas' own accessor, no Series built
    out = []
    for i in range(frame.shape[1]):
        values = read(i) if read is not None else None
        out.append(values if isinstance(values, np.ndarray) else _array(frame.iloc[:, i]))
    return out


def _records(names: list[str], arrays: list[np.ndarray]) -> list[dict]:
    values = [_plain(a) for a in arrays]
    return [dict(zip(names, row)) for row in zip(*values)]


def _plain(array: np.ndarray) -> list:
    """One output column as plain Python values; dates become ISO strings, NaN becomes null."""
    if array.dtype.kind == "M":
        return [None if np.isnat(v) else pd.Timestamp(v).isoformat() for v in array]
    if array.dtype == object:
        return [v.isoformat() if hasattr(v, "isoformat") else v for v in array.tolist()]
    return array.tolist()


def _uniform_lists(rows: list, width: int, kind: type = list) -> bool:
    """Whether every row is a ``kind`` (list, or tuple) of ``width`` values: two passes in C."""
    return not rows or (set(map(type, rows)) == {kind} and set(map(len, rows)) == {width})


def column_values(columns: list[str] | None, rows: list, name: str) -> list | None:
    """The values of column ``name`` in parsed rows, or ``None`` when the request has no such column."""
    if columns is not None:
        if name not in columns:
            return None
        i = columns.index(name)
        if _uniform_lists(rows, len(columns)):
            return list(map(operator.itemgetter(i), rows))
        return [row[i] if isinstance(row, list) and len(row) > i else None for row in rows]
    if not any(isinstance(r, dict) and name in r for r in rows):
        return None
    return [r.get(name) if isinstance(r, dict) else None for r in rows]


def _record_rows(records: list, names: Sequence[str], check: Callable[[Sequence[str]], None]) -> list[list]:
    """Records as rows in ``names`` order; a record lacking a required column is a 422 naming it."""
    try:
        return [[r[c] for c in names] for r in records]
    except KeyError:
        for record in records:
            if any(c not in record for c in names):
                check(list(record))  # raises when a required column is missing
        return [[r.get(c) for c in names] for r in records]  # only optional columns are absent


def describe_model(model: Any, path: str | None, types: dict[str, str], required: frozenset[str]) -> dict[str, Any]:
    """:meth:`Scorer.describe` for ``model`` loaded from ``path``."""
    meta = model.metadata
    schema = meta.get_input_schema() if meta else None
    inputs: list[dict[str, Any]] = []
    if schema is not None and not schema.is_tensor_spec() and schema.has_input_names():
        for spec in schema.inputs:
            kind = types.get(spec.name) or str(spec.type)
            inputs.append({"name": spec.name, "type": "number" if kind in ("double", "float") else kind,
                           "required": spec.name in required})
    outputs = _output_names(model) if meta and meta.get_output_schema() is not None else []
    extra = getattr(meta, "metadata", None) or {}
    out: dict[str, Any] = {"inputs": inputs, "outputs": outputs}
    params = meta.get_params_schema() if meta else None
    if params is not None:
        out["params"] = [{"name": p.name, "type": getattr(p.dtype, "name", str(p.dtype)), "default": p.default} for p in params.params]
    if "top_factors" in outputs:
        out["top_factors"] = {
            "shape": 'per row, a JSON array of the largest contributions, largest first: [{"feature": name, '
            '"value": the row\'s input value, "contribution": signed number}]; send "params": {"top_factors": false} '
            "for the prediction alone",
            "units": extra.get("top_factors_units", "the model's output units (not stated by this model)"),
        }
    example = _example_request(meta, path)
    if example is not None:
        out["example"] = example
    return out


def _example_request(meta: Any, path: str | None) -> dict[str, Any] | None:
    """The model's saved input example as a request body (its first row), or ``None``."""
    if meta is None or path is None:
        return None
    try:
        frame = meta.load_input_example(path)
    except Exception:  # a model saved without an example, or one MLflow cannot read back
        return None
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        return None
    row = frame.head(1)
    records = loads(row.to_json(orient="split", date_format="iso", index=False))
    return {"input_data": {"columns": records["columns"], "data": records["data"]}}
