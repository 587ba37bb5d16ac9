"""Bad requests to the endpoint server over real HTTP: one clear 4xx naming what is wrong, and the
endpoint keeps serving the same versions afterwards.

The server here has its own home, lake, MLflow store and key (``tests.serving.conftest.shared_stack``)
and limits of 1,000 rows and 1 MB per request, so the limits are reached with small bodies.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from salesrisk import catalog
from tests.serving.conftest import Stack, shared_stack

pytestmark = pytest.mark.slow  # trains small models and starts a server

FEATURES = list(catalog.WIN_PROBABILITY_FEATURES)


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory) -> Stack:
    return shared_stack(request, tmp_path_factory)


@pytest.fixture(scope="module")
def served_before(stack) -> dict[str, dict]:
    """Each endpoint's deployments and versions as GET /endpoints reports them before any bad request."""
    listing = _listing(stack)
    assert all(listing[key]["live"] for key in stack.registered), listing
    return listing


def _listing(stack: Stack) -> dict[str, dict]:
    response = httpx.get(f"{stack.server.url}/endpoints", headers=stack.server.headers())
    assert response.status_code == 200, response.text
    return {key: {"live": e["live"], "deployments": e["deployments"]} for key, e in response.json()["endpoints"].items()}


def _split(frame) -> dict:
    split = json.loads(frame.to_json(orient="split", date_format="iso", index=False))
    return {"input_data": {"columns": split["columns"], "data": split["data"]}}


@dataclass
class Bad:
    """One bad request: how to send it, the status expected and what the message must name."""

    send: Callable[[Stack], httpx.Response]
    status: int
    names: tuple[str, ...]


def _post(key: str, *, body=None, content: bytes | None = None, headers: dict | None = None, auth: bool = True):
    def send(stack: Stack) -> httpx.Response:
        sent = {**(stack.server.headers() if auth else {}), **(headers or {})}
        kwargs = {"content": content} if content is not None else {"json": body(stack) if callable(body) else body}
        return httpx.post(f"{stack.server.url}/score/{key}", headers=sent, timeout=60, **kwargs)

    return send


def _win(edit: Callable[[dict], object]) -> Callable[[Stack], dict]:
    """The win_probability sample in the split shape, changed by ``edit`` (in place or returned)."""

    def body(stack: Stack) -> dict:
        payload = _split(stack.registered["win_probability"].sample)
        changed = edit(payload)
        return payload if changed is None else changed

    return body


def _set(row: int, column: str, value) -> Callable[[dict], None]:
    def edit(payload: dict) -> None:
        payload["input_data"]["data"][row][payload["input_data"]["columns"].index(column)] = value

    return edit


def _rows(n: int) -> Callable[[dict], None]:
    def edit(payload: dict) -> None:
        payload["input_data"]["data"] = [payload["input_data"]["data"][0]] * n

    return edit


def _rename(old: str, new: str) -> Callable[[dict], None]:
    def edit(payload: dict) -> None:
        columns = payload["input_data"]["columns"]
        columns[columns.index(old)] = new

    return edit


def _drop(column: str) -> Callable[[dict], None]:
    def edit(payload: dict) -> None:
        i = payload["input_data"]["columns"].index(column)
        del payload["input_data"]["columns"][i]
        for row in payload["input_data"]["data"]:
            del row[i]

    return edit


def _short_row(payload: dict) -> None:
    payload["input_data"]["data"][0].pop()


def _industry(value: str) -> Callable[[Stack], dict]:
    def body(stack: Stack) -> dict:
        sample = stack.registered["risk_scoring_industry"].sample
        return _split(sample.assign(industry_id=[value] * len(sample)))

    return body


CASES = {
    "malformed JSON": Bad(_post("win_probability", content=b'{"input_data": {"columns": [}'), 400, ("not valid JSON", "input_data")),
    "body over the size limit": Bad(_post("win_probability", content=b"[" + b" " * (1024 * 1024 + 10) + b"]"), 413, ("1048576 bytes",)),
    "too many rows": Bad(_post("win_probability", body=_win(_rows(1001))), 413, ("1001 rows", "1000 rows")),
    "missing column": Bad(_post("win_probability", body=_win(_drop("stakeholder_count"))), 422, ("'stakeholder_count'", "missing")),
    "wrong column name": Bad(_post("win_probability", body=_win(_rename("amount", "amt"))), 422, ("'amount'", "'amt'")),
    "text in a numeric column": Bad(_post("win_probability", body=_win(_set(2, "stage_encoded", "high"))), 422, ("'stage_encoded' row 2", "expected a number")),
    "list in a numeric column": Bad(_post("win_probability", body=_win(_set(0, "amount", [1, 2]))), 422, ("'amount' row 0",)),
    "row of the wrong width": Bad(_post("win_probability", body=_win(_short_row)), 400, ("8 values",)),
    "column named twice": Bad(
        _post("win_probability", body=_win(lambda p: {"input_data": {"columns": FEATURES[:-1] + ["amount"], "data": [[1.0] * 8]}})),
        400, ("['amount']", "more than once"),
    ),
    "params not an object": Bad(_post("win_probability", body=_win(lambda p: {**p, "params": [1]})), 400, ("params",)),
    "unknown endpoint key": Bad(_post("win_probabilty", body=_win(lambda p: None)), 404, ("'win_probabilty'", "win_probability")),
    "unknown deployment colour": Bad(
        _post("win_probability", body=_win(lambda p: None), headers={"azureml-model-deployment": "purple"}), 404, ("'purple'",)
    ),
    "industry with no model": Bad(_post("risk_scoring_industry", body=_industry("retail")), 422, ("'industry_id'", "'retail'", "risk-scoring-stacktech")),
    "missing key": Bad(_post("win_probability", body=_win(lambda p: None), auth=False), 401, ("Authorization", "Bearer")),
    "wrong key": Bad(_post("win_probability", body=_win(lambda p: None), headers={"Authorization": "Bearer not-the-key"}), 401, ("Bearer",)),
    "key without the Bearer scheme": Bad(
        lambda stack: _post("win_probability", body=_win(lambda p: None), headers={"Authorization": stack.server.key})(stack),
        401, ("Bearer",),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request_gets_a_4xx_naming_the_problem_and_serving_goes_on(stack, served_before, case):
    bad = CASES[case]
    response = bad.send(stack)

    assert response.status_code == bad.status, response.text
    detail = response.json()["detail"]
    for name in bad.names:
        assert name in detail, f"{name!r} not in {detail!r}"
    assert stack.server.key not in response.text
    # the endpoint still serves what it served before, and scores a good request with it
    assert _listing(stack) == served_before
    good = httpx.post(
        f"{stack.server.url}/score/win_probability", json=_split(stack.registered["win_probability"].sample),
        headers=stack.server.headers(), timeout=60,
    )
    live = served_before["win_probability"]
    assert good.status_code == 200, good.text
    assert good.headers["x-model-version"] == live["deployments"][live["live"]]["version"]


def test_an_industry_model_scores_its_own_industry(stack, served_before):
    """The industry check refuses other industries only: rows of the model's own industry (and
    rows that name none) are scored, and ``industry_id`` is not passed to the model."""
    response = _post("risk_scoring_industry", body=_industry("stacktech"))(stack)
    assert response.status_code == 200, response.text
    assert len(response.json()) == len(stack.registered["risk_scoring_industry"].sample)
    assert _post("risk_scoring_industry", body=lambda s: _split(s.registered["risk_scoring_industry"].sample))(stack).status_code == 200


def test_no_bad_request_reached_the_server_log_as_a_traceback(stack, served_before):
    for bad in CASES.values():
        bad.send(stack)
    log = stack.server.log_text()
    assert "Traceback" not in log and stack.server.key not in log
