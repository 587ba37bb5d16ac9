from __future__ import annotations

from deployments.compute import StepInputError, TransientComputeError
from models.contracts import DataContractError
from salesrisk.storage import StorageError
from tasks.policies import is_transient


def test_transient_faults_are_retried() -> None:
    assert is_transient(TransientComputeError("killed by signal 9"))
    assert is_transient(ConnectionResetError("reset by peer"))
    assert is_transient(TimeoutError("read timed out"))


def test_input_errors_are_not_retried() -> None:
    assert not is_transient(StepInputError("prepared.parquet: column target_win missing"))
    assert not is_transient(StorageError("lake/x: no such file or folder"))
    assert not is_transient(FileNotFoundError("lake/x"))
    assert not is_transient(ValueError("bad parameter"))
    assert not is_transient(DataContractError.__new__(DataContractError))
    assert not is_transient(RuntimeError("a bug"))
