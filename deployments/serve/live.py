"""What the server is serving right now, kept in step with the endpoint state file.

A watcher thread polls the state file's signature; on a change it loads every model version the
new state names that is not loaded yet (fully, off the request path), then replaces one reference.
A request reads that reference once, so it finishes on the models it started with: a promotion or
rollback never fails a request in flight, and moving traffic between loaded colours is instant.
"""

from __future__ import annotations

import gc
import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployments.local import state as state_mod
from deployments.serve.scoring import Scorer
from salesrisk import catalog

log = logging.getLogger("salesrisk.serve")

DEPLOYMENT_HEADER = "azureml-model-deployment"


class RouteError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Deployment:
    """One colour of one endpoint: a model version, loaded (``scorer``) or failed (``error``)."""

    colour: str
    model_name: str
    version: str
    path: str
    scorer: Scorer | None
    error: str | None = None
    raw_headers: tuple[tuple[bytes, bytes], ...] = ()  # response headers naming it, pre-encoded
    industry: str | None = None  # the industry of a risk-scoring-{industry} model on risk_scoring_industry


@dataclass(frozen=True)
class Endpoint:
    key: str
    deployments: Mapping[str, Deployment]
    traffic: Mapping[str, int]
    live: Deployment | None  # set when one colour takes all the traffic

    def route(self, requested: str | None) -> Deployment:
        """The deployment named by the ``azureml-model-deployment`` header, else one by traffic."""
        if requested:
            chosen = self.deployments.get(requested)
            if chosen is None:
                raise RouteError(
                    404, f"endpoint {self.key!r} has no deployment {requested!r}; it has {sorted(self.deployments)}"
                )
        elif self.live is not None:
            chosen = self.live
        else:
            weighted = [(c, w) for c, w in self.traffic.items() if w > 0 and c in self.deployments]
            if not weighted:
                raise RouteError(503, f"endpoint {self.key!r} has no deployment taking traffic; deploy a model first")
            colours, weights = zip(*weighted)
            chosen = self.deployments[random.choices(colours, weights)[0]]
        if chosen.scorer is None:
            raise RouteError(
                503, f"deployment {chosen.colour!r} of endpoint {self.key!r} "
                f"({chosen.model_name} v{chosen.version}) is not loaded: {chosen.error}"
            )
        return chosen

    def describe(self) -> dict[str, Any]:
        live = max(self.traffic.items(), key=lambda kv: kv[1], default=(None, 0))
        return {
            "traffic": dict(self.traffic),
            "live": live[0] if live[1] > 0 else None,
            "deployments": {
                colour: {
                    "model_name": d.model_name,
                    "version": d.version,
                    "state": "ready" if d.scorer is not None else f"failed: {d.error}",
                    **(d.scorer.describe() if d.scorer is not None else {}),
                }
                for colour, d in sorted(self.deployments.items())
            },
        }


@dataclass(frozen=True)
class IndustryRouter:
    """An industry endpoint (``risk_scoring_industry``): each row goes to the live deployment of
    its ``industry_id``'s slot, and rows of any other industry (or without one) to the fallback
    endpoint's (``risk_scoring_global``). Built from the state on every change, like an Endpoint."""

    key: str
    industries: Mapping[str, Endpoint]  # industry id -> its slot endpoint
    fallback: Endpoint | None

    live = None  # never one deployment: ScoringService scores it row group by row group

    def route(self, requested: str | None, industry: str | None) -> Deployment:
        """The deployment that scores a row of ``industry``; the colour header, when sent, picks
        that colour of the industry's slot (and of the fallback)."""
        slot = self.industries.get(industry) if industry is not None else None
        if slot is not None and (slot.live is not None or any(w > 0 for w in slot.traffic.values()) or requested):
            return slot.route(requested)
        if self.fallback is None:
            raise RouteError(
                503, f"endpoint {self.key!r} has no model for industry {industry!r} and its fallback "
                f"{catalog.fallback_endpoint(self.key)!r} has no deployment; deploy one first"
            )
        return self.fallback.route(requested)

    def describe(self) -> dict[str, Any]:
        def serving(endpoint: Endpoint) -> dict[str, Any]:
            described = endpoint.describe()
            live = described["live"]
            return {"live": live, **(described["deployments"].get(live, {}) if live else {}),
                    "traffic": described["traffic"]}

        return {
            "traffic": {},
            "live": None,
            "deployments": {},
            "routing": f"each row by its {catalog.INDUSTRY_ID!r}: the industry's model, else the fallback",
            "industries": {industry: serving(ep) for industry, ep in sorted(self.industries.items())},
            "fallback": {"endpoint": catalog.fallback_endpoint(self.key),
                         **(serving(self.fallback) if self.fallback is not None else {"live": None})},
        }


def industry_of(key: str, model_name: str) -> str | None:
    """``tech`` for ``risk-scoring-tech`` deployed on slot ``risk_scoring_industry/tech`` (or on
    ``risk_scoring_industry`` itself, as deploys before industry slots did), else ``None``."""
    endpoint, _ = catalog.split_slot(key)
    if not catalog.is_industry_endpoint(endpoint):
        return None
    return catalog.industry_of_model(catalog.spec_of_endpoint(endpoint).model_id, model_name)


def with_routers(endpoints: dict[str, Endpoint]) -> dict[str, Endpoint | IndustryRouter]:
    """Add each industry endpoint's router over its slots, with its fallback endpoint. A model
    deployed on the industry endpoint itself (``endpoints.deploy("risk_scoring_industry", ...)``,
    as before slots existed) keeps being served alone while no slot is deployed."""
    routed: dict[str, Endpoint | IndustryRouter] = dict(endpoints)
    for spec in catalog.MODELS.values():
        key = spec.industry_endpoint_key
        if not key:
            continue
        slots = {}
        for name, endpoint in endpoints.items():
            parent, industry = catalog.split_slot(name)
            if parent == key and industry is not None:
                slots[industry] = endpoint
        fallback = endpoints.get(spec.endpoint_key)
        legacy = endpoints.get(key)  # a model deployed on the endpoint itself, not on a slot
        if legacy is not None and not slots:
            continue  # served as it was deployed: that one model, its own industry only (422 otherwise)
        industry = legacy.live.industry if legacy is not None and legacy.live is not None else None
        if industry is not None and industry not in slots:
            slots[industry] = legacy
        if slots or fallback is not None:
            routed[key] = IndustryRouter(key, slots, fallback)
    return routed


# The trainers' package, packed into every model folder (models/pyfunc_support.code_paths) and
# imported by each model's unpickling; this server imports it only through the models it loads.
MODEL_CODE_PACKAGE = "models"


def load_scorer(path: str) -> Scorer:
    return Scorer(load_model(path), path)


def load_model(path: str) -> Any:
    """``mlflow.pyfunc.load_model`` running the model on the code packed with it.

    MLflow puts a model's code folder first on ``sys.path``, but a package already imported is
    reused: a server holding blue and green ran every version on the code of the first model it
    loaded, so a model retrained after a code change behaved as the old code until a restart (and
    after one, as whichever colour loaded first). The trainers' package is taken out of
    ``sys.modules`` while the model loads, so the model imports its own copy (its classes and
    functions keep it), and put back as it was afterwards, so the next load starts clean and a
    process that imported the package itself (a test) keeps its own. The server's ``salesrisk``
    stays shared.
    """
    import sys

    import mlflow.pyfunc

    def ours() -> list[str]:
        return [n for n in sys.modules if n == MODEL_CODE_PACKAGE or n.startswith(MODEL_CODE_PACKAGE + ".")]

    before = {name: sys.modules.pop(name) for name in ours()}
    try:
        return mlflow.pyfunc.load_model(path)
    finally:
        for name in ours():
            del sys.modules[name]
        sys.modules.update(before)


def settle_heap() -> None:
    """Collect the models just replaced, then exempt everything now loaded from the garbage
    collector's full passes (``gc.freeze``).

    Why: the loaded models, MLflow, pandas and torch are about half a million tracked objects. Left
    in the oldest generation, each full collection walks them all: 270 ms on 2 cores, triggered
    every 40-60 requests of 1,000 rows with ``top_factors`` (the p99 of those requests). Frozen,
    a full pass walks only what requests left behind. Unfreezing first lets the collection free
    the replaced models' reference cycles, so a redeploy does not leak them. The price is one such
    walk, on the watcher thread, each time the set of loaded models changes.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class LiveEndpoints:
    """The endpoints as last read from the state file; :attr:`endpoints` is swapped, never mutated."""

    def __init__(
        self,
        path: Path,
        *,
        poll_seconds: float = 0.2,
        loader: Callable[[str], Scorer] = load_scorer,
    ) -> None:
        self.path = path
        self.poll_seconds = poll_seconds
        self.loader = loader
        self.endpoints: dict[str, Endpoint | IndustryRouter] = {}
        self.revision = 0
        self._signature: tuple[int, int, int] | None = None
        self._scorers: dict[str, Scorer] = {}  # model path -> loaded scorer, reused across revisions
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Apply the state file if it changed since the last call; return whether it did."""
        signature = state_mod.signature(self.path)
        if signature == self._signature:
            return False
        try:
            state = state_mod.load(self.path)
        except state_mod.StateError:
            log.exception("ignoring an unreadable endpoint state; still serving revision %d", self.revision)
            self._signature = signature
            return False
        scorers: dict[str, Scorer] = {}
        endpoints = with_routers({key: self._build(key, ep, scorers) for key, ep in state.endpoints.items()})
        self.endpoints = endpoints  # the swap: one reference assignment
        models_changed = scorers.keys() != self._scorers.keys()
        self._scorers = scorers
        self._signature = signature
        self.revision = state.revision
        if models_changed:  # a traffic move between loaded colours leaves the heap as it was
            settle_heap()
        log.info("serving state revision %d", state.revision)
        return True

    def _build(self, key: str, ep: state_mod.EndpointState, scorers: dict[str, Scorer]) -> Endpoint:
        deployments = {}
        for colour, slot in ep.deployments.items():
            scorer, error = scorers.get(slot.path) or self._scorers.get(slot.path), None
            if scorer is None:
                try:
                    scorer = self.loader(slot.path)
                    log.info("loaded %s v%s for %s/%s", slot.model_name, slot.version, key, colour)
                except Exception as exc:  # a broken model must not take the server down
                    log.exception("loading %s v%s for %s/%s failed", slot.model_name, slot.version, key, colour)
                    error = f"{type(exc).__name__}: {exc}"
            if scorer is not None:
                scorers[slot.path] = scorer
            deployments[colour] = Deployment(
                colour=colour,
                model_name=slot.model_name,
                version=slot.version,
                path=slot.path,
                scorer=scorer,
                error=error,
                industry=industry_of(key, slot.model_name),
                raw_headers=(
                    (DEPLOYMENT_HEADER.encode(), colour.encode()),
                    (b"x-model-name", slot.model_name.encode()),
                    (b"x-model-version", slot.version.encode()),
                ),
            )
        traffic = {c: w for c, w in ep.traffic.items() if c in deployments}
        full = [c for c, w in traffic.items() if w >= 100]
        live = deployments[full[0]] if len(full) == 1 and sum(traffic.values()) == traffic[full[0]] else None
        return Endpoint(key=key, deployments=deployments, traffic=traffic, live=live)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="state-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # keep watching; the next change may be readable
                log.exception("applying the endpoint state failed")
