"""Industry slots in the local endpoint state: monitoring checks each one, a rollback moves one
industry's traffic alone, and the endpoint map carries the one routing URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments import endpoint_map, endpoints
from deployments.local import state as st
from salesrisk import catalog
from salesrisk.settings import get_settings

FAMILY = next(spec for spec in catalog.MODELS.values() if spec.industry_name)
KEY = FAMILY.industry_endpoint_key


def _deployed(path: Path, key: str, model: str, live: str, versions: dict[str, str]) -> None:
    with st.transaction(path) as state:
        ep = state.endpoint(key)
        for colour, version in versions.items():
            ep.deployments[colour] = st.Slot(model, version, f"/nowhere/{model}/{version}", st.now_iso())
        ep.traffic = {c: (100 if c == live else 0) for c in versions}


def test_monitoring_and_rollback_address_each_industry_slot(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.monitor import with_industry_slots

    monkeypatch.setenv("SALESRISK_SERVE_PORT", "9")  # nothing listens: no server to wait for
    path = st.state_path(get_settings())
    software, finance = (catalog.registered_name(FAMILY.model_id, i) for i in ("software", "finance"))
    _deployed(path, catalog.industry_slot(KEY, "software"), software, "green", {"blue": "1", "green": "2"})
    _deployed(path, catalog.industry_slot(KEY, "finance"), finance, "blue", {"blue": "1"})

    assert set(endpoints.industry_slots(KEY)) == {"software", "finance"}
    assert with_industry_slots([FAMILY.endpoint_key, KEY]) == [
        FAMILY.endpoint_key, catalog.industry_slot(KEY, "finance"), catalog.industry_slot(KEY, "software")]

    result = endpoints.rollback(catalog.industry_slot(KEY, "software"), reason="test")
    assert (result.model_name, result.version, result.previous_version) == (software, "1", "2")
    assert endpoints.current(catalog.industry_slot(KEY, "finance")).version == "1"  # the other industry is untouched
    assert endpoint_map.read(get_settings().endpoint_map) == {KEY: result.scoring_url}
    assert result.scoring_url.endswith(f"/score/{KEY}")
