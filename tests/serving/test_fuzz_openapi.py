"""Schemathesis against the running server's own OpenAPI description: whatever it sends, no 5xx.

Bounded (about 50 cases, seeded) so it guards every ``make test``; ``benchmarks/fuzz.py`` runs
the long version against the real trained model.
"""

from __future__ import annotations

import pytest

from benchmarks.fuzz import fuzz

pytestmark = pytest.mark.slow  # uses the session's server


def test_generated_requests_get_no_server_error(deployed, server):
    result = fuzz(server.url, server.key, examples=24, seed=1)

    assert not result.failures, result.failures[:5]
    operations = {operation for operation, _ in result.cases}
    assert {"POST /score/{key}", "POST /score/{key} key=win_probability", "GET /endpoints"} <= operations
    assert 40 <= sum(result.cases.values()) <= 60
    # the cases reached the model as well as the refusals: some scored, some refused as 4xx
    scored = result.statuses[("POST /score/{key} key=win_probability", "positive")]
    assert scored[200] > 0 or scored[422] > 0, scored
    assert any(status is not None and 400 <= status < 500 for counts in result.statuses.values() for status in counts)
    assert server.key not in server.log_text()


def test_any_values_in_the_real_columns_get_no_server_error(deployed, server):
    from benchmarks.fuzz import fuzz_values

    columns = list(deployed["win_probability"].sample.columns)
    result = fuzz_values(server.url, server.key, "win_probability", columns, examples=25, seed=1)

    assert not result.failures, result.failures[:5]
    (statuses,) = result.statuses.values()
    assert sum(statuses.values()) == 25
    assert statuses[200] > 0 and any(400 <= s < 500 for s in statuses), statuses
