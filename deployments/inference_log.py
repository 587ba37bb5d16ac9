"""Every scored batch, written to the lake's ``ml_inference_logs`` table for the monitoring flows.

The request path only appends a reference to a list; a background thread hands what piled up to a
writer process every ``flush_rows`` scored rows or ``flush_seconds`` seconds, and once more at
shutdown. The writer process encodes and writes the Parquet at the lowest CPU priority, so logging
costs a request almost nothing: encoding inputs as JSON takes about 0.6-1 ms of CPU per 1,000
logged rows, and in the server's own process (its threads, polars' thread pool) that work competed
with the requests for the cores (see :func:`_lower_priority` for the figures).

Layout: ``<lake>/ml_inference_logs/endpoint=<key>/date=<YYYY-MM-DD>/part-<time>-<id>.parquet``,
one row per scored batch (request) with columns ``request_id``, ``logged_at`` (UTC),
``deployment``, ``model_name``, ``model_version``, ``rows``, ``inputs`` and ``outputs``. Inputs
and outputs are JSON arrays of records (one object per row), so the table has one schema whatever
the model; inputs hold the model's columns plus ``tenant_id`` / ``opportunity_id`` when the client
sent them. To get one row per scored row::

    pl.scan_parquet(".../ml_inference_logs/endpoint=win_probability/**/*.parquet")
      .with_columns(pl.col("inputs").str.json_decode(pl.List(pl.Struct({...}))))
      .explode("inputs")
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import uuid
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import polars as pl

from salesrisk import catalog, storage

log = logging.getLogger("salesrisk.inference_log")


@dataclass
class ScoredBatch:
    """One scored request, as the request path hands it over (no copies, no encoding)."""

    endpoint: str
    deployment: str
    model_name: str
    model_version: str
    request_id: str
    at: float  # time.time()
    inputs: pd.DataFrame
    outputs: bytes  # the JSON records returned to the client
    identifiers: dict[str, list] | None = None  # e.g. opportunity_id sent beside the features

    def logged_inputs(self) -> pd.DataFrame:
        """The model's input frame with the identifiers the client sent, first."""
        if not self.identifiers:
            return self.inputs
        return pd.concat([pd.DataFrame(self.identifiers, index=self.inputs.index), self.inputs], axis=1)


def table_uri(lake: str) -> str:
    return storage.join(lake, catalog.ML_INFERENCE_LOGS)


class InferenceLog:
    """A background writer of :class:`ScoredBatch` es; :meth:`submit` never blocks on I/O.

    Submitting appends to a list under an uncontended lock and wakes the writer only when
    ``flush_rows`` have piled up: a queue that woke the writer for every request would hand it the
    GIL once per request and show up in the request latency. The writer thread only passes each
    flush to the writer process (pickling 20 batches of 1,000 x 9 floats: about 0.9 ms) and waits.
    """

    def __init__(
        self,
        lake: str,
        *,
        flush_rows: int = 20_000,
        flush_seconds: float = 5.0,
        max_pending_rows: int = 2_000_000,
    ) -> None:
        self.lake = lake
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_pending_rows = max_pending_rows
        self.written_rows = 0
        self.dropped_rows = 0
        self._pending: list[ScoredBatch] = []
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._process: ProcessPoolExecutor | None = None

    def submit(self, batch: ScoredBatch) -> None:
        with self._lock:
            self._pending.append(batch)
            self._pending_rows += len(batch.inputs)
            full = self._pending_rows >= self.flush_rows
        if full:
            self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 60.0) -> None:
        """Write everything submitted so far and stop the writer."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        finished = not self._thread.is_alive()
        if not finished:
            log.error("inference log writer did not finish within %.0f s; some rows may be lost", timeout)
        self._thread = None
        if self._process is not None:  # a writer still busy past the timeout is not waited for either
            self._process.shutdown(wait=finished, cancel_futures=True)
            self._process = None

    def _run(self) -> None:
        retry: list[ScoredBatch] = []
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            stopping = self._stopping
            with self._lock:
                batches, self._pending, self._pending_rows = self._pending, [], 0
            retry = self._flush(self._bounded(retry + batches))
            if stopping:
                break
        if retry:
            rows = sum(len(b.inputs) for b in retry)
            self.dropped_rows += rows
            log.error("inference log: %d rows could not be written at shutdown", rows)

    def _bounded(self, batches: list[ScoredBatch]) -> list[ScoredBatch]:
        """At most ``max_pending_rows`` of ``batches``, the newest: what a lake that keeps failing,
        or a machine too busy to give the writer process any idle time, leaves behind."""
        rows = sum(len(b.inputs) for b in batches)
        dropped = 0
        while rows > self.max_pending_rows and batches:
            rows -= len(batches[0].inputs)
            dropped += len(batches.pop(0).inputs)
        if dropped:
            self.dropped_rows += dropped
            log.error("inference log: dropped the oldest %d rows; %d rows waited to be written", dropped, rows + dropped)
        return batches

    def _flush(self, batches: list[ScoredBatch]) -> list[ScoredBatch]:
        """Write ``batches``; on failure return them for the next attempt."""
        if not batches:
            return []
        rows = sum(len(b.inputs) for b in batches)
        try:
            self._write(batches)
        except Exception:  # the lake may be briefly unavailable: keep the rows and retry
            log.exception("inference log: writing %d rows to %s failed; will retry", rows, table_uri(self.lake))
            return batches
        self.written_rows += rows
        return []

    def _write(self, batches: list[ScoredBatch]) -> None:
        """:func:`write` in the writer process; one that died (killed, out of memory) is replaced
        and given the batches again at once."""
        try:
            self._writer().submit(write, self.lake, batches).result()
        except BrokenProcessPool:
            log.warning("inference log: the writer process died; starting another")
            self._process = None
            self._writer().submit(write, self.lake, batches).result()

    def _writer(self) -> ProcessPoolExecutor:
        """The writer process, started on first use. Spawned, not forked: a fork of the serving
        process would copy its threads' locks mid-use; a spawned process also reads the
        environment (storage settings) as it is when the log starts writing."""
        if self._process is None:
            self._process = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_writer
            )
        return self._process


def _start_writer() -> None:
    """The writer process's first step: lowest priority; deaf to Ctrl+C, which reaches the whole
    process group while the server, flushing last after the signal, decides when logging stops;
    gone with its server."""
    _lower_priority()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="parent-watch", daemon=True).start()


def _exit_with(parent_sentinel: int) -> None:
    """Exit when the server process is gone, even killed: the pool's queue keeps both ends of its
    pipe open in this process, so a dead server alone would leave it waiting forever."""
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(0)


def _lower_priority() -> None:
    """Before polars starts its thread pool (whose threads inherit the policy): on Linux
    ``SCHED_IDLE``, so encoding runs on the cores' idle time and yields at once to a request;
    elsewhere the lowest niceness.

    Niceness 10 was not enough: served 1,000-row anomaly requests, alternated with a server that
    never flushed and one writing in-process, p90 6.1-6.8 ms niced, 4.6-5.0 ms idle-scheduled,
    4.3-4.8 ms never flushing, 6.0-7.9 ms in-process."""
    try:
        if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        else:
            os.nice(19)
    except OSError:  # not allowed here: write at normal priority
        pass


def write(lake: str, batches: list[ScoredBatch]) -> list[str]:
    """Write ``batches`` as one Parquet file per (endpoint, date) partition; return the URIs."""
    groups: dict[tuple[str, str], list[ScoredBatch]] = defaultdict(list)
    for batch in batches:
        day = datetime.fromtimestamp(batch.at, timezone.utc).date().isoformat()
        groups[(batch.endpoint, day)].append(batch)
    uris = []
    for (endpoint, day), group in groups.items():
        frame = pl.DataFrame(
            {
                "request_id": [b.request_id for b in group],
                "logged_at": [datetime.fromtimestamp(b.at, timezone.utc) for b in group],
                "deployment": [b.deployment for b in group],
                "model_name": [b.model_name for b in group],
                "model_version": [b.model_version for b in group],
                "rows": [len(b.inputs) for b in group],
                "inputs": _inputs_json(group),
                "outputs": [b.outputs.decode() for b in group],
            },
            schema_overrides={"logged_at": pl.Datetime("us", "UTC"), "rows": pl.Int32},
        )
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        uri = storage.join(
            table_uri(lake), f"endpoint={endpoint}", f"date={day}", f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        )
        uris.append(storage.write_parquet(frame, uri))
    return uris


def _inputs_json(batches: list[ScoredBatch]) -> list[str]:
    """Each batch's inputs (identifiers first) as a JSON array of records, in one vectorised polars
    pass per column layout.

    Large frames too: writing them one by one with ``DataFrame.write_json`` took twice the time
    (20 frames of 1,000 x 8 floats: 154 vs 79 ms) and held the GIL for part of it, which the
    request path of the same process felt. Per batch only cheap steps remain (the layout key, one
    ``to_numpy`` of a float block): ``frame.dtypes`` builds a Series and joining the identifiers
    with ``pd.concat`` costs about a millisecond, which for 1-row requests was more CPU in this
    thread than the request itself took, and stole the GIL from the requests being served.
    """
    out: list[str | None] = [None] * len(batches)
    layouts: dict[tuple, list[int]] = defaultdict(list)
    names: dict[int, tuple[str, ...]] = {}  # id of a columns Index -> its names (frames of one scorer share one)
    for i, batch in enumerate(batches):
        frame = batch.inputs
        columns = names.get(id(frame.columns))
        if columns is None:
            columns = names[id(frame.columns)] = tuple(str(c) for c in frame.columns)
        identifiers = tuple(batch.identifiers) if batch.identifiers else ()
        layouts[(identifiers, columns, _dtypes(frame))].append(i)
    for (identifiers, columns, dtypes), members in layouts.items():
        parts = [batches[i] for i in members]
        table = _to_polars([b.inputs for b in parts], list(columns), dtypes)
        if identifiers:
            try:
                ids = pl.DataFrame({c: pl.Series(c, [v for b in parts for v in b.identifiers[c]], strict=False) for c in identifiers})  # type: ignore[index]
            except (TypeError, ValueError, pl.exceptions.PolarsError):  # values of mixed kinds: as text
                ids = pl.DataFrame({c: [None if v is None else str(v) for b in parts for v in b.identifiers[c]] for c in identifiers})  # type: ignore[index]
            table = pl.concat([ids, table.drop([c for c in identifiers if c in table.columns])], how="horizontal")
        request = np.repeat(np.arange(len(parts)), [len(b.inputs) for b in parts])
        encoded = (
            table.select(pl.struct(pl.all()).struct.json_encode().alias("row"))
            .with_columns(request=pl.Series(request))
            .group_by("request", maintain_order=True)
            .agg(pl.col("row").str.join(","))
            .select(pl.concat_str(pl.lit("["), pl.col("row"), pl.lit("]")))
            .to_series()
            .to_list()
        )
        for i, text in zip(members, encoded):
            out[i] = text
    return out  # type: ignore[return-value]


def _dtypes(frame: pd.DataFrame) -> tuple:
    """The column dtypes, from pandas' block manager when it has one (10x cheaper than
    ``frame.dtypes``, which builds a Series per call)."""
    try:
        return tuple(frame._mgr.get_dtypes())
    except AttributeError:  # pragma: no cover - another pandas layout
        return tuple(frame.dtypes)


def _to_polars(parts: list[pd.DataFrame], columns: list[str], dtypes: tuple) -> pl.DataFrame:
    if dtypes and all(t == np.float64 for t in dtypes):
        block = np.concatenate([p.to_numpy() for p in parts]) if len(parts) > 1 else parts[0].to_numpy()
        return pl.from_numpy(block, schema=columns, orient="row")
    return pl.from_pandas(pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0])
