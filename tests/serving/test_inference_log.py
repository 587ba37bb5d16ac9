"""The inference log writer on its own: batching, partition layout, retry, flush on close."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import polars as pl

from deployments.inference_log import InferenceLog, ScoredBatch, table_uri
from salesrisk import storage


def _batch(i: int, rows: int = 3, endpoint: str = "anomaly", at: float | None = None) -> ScoredBatch:
    frame = pd.DataFrame({"amount": [float(i + r) for r in range(rows)], "stage": [float(r) for r in range(rows)]})
    outputs = json.dumps([{"prediction": r} for r in range(rows)]).encode()
    return ScoredBatch(endpoint, "blue", "m", "7", f"req-{i}", at or time.time(), frame, outputs)


def test_close_writes_everything_pending_into_endpoint_and_date_partitions(tmp_path):
    lake = str(tmp_path / "lake")
    log = InferenceLog(lake, flush_rows=10_000, flush_seconds=3600)
    log.start()
    yesterday = time.time() - 86_400
    for i in range(5):
        log.submit(_batch(i))
    log.submit(_batch(99, endpoint="win_probability", at=yesterday))
    log.close()

    table = storage.read_parquet(table_uri(lake)).sort("request_id")
    assert table.height == 6 and log.written_rows == 18 and log.dropped_rows == 0
    assert set(table["endpoint"]) == {"anomaly", "win_probability"}
    dates = dict(zip(table["request_id"], table["date"].cast(pl.String)))
    assert dates["req-99"] == time.strftime("%Y-%m-%d", time.gmtime(yesterday))
    first = table.filter(pl.col("request_id") == "req-1").row(0, named=True)
    assert json.loads(first["inputs"]) == [{"amount": 1.0, "stage": 0.0}, {"amount": 2.0, "stage": 1.0}, {"amount": 3.0, "stage": 2.0}]
    assert json.loads(first["outputs"]) == [{"prediction": 0}, {"prediction": 1}, {"prediction": 2}]
    assert (first["model_name"], first["model_version"], first["deployment"], first["rows"]) == ("m", "7", "blue", 3)


def test_flushes_when_enough_rows_pile_up(tmp_path):
    lake = str(tmp_path / "lake")
    log = InferenceLog(lake, flush_rows=6, flush_seconds=3600)
    log.start()
    try:
        log.submit(_batch(1))
        log.submit(_batch(2))  # 6 rows: wakes the writer without waiting for the hour
        deadline = time.monotonic() + 20
        while log.written_rows < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.written_rows == 6
    finally:
        log.close()


def test_a_failed_write_is_retried_not_lost(tmp_path):
    blocked = tmp_path / "lake"
    blocked.write_text("a file where the lake folder should be")
    log = InferenceLog(str(blocked), flush_rows=10_000, flush_seconds=0.05)
    log.start()
    log.submit(_batch(1))
    time.sleep(0.5)
    assert log.written_rows == 0
    blocked.unlink()  # the lake comes back
    log.close()
    assert log.written_rows == 3 and log.dropped_rows == 0
    assert storage.read_parquet(table_uri(str(blocked)))["request_id"].to_list() == ["req-1"]


def test_large_and_small_batches_encode_the_same_records(tmp_path):
    lake = str(tmp_path / "lake")
    log = InferenceLog(lake, flush_rows=10**9, flush_seconds=3600)
    log.start()
    log.submit(_batch(0, rows=200))  # encoded frame by frame
    log.submit(_batch(1, rows=2))  # encoded with the other small batches
    log.close()
    table = storage.read_parquet(table_uri(lake)).sort("request_id")
    big, small = (json.loads(text) for text in table["inputs"])
    assert len(big) == 200 and big[5] == {"amount": 5.0, "stage": 5.0}
    assert small == [{"amount": 1.0, "stage": 0.0}, {"amount": 2.0, "stage": 1.0}]


def test_identifiers_come_first_and_every_layout_keeps_its_values(tmp_path):
    """Float blocks, identifiers sent beside them, and frames of text and dates, mixed in one
    flush: each request's logged records are its own rows, identifiers first."""
    lake = str(tmp_path / "lake")
    log = InferenceLog(lake, flush_rows=10**9, flush_seconds=3600)
    log.start()
    for i in range(3):
        batch = _batch(i, rows=2, endpoint="win_probability")
        batch.identifiers = {"opportunity_id": [f"opp-{i}-a", f"opp-{i}-b"], "tenant_id": [7, None]}
        log.submit(batch)
    log.submit(_batch(9, rows=1, endpoint="win_probability"))  # same columns, no identifiers
    mixed = pd.DataFrame({"opportunityId": ["x", None], "snapshotDate": pd.to_datetime(["2025-01-31", "2025-02-07"]),
                          "risk_score": [0.5, float("nan")]})
    log.submit(ScoredBatch("risk_trajectory_lstm", "blue", "m", "1", "req-mixed", time.time(), mixed, b"[]",
                           {"tenant_id": ["t1", "t1"]}))
    log.close()
    table = storage.read_parquet(table_uri(lake))
    logged = {r: json.loads(text) for r, text in zip(table["request_id"], table["inputs"])}
    assert logged["req-1"] == [
        {"opportunity_id": "opp-1-a", "tenant_id": 7, "amount": 1.0, "stage": 0.0},
        {"opportunity_id": "opp-1-b", "tenant_id": None, "amount": 2.0, "stage": 1.0},
    ]
    assert list(logged["req-2"][0]) == ["opportunity_id", "tenant_id", "amount", "stage"]
    assert logged["req-9"] == [{"amount": 9.0, "stage": 0.0}]
    first, second = logged["req-mixed"]
    assert first["tenant_id"] == "t1" and first["opportunityId"] == "x" and first["risk_score"] == 0.5
    assert first["snapshotDate"].startswith("2025-01-31") and second["opportunityId"] is None and second["risk_score"] is None


def _wait(done, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_writer_is_a_separate_idle_scheduled_process_and_a_killed_one_is_replaced(tmp_path):
    """Encoding runs outside the serving process at the lowest priority; if that process dies the
    rows it was given are written by a new one at once, not lost."""
    lake = str(tmp_path / "lake")
    log = InferenceLog(lake, flush_rows=3, flush_seconds=3600)
    before = set(multiprocessing.active_children())
    log.start()
    try:
        log.submit(_batch(1))
        _wait(lambda: log.written_rows == 3)
        (writer,) = set(multiprocessing.active_children()) - before
        assert writer.pid != os.getpid()
        if hasattr(os, "SCHED_IDLE"):
            assert os.sched_getscheduler(writer.pid) == os.SCHED_IDLE
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(10)
        log.submit(_batch(2))
        _wait(lambda: log.written_rows == 6)
        assert log.written_rows == 6
    finally:
        log.close()
    assert log.dropped_rows == 0
    assert sorted(storage.read_parquet(table_uri(lake))["request_id"]) == ["req-1", "req-2"]


def test_a_backlog_beyond_the_bound_drops_the_oldest_rows_and_counts_them(tmp_path):
    blocked = tmp_path / "lake"
    blocked.write_text("a file where the lake folder should be")
    log = InferenceLog(str(blocked), flush_rows=10_000, flush_seconds=0.05, max_pending_rows=4)
    log.start()
    for i in range(3):
        log.submit(_batch(i))
    _wait(lambda: log.dropped_rows >= 6)  # failed attempts keep at most the newest 4 rows: one batch
    blocked.unlink()  # the lake comes back
    log.close()
    assert log.written_rows == 3 and log.dropped_rows == 6
    assert storage.read_parquet(table_uri(str(blocked)))["request_id"].to_list() == ["req-2"]


def test_the_writer_process_exits_when_its_server_is_killed(tmp_path):
    """A server killed outright (OOM killer, SIGKILL) leaves no writer process behind."""
    script = f"""
import multiprocessing, os, sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from tests.serving.test_inference_log import _batch, _wait
from deployments.inference_log import InferenceLog
log = InferenceLog({str(tmp_path / 'lake')!r}, flush_rows=3, flush_seconds=3600)
log.start()
log.submit(_batch(1))
_wait(lambda: log.written_rows == 3)
print(multiprocessing.active_children()[0].pid, flush=True)
time.sleep(600)
"""
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        writer = int(server.stdout.readline())
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
        _wait(lambda: not Path(f"/proc/{writer}").exists() or "zombie" in _state(writer), 20)
        assert not Path(f"/proc/{writer}").exists() or "zombie" in _state(writer)
    finally:
        server.kill()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "gone"
