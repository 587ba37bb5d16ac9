"""Industry slots of an industry endpoint: names, validation and what monitoring acts on."""

from __future__ import annotations

import pytest

from deployments import endpoints
from models import monitoring
from salesrisk import catalog

FAMILY = next(spec for spec in catalog.MODELS.values() if spec.industry_name)
KEY = FAMILY.industry_endpoint_key


def test_an_industry_model_serves_on_its_own_slot_of_the_industry_endpoint() -> None:
    slot = catalog.endpoint_key(FAMILY.model_id, "software")
    assert slot == f"{KEY}/software" and catalog.split_slot(slot) == (KEY, "software")
    assert catalog.split_slot(KEY) == (KEY, None)
    assert catalog.spec_of_endpoint(slot) is FAMILY and endpoints.check_key(slot) == slot
    assert catalog.industry_of_model(FAMILY.model_id, catalog.registered_name(FAMILY.model_id, "software")) == "software"
    assert catalog.industry_of_model(FAMILY.model_id, FAMILY.registered_name) is None


@pytest.mark.parametrize("bad", [f"{FAMILY.endpoint_key}/software", f"{KEY}/../x", f"{KEY}/has space", "nope/software"])
def test_a_slot_of_anything_but_an_industry_endpoint_or_a_bad_industry_is_refused(bad: str) -> None:
    with pytest.raises(endpoints.DeployError, match="endpoint key"):
        endpoints.check_key(bad)


def test_monitoring_actions_apply_to_a_slot_by_slot_then_endpoint_then_model() -> None:
    slot = catalog.industry_slot(KEY, "software")
    assert monitoring.resolve_action({KEY: "rollback", FAMILY.model_id: "retrain"}, slot, FAMILY.model_id) == "rollback"
    assert monitoring.resolve_action({slot: "none", KEY: "rollback"}, slot, FAMILY.model_id) == "none"
    assert monitoring.resolve_action({FAMILY.model_id: "retrain"}, slot, FAMILY.model_id) == "retrain"
