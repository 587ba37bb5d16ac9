"""The server's loaded models are kept out of the garbage collector's full passes, and a
redeploy still frees the models it replaces (``deployments.serve.live.settle_heap``)."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from deployments.local import state as state_mod
from deployments.serve.live import LiveEndpoints

MODEL = "anomaly-detection-isolation-forest"


class CyclicModel:
    """A loaded model that refers to itself, as loaded pyfunc models do: only the cycle
    collector can free it."""

    slow = False

    def __init__(self, path: str) -> None:
        self.path = path
        self.itself = self


def _deploy(state_path: Path, folder: Path, version: str) -> None:
    with state_mod.transaction(state_path) as state:
        endpoint = state.endpoint("anomaly")
        endpoint.deployments["blue"] = state_mod.Slot(MODEL, version, str(folder), state_mod.now_iso())
        endpoint.traffic = {"blue": 100}


def _tracked(obj: object) -> bool:
    """Whether ``obj`` is in a generation a full collection walks (frozen objects are not)."""
    return any(o is obj for o in gc.get_objects())


def test_loaded_models_are_frozen_and_a_redeploy_frees_the_replaced_ones(tmp_path):
    path = tmp_path / "state.json"
    live = LiveEndpoints(path, loader=CyclicModel)
    try:
        _deploy(path, tmp_path / "v1", "1")
        assert live.refresh()
        first = live.endpoints["anomaly"].live.scorer
        assert isinstance(first, CyclicModel)
        assert not _tracked(first)  # frozen: a full collection no longer walks the loaded model
        replaced = weakref.ref(first)
        del first

        _deploy(path, tmp_path / "v2", "2")
        assert live.refresh()
        assert live.endpoints["anomaly"].live.scorer.path == str(tmp_path / "v2")
        assert replaced() is None  # the replaced model's cycle was collected, not kept frozen
        assert not _tracked(live.endpoints["anomaly"].live.scorer)
    finally:
        gc.unfreeze()  # leave this test process's collector as it found it
