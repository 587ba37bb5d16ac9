"""NeuralProphet fits drop only the two per-step logs nothing reads, and only while they fit."""

from __future__ import annotations

from typing import Any

from models import forecasters


def test_only_the_unread_step_logs_are_dropped_and_log_comes_back() -> None:
    neuralprophet = forecasters.import_neuralprophet()
    from neuralprophet import time_net

    original = time_net.TimeNet.log
    seen: list[str] = []

    def recording(self: Any, name: str, *args: Any, **kwargs: Any) -> None:
        seen.append(name)

    time_net.TimeNet.log = recording
    try:
        with forecasters._unread_step_logs(skip=True):
            for name in ("train_loss", "reg_loss", "Loss", "MAE"):
                time_net.TimeNet.log(object(), name, 1.0)
        assert seen == ["Loss", "MAE"], "metrics NeuralProphet collects when asked must still be logged"
        assert time_net.TimeNet.log is recording, "TimeNet.log is put back after the fit"
        with forecasters._unread_step_logs(skip=False):  # learning-rate finder: it reads train_loss
            time_net.TimeNet.log(object(), "train_loss", 1.0)
        assert seen[-1] == "train_loss"
    finally:
        time_net.TimeNet.log = original
    assert neuralprophet is not None
