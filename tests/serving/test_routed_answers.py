"""The routing endpoint's shortcuts give what decoding, extending and re-encoding each answer gave.

``ScoringService.score_groups`` names the model of each routed row by splicing ``model_name`` and
``model_version`` into the encoded records, and routes each distinct ``industry_id`` once; these
check both against the plain way, on the edge values JSON and routing meet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from deployments.serve.app import _groups, _named
from deployments.serve.scoring import Scorer, dumps, loads

NAMED = {"model_name": "risk-scoring-global", "model_version": "7"}


def _scorer(output_name: str) -> Scorer:
    """A scorer for encoding only (no model behind it)."""
    scorer = Scorer.__new__(Scorer)
    scorer.output_names = [output_name]
    return scorer


@pytest.mark.parametrize(
    "output",
    [
        pd.DataFrame({"risk_score": [0.1, 1e-300, 123456789.125, np.nan, -0.0, 1 / 3]}),
        pd.DataFrame({"risk_score": np.array([0.25, 0.5], dtype=np.float32)}),
        pd.DataFrame({"flag": [True, False, True]}),
        pd.DataFrame({"n": np.array([1, -2, 3], dtype=np.int64)}),
        pd.DataFrame({"risk_score": [0.5]}),
        np.array([0.75, 0.125]),
    ],
    ids=["floats", "float32", "booleans", "integers", "one-row", "array"],
)
def test_spliced_records_equal_the_decoded_and_extended_ones(output) -> None:
    scorer = _scorer("risk_score")
    content, records = scorer.encode_tagged(output, NAMED)
    assert content == scorer.encode(output)
    assert records is not None
    assert records == [dumps(_named(record, NAMED)) for record in loads(content)]
    assert b"[" + b",".join(records) + b"]" == dumps([_named(r, NAMED) for r in loads(content)])


def test_outputs_of_several_columns_are_left_to_the_plain_way() -> None:
    output = pd.DataFrame({"risk_score": [0.5, 0.25], "top_factors": [[{"feature": "a"}], []]})
    content, records = _scorer("risk_score").encode_tagged(output, NAMED)
    assert records is None
    assert content == _scorer("risk_score").encode(output)


@dataclass(frozen=True)
class _Deployment:
    path: str


class _Router:
    """Industries with a model of their own; any other goes to the fallback."""

    def __init__(self, *industries: str) -> None:
        self.own = {i: _Deployment(f"models/{i}") for i in industries}
        self.fallback = _Deployment("models/global")
        self.calls: list = []

    def route(self, requested, industry):
        self.calls.append(industry)
        return self.own.get(industry, self.fallback)


def _plain_groups(router, industries):
    """The per-row routing the shortcut replaces."""
    groups: dict = {}
    for i, value in enumerate(industries):
        deployment = router.route(None, None if value is None else str(value))
        groups.setdefault(deployment.path, (deployment, []))[1].append(i)
    return list(groups.values())


@pytest.mark.parametrize(
    "industries",
    [
        ["retail"] * 5,
        ["mining", None, "energy", "mining"],
        ["retail", "mining", "software", "retail", None, "software"],
        [1, "1", True, 1.0, None],
        [["retail"], "retail", {"a": 1}],
    ],
    ids=["one-model", "all-fallback", "mixed", "numbers-and-booleans", "unhashable"],
)
def test_grouping_equals_routing_row_by_row(industries) -> None:
    router = _Router("retail", "software", "1")
    assert _groups(router, None, industries) == _plain_groups(_Router("retail", "software", "1"), industries)


def test_each_distinct_industry_is_routed_once() -> None:
    router = _Router("retail")
    groups = _groups(router, None, ["retail", "other", "retail", "other"] * 250)
    assert sorted(router.calls) == ["other", "retail"]
    assert [(d.path, len(rows)) for d, rows in groups] == [("models/retail", 500), ("models/global", 500)]
