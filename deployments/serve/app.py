"""The local endpoint server: Azure ML online-endpoint request shape, key auth, blue/green routing.

Scoring is one framework-free :class:`ScoringService`. ``POST /score/<key>`` reaches it through a
thin ASGI layer in front of FastAPI (:class:`ScoringFastPath`): FastAPI's per-request dependency
machinery costs more than the whole of a single-row score, so the hot path skips it. FastAPI
still serves ``/health``, ``/endpoints`` and the OpenAPI description, whose ``/score/{key}``
route calls the same service, so the documented route and the fast path cannot disagree.
Fast models are scored inline on the event loop (a thread hop costs more than they do); a model
whose recent predictions took over 5 ms is scored in a worker thread so it cannot stall the rest.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline

from deployments.inference_log import InferenceLog, ScoredBatch
from deployments.local import state as state_mod
from deployments.serve.live import DEPLOYMENT_HEADER, Deployment, IndustryRouter, LiveEndpoints, RouteError
from deployments.serve.scoring import PayloadError, column_values, dumps, loads, parse
from salesrisk import catalog

log = logging.getLogger("salesrisk.serve")

SCORE_PREFIX = "/score/"
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class ServeConfig:
    """Everything the server needs, resolved before it starts (see ``python -m deployments.serve -h``)."""

    state_path: Path
    lake: str
    key: str
    base_url: str
    max_body_bytes: int = 16 * 1024 * 1024
    max_rows: int = 10_000
    poll_seconds: float = 0.2
    log_flush_rows: int = 20_000
    log_flush_seconds: float = 5.0


@dataclass
class Reply:
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


_JSON = (b"content-type", b"application/json")
_UNAUTHORISED = [(b"www-authenticate", b'Bearer realm="salesrisk"')]


def error_reply(status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> Reply:
    return Reply(status, dumps({"detail": message}), headers or [])


class ScoringService:
    """Authorise, route, validate, predict, log: everything ``POST /score/{key}`` does."""

    def __init__(self, config: ServeConfig, live: LiveEndpoints, inference_log: InferenceLog) -> None:
        self.config = config
        self.live = live
        self.inference_log = inference_log
        self._expected = f"Bearer {config.key}".encode()
        self._key = config.key.encode()
        self._known = frozenset(catalog.ENDPOINT_KEYS)

    def authorised(self, header: bytes | None) -> bool:
        return header is not None and hmac.compare_digest(header, self._expected)

    def preflight(self, key: str, authorization: bytes | None, content_length: bytes | None) -> Reply | None:
        """What can be refused before reading the body: the key, the endpoint, the declared size."""
        if not self.authorised(authorization):
            return error_reply(401, "missing or wrong key: send 'Authorization: Bearer <endpoint key>'", _UNAUTHORISED)
        if key not in self.live.endpoints:
            if key not in self._known:
                return error_reply(404, f"no endpoint {key!r}; endpoints: {', '.join(catalog.ENDPOINT_KEYS)}")
            return error_reply(503, f"endpoint {key!r} has no deployment yet; deploy a model first")
        if content_length is not None:
            try:
                declared = int(content_length)
            except ValueError:
                return error_reply(400, "Content-Length is not a number")
            if declared > self.config.max_body_bytes:
                return error_reply(413, f"body of {declared} bytes exceeds the limit of {self.config.max_body_bytes} bytes")
        return None

    def redacted(self, reply: Reply) -> Reply:
        """An error message never carries the endpoint key, whatever the client put where (a
        path, a column name) that the message names."""
        if reply.status != 200 and self._key and self._key in reply.body:
            return Reply(reply.status, reply.body.replace(self._key, b"<endpoint key>"), reply.headers)
        return reply

    def slow(self, key: str) -> bool:
        """Whether the endpoint's live model is slow enough to score in a worker thread."""
        endpoint = self.live.endpoints.get(key)
        deployment = endpoint.live if endpoint is not None else None
        return deployment is not None and deployment.scorer is not None and deployment.scorer.slow

    async def score_async(self, key: str, deployment_header: bytes | None, body: bytes, request_id: bytes | None) -> Reply:
        """:meth:`score`, inline for fast models and in a worker thread for slow ones, so one slow
        model (SHAP factors, an LSTM) does not hold up the event loop and every other endpoint. A
        routing endpoint's rows are routed first; they go to a thread only when a model chosen for
        them is slow."""
        endpoint = self.live.endpoints.get(key)
        if isinstance(endpoint, IndustryRouter):
            plan = self.route_rows(endpoint, deployment_header, body)
            if isinstance(plan, Reply):
                return plan
            if any(deployment.scorer is not None and deployment.scorer.slow for deployment, _ in plan.groups):
                return await anyio.to_thread.run_sync(self.score_groups, endpoint, plan, request_id)
            return self.score_groups(endpoint, plan, request_id)
        if self.slow(key):
            return await anyio.to_thread.run_sync(self.score, key, deployment_header, body, request_id)
        return self.score(key, deployment_header, body, request_id)

    def score(self, key: str, deployment_header: bytes | None, body: bytes, request_id: bytes | None) -> Reply:
        endpoint = self.live.endpoints.get(key)
        if endpoint is None:  # undeployed between preflight and now
            return error_reply(503, f"endpoint {key!r} has no deployment")
        if isinstance(endpoint, IndustryRouter):
            return self.score_routed(endpoint, deployment_header, body, request_id)
        try:
            deployment = endpoint.route(deployment_header.decode("latin-1") if deployment_header else None)
        except RouteError as error:
            return error_reply(error.status, error.message)
        scorer = deployment.scorer
        try:
            columns, rows, params = parse(body)
            if len(rows) > self.config.max_rows:
                raise PayloadError(413, f"{len(rows)} rows exceed the limit of {self.config.max_rows} rows per request; split the batch")
            if deployment.industry is not None:
                check_industry(key, deployment, columns, rows)
            frame = scorer.frame(columns, rows)  # type: ignore[union-attr]
            content = scorer.encode(scorer.predict(frame, params))  # type: ignore[union-attr]
        except PayloadError as error:
            return error_reply(error.status, error.message)
        except Exception as error:  # the model raised: a server-side failure, say which model
            log.exception("scoring %s with %s v%s failed", key, deployment.model_name, deployment.version)
            return error_reply(500, f"{deployment.model_name} v{deployment.version} failed: {type(error).__name__}: {error}")
        rid = _request_id(None if request_id and self._key in request_id else request_id)  # never log the key
        self.inference_log.submit(
            ScoredBatch(
                key, deployment.colour, deployment.model_name, deployment.version, rid, time.time(), frame, content,
                scorer.identifiers(columns, rows),  # type: ignore[union-attr]
            )
        )
        return Reply(200, content, [*deployment.raw_headers, (b"x-request-id", rid.encode())])


    def score_routed(self, router: IndustryRouter, deployment_header: bytes | None, body: bytes,
                     request_id: bytes | None) -> Reply:
        """Each row by its ``industry_id`` to that industry's model, else to the fallback model; every
        answered row says which registered model and version scored it (``model_name``,
        ``model_version``). Each model's rows are predicted together and logged as its own batch."""
        plan = self.route_rows(router, deployment_header, body)
        return plan if isinstance(plan, Reply) else self.score_groups(router, plan, request_id)

    def route_rows(self, router: IndustryRouter, deployment_header: bytes | None, body: bytes) -> Routed | Reply:
        """The request's rows grouped by the deployment that scores them, or the error reply."""
        requested = deployment_header.decode("latin-1") if deployment_header else None
        try:
            columns, rows, params = parse(body)
            if len(rows) > self.config.max_rows:
                raise PayloadError(413, f"{len(rows)} rows exceed the limit of {self.config.max_rows} rows per request; split the batch")
            industries = column_values(columns, rows, catalog.INDUSTRY_ID) or [None] * len(rows)
            groups = _groups(router, requested, industries)
        except PayloadError as error:
            return error_reply(error.status, error.message)
        except RouteError as error:
            return error_reply(error.status, error.message)
        return Routed(columns, rows, params, groups)

    def score_groups(self, router: IndustryRouter, plan: Routed, request_id: bytes | None) -> Reply:
        """Predict each group of :meth:`route_rows` and answer the rows in the order sent."""
        columns, rows, params = plan.columns, plan.rows, plan.params
        answered: list[bytes] = [b""] * len(rows)  # each row's record, encoded
        rid = _request_id(None if request_id and self._key in request_id else request_id)  # never log the key
        batches = []
        for deployment, positions in plan.groups:
            scorer = deployment.scorer
            whole = len(positions) == len(rows)
            part = rows if whole else [rows[i] for i in positions]
            named = {"model_name": deployment.model_name, "model_version": deployment.version}
            try:
                frame = scorer.frame(columns, part)  # type: ignore[union-attr]
                content, encoded = scorer.encode_tagged(scorer.predict(frame, params), named)  # type: ignore[union-attr]
                if encoded is None:
                    records = loads(content)
                    if not isinstance(records, list):
                        raise ValueError(f"returned no records for {len(positions)} rows")
                    encoded = [dumps(_named(record, named)) for record in records]
                if len(encoded) != len(positions):
                    raise ValueError(f"returned {len(encoded)} records for {len(positions)} rows")
            except PayloadError as error:
                return error_reply(error.status, error.message)
            except Exception as error:  # the model raised: a server-side failure, say which model
                log.exception("scoring %s with %s v%s failed", router.key, deployment.model_name, deployment.version)
                return error_reply(500, f"{deployment.model_name} v{deployment.version} failed: {type(error).__name__}: {error}")
            if whole:
                answered = encoded
            else:
                for i, record in zip(positions, encoded):
                    answered[i] = record
            # the fallback's rows are the global model's predictions: logged under its endpoint, so
            # its monitoring sees every row it scored
            fallback = router.fallback
            by_fallback = fallback is not None and any(deployment is d for d in fallback.deployments.values())
            endpoint = fallback.key if by_fallback else router.key
            batches.append(ScoredBatch(
                endpoint, deployment.colour, deployment.model_name, deployment.version, rid, time.time(), frame, content,
                scorer.identifiers(columns, part),  # type: ignore[union-attr]
            ))
        for batch in batches:  # only once every group scored: a failed request logs nothing
            self.inference_log.submit(batch)
        return Reply(200, b"[" + b",".join(answered) + b"]", [(b"x-request-id", rid.encode())])


def _named(record: Any, named: dict[str, str]) -> dict[str, Any]:
    """A routed row's record with the model that scored it; a plain value is kept under ``prediction``."""
    if isinstance(record, dict):
        record.update(named)
        return record
    return {"prediction": record, **named}


def _groups(router: IndustryRouter, requested: str | None, industries: list) -> list[tuple[Deployment, list[int]]]:
    """(deployment, positions of its rows), in the order each deployment is first needed. Each
    distinct industry is routed once; when every row goes to one deployment (the usual request,
    one tenant's deals of one industry) no per-row work is left."""
    keys = [None if value is None else str(value) for value in industries]
    chosen = {key: router.route(requested, key) for key in dict.fromkeys(keys)}
    if len({d.path for d in chosen.values()}) == 1:
        return [(next(iter(chosen.values())), list(range(len(keys))))]
    groups: dict[str, tuple[Deployment, list[int]]] = {}
    for i, key in enumerate(keys):
        deployment = chosen[key]
        groups.setdefault(deployment.path, (deployment, []))[1].append(i)
    return list(groups.values())


@dataclass
class Routed:
    """A routing endpoint's request, parsed: the rows, grouped by the deployment that scores them."""

    columns: list[str] | None
    rows: list
    params: dict[str, Any] | None
    groups: list[tuple[Deployment, list[int]]]  # (deployment, positions of its rows in the request)


def check_industry(key: str, deployment: Deployment, columns: list[str] | None, rows: list) -> None:
    """An industry model answers for its own industry only: rows whose ``industry_id`` names
    another industry are refused (a 422 naming the column and value), not scored by the wrong model."""
    values = column_values(columns, rows, catalog.INDUSTRY_ID)
    if values is None:
        return
    for i, value in enumerate(values):
        if value is not None and str(value) != deployment.industry:
            raise PayloadError(
                422,
                f"column {catalog.INDUSTRY_ID!r} row {i}: industry {value!r} has no model on endpoint {key!r}, "
                f"which serves {deployment.model_name} v{deployment.version} (industry {deployment.industry!r}); "
                f"score it with risk_scoring_global or deploy {catalog.registered_name('risk_scoring', str(value))}",
            )


def _request_id(sent: bytes | None) -> str:
    """The client's ``x-request-id`` when it is a short printable token, else a new one."""
    if sent and len(sent) <= 128:
        text = sent.decode("latin-1")
        if text.isprintable() and text.isascii():
            return text
    return uuid.uuid4().hex


class BodyTooLarge(Exception):
    pass


class ScoringFastPath:
    """ASGI: ``POST /score/<key>`` straight to the service; everything else (and lifespan) to FastAPI."""

    def __init__(self, app: FastAPI, service: ScoringService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(SCORE_PREFIX):
            await self.app(scope, receive, send)
            return
        authorization = deployment = length = request_id = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"azureml-model-deployment":
                deployment = value
            elif name == b"x-request-id":
                request_id = value
        key = scope["path"][len(SCORE_PREFIX) :]
        reply = self.service.preflight(key, authorization, length)
        if reply is None:
            limit = self.service.config.max_body_bytes
            try:
                body = await _receive_body(receive, limit)
            except BodyTooLarge:
                reply = error_reply(413, f"body exceeds the limit of {limit} bytes")
            else:
                if body is None:  # the client went away
                    return
                reply = await self.service.score_async(key, deployment, body, request_id)
        reply = self.service.redacted(reply)
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [_JSON, (b"content-length", str(len(reply.body)).encode()), *reply.headers],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})


async def _receive_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def create_app(
    config: ServeConfig, *, live: LiveEndpoints | None = None, inference_log: InferenceLog | None = None
) -> ScoringFastPath:
    """The ASGI application uvicorn runs (FastAPI behind the scoring fast path)."""
    live = live or LiveEndpoints(config.state_path, poll_seconds=config.poll_seconds)
    inference_log = inference_log or InferenceLog(
        config.lake, flush_rows=config.log_flush_rows, flush_seconds=config.log_flush_seconds
    )
    service = ScoringService(config, live, inference_log)
    state_id = state_mod.state_id(config.state_path)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        live.refresh()
        live.start()
        inference_log.start()
        log.info("serving %d endpoint(s) at %s (state revision %d)", len(live.endpoints), config.base_url, live.revision)
        try:
            yield
        finally:
            live.stop()
            inference_log.close()

    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from the installed package, not a CDN
    app = FastAPIOffline(
        title="salesrisk endpoints",
        version="1",
        description=(
            "Local stand-in for the Azure ML managed online endpoints of the sales-risk models. "
            "One endpoint per key; each has deployments `blue` and `green` and a traffic split. "
            "Send `Authorization: Bearer <key>`; the optional header `azureml-model-deployment: "
            "<colour>` targets one deployment whatever its traffic. `POST /score/risk_scoring_industry` "
            "routes each row by its `industry_id` to that industry's `risk-scoring-{industry}` model and "
            "scores any other industry with `risk_scoring_global`; each answered row carries `model_name` and "
            "`model_version`. `/score/risk_scoring_industry/<industry>` is one industry's own slot (rows of "
            "another industry are refused there with 422)."
        ),
        lifespan=lifespan,
    )
    app.state.service = service

    @app.post("/score/{key}", summary="Score rows with the endpoint's live deployment", openapi_extra=_SCORE_OPENAPI,
              response_class=Response)
    async def score(key: str, request: Request, _: HTTPAuthorizationCredentials | None = Depends(BEARER)) -> Response:
        headers = request.headers
        reply = service.preflight(key, _raw(headers.get("authorization")), _raw(headers.get("content-length")))
        if reply is None:
            try:
                body = await _receive_body(request.receive, config.max_body_bytes)
            except BodyTooLarge:
                body, reply = b"", error_reply(413, f"body exceeds the limit of {config.max_body_bytes} bytes")
            if reply is None:
                reply = await service.score_async(
                    key, _raw(headers.get(DEPLOYMENT_HEADER)), body or b"", _raw(headers.get("x-request-id"))
                )
        reply = service.redacted(reply)
        return Response(reply.body, status_code=reply.status, media_type="application/json",
                        headers={k.decode(): v.decode() for k, v in reply.headers})

    @app.get("/health", summary="Liveness, and the state revision the server has applied")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "revision": live.revision, "state_id": state_id}

    @app.get(
        "/endpoints",
        summary="Each endpoint's deployments, versions and traffic, with the input columns, types, "
        "parameters, output columns (and the units of top_factors) and a request example of each deployment",
    )
    async def endpoints(credentials: HTTPAuthorizationCredentials | None = Depends(BEARER)) -> Response:
        sent = f"{credentials.scheme} {credentials.credentials}".encode("latin-1") if credentials else None
        if not service.authorised(sent):
            reply = error_reply(401, "missing or wrong key: send 'Authorization: Bearer <endpoint key>'", _UNAUTHORISED)
            return Response(reply.body, status_code=401, media_type="application/json",
                            headers={k.decode(): v.decode() for k, v in reply.headers})
        current = live.endpoints
        empty = {"traffic": {}, "live": None, "deployments": {}}
        listing = {
            key: {"scoring_url": f"{config.base_url}/score/{key}", **(current[key].describe() if key in current else empty)}
            for key in catalog.ENDPOINT_KEYS
        }
        return Response(dumps({"revision": live.revision, "endpoints": listing}), media_type="application/json")

    return ScoringFastPath(app, service)


def _raw(value: str | None) -> bytes | None:
    return value.encode("latin-1") if value is not None else None


# The OpenAPI security scheme of the key; the key itself is compared in ScoringService.authorised
# (constant time), because the scoring fast path checks it without FastAPI.
BEARER = HTTPBearer(
    scheme_name="endpointKey",
    description="The endpoint key (SALESRISK_ENDPOINT_KEY, or the generated key under SALESRISK_HOME)",
    auto_error=False,
)
_EXAMPLE_ROW: dict[str, float] = {
    "amount": 42000.0,
    "probability": 0.45,
    "days_to_close": 30.0,
    "stage_encoded": 2.0,
    "industry_encoded": 1.0,
    "days_since_last_activity": 5.0,
    "activity_count_30d": 7.0,
    "stakeholder_count": 3.0,
}
assert set(_EXAMPLE_ROW) == set(catalog.WIN_PROBABILITY_FEATURES) == set(catalog.RISK_SCORING_FEATURES)
_FACTOR = {
    "type": "object",
    "required": ["feature", "value", "contribution"],
    "properties": {
        "feature": {"type": "string", "description": "Input column name"},
        "value": {"description": "The row's value of that column, as the model saw it (null when missing)"},
        "contribution": {
            "type": "number",
            "description": "Signed SHAP contribution. win_probability: log-odds of a win (before calibration); "
            "risk_scoring_*: risk-score points (units of target_risk). Positive raises the prediction. "
            "/endpoints states each deployed model's units.",
        },
    },
}
_ERROR = {"content": {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}}}}}}
_SCORE_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": DEPLOYMENT_HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "string", "enum": ["blue", "green"]},
            "description": "Score with this deployment regardless of the traffic split (as on Azure ML).",
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {
                            "type": "object",
                            "title": "Azure ML input_data (split)",
                            "required": ["input_data"],
                            "properties": {
                                "params": {
                                    "type": "object",
                                    "description": "Passed to the model's predict. {\"top_factors\": false} returns "
                                    "the prediction alone (win_probability, risk_scoring_*), without the SHAP factors.",
                                    "properties": {"top_factors": {"type": "boolean", "default": True}},
                                },
                                "input_data": {
                                    "type": "object",
                                    "required": ["columns", "data"],
                                    "properties": {
                                        "columns": {"type": "array", "items": {"type": "string"}},
                                        "data": {"type": "array", "items": {"type": "array", "items": {}}},
                                    },
                                }
                            },
                        },
                        {"type": "array", "title": "records", "items": {"type": "object"}},
                    ]
                },
                "examples": {
                    "win_probability or risk_scoring_global": {
                        "summary": "One open deal, with top_factors (the default)",
                        "value": {"input_data": {"columns": list(_EXAMPLE_ROW), "data": [list(_EXAMPLE_ROW.values())]}},
                    },
                    "without top_factors": {
                        "summary": "The prediction alone",
                        "value": {
                            "input_data": {"columns": list(_EXAMPLE_ROW), "data": [list(_EXAMPLE_ROW.values())]},
                            "params": {"top_factors": False},
                        },
                    },
                },
            }
        },
    },
    "responses": {
        "200": {
            "description": "The model's output, one JSON object per output row (GET /endpoints lists each "
            "deployed model's output columns)",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "win_probability": {"type": "number", "description": "Calibrated probability of a win"},
                                "risk_score": {"type": "number"},
                                "top_factors": {
                                    "type": "array",
                                    "items": _FACTOR,
                                    "description": "The three largest contributions by size, largest first",
                                },
                            },
                            "additionalProperties": True,
                        },
                    }
                }
            },
        },
        "400": {"description": "Malformed body", **_ERROR},
        "401": {"description": "Missing or wrong key", **_ERROR},
        "404": {"description": "Unknown endpoint or deployment", **_ERROR},
        "413": {"description": "Body or row count over the limit", **_ERROR},
        "422": {"description": "Columns or values do not match the model's signature", **_ERROR},
        "503": {"description": "Nothing deployed, or the deployment failed to load", **_ERROR},
    },
}
