"""The endpoint server's inference log on an ``abfs://`` lake: its writer process is spawned, so it
must reach Azurite through the settings in the environment alone."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from deployments.inference_log import InferenceLog, ScoredBatch, table_uri
from salesrisk import storage

pytestmark = pytest.mark.azurite


def test_the_writer_process_writes_the_log_into_an_abfs_lake(lake_container: str):
    lake = f"{lake_container}/lake"
    log = InferenceLog(lake, flush_rows=10_000, flush_seconds=3600)
    log.start()
    frame = pd.DataFrame({"amount": [1.0, 2.0], "stage": [0.0, 1.0]})
    log.submit(ScoredBatch("anomaly", "blue", "m", "3", "req-a", time.time(), frame, b'[{"is_anomaly": false}]',
                           {"opportunity_id": ["o-1", "o-2"]}))
    log.close()
    assert log.written_rows == 2 and log.dropped_rows == 0
    row = storage.read_parquet(table_uri(lake)).row(0, named=True)
    assert row["request_id"] == "req-a" and row["endpoint"] == "anomaly"
    assert json.loads(row["inputs"]) == [{"opportunity_id": "o-1", "amount": 1.0, "stage": 0.0},
                                         {"opportunity_id": "o-2", "amount": 2.0, "stage": 1.0}]
