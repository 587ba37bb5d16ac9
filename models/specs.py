"""Each model's behaviour bound to its spec: preparation, data contract, trainer, report plots.

``salesrisk.catalog.MODELS`` holds the data (names, keys, sources, metrics, flow parameters); this
registry binds the code to it, typed, so no layer finds a model's module by a string. The trainer
modules are imported on first use only: torch, CatBoost and NeuralProphet are slow to import, and
``python -m models.prepare`` needs none of them.

A new model is one :func:`register` call (see docs/adding-a-model.md).
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import polars as pl

from salesrisk import catalog
from salesrisk.catalog import ModelSpec


class TrainerModule(Protocol):
    """What a trainer module offers the flows: its command line trains, saves and logs the model
    (``main``); ``holdout`` and ``evaluate`` let the gate score any saved version on fresh rows."""

    def main(self, argv: Sequence[str] | None = None) -> int: ...

    def evaluate(self, predictor: Any, df: pl.DataFrame) -> dict[str, float]: ...


@dataclass(frozen=True)
class Trainer:
    """A model's trainer: ``python -m <module>`` locally and as an Azure ML command job."""

    module: str  # the command line's module (the Azure ML job runs the same one)
    load: Callable[[], TrainerModule]  # the module itself, imported on first use
    # The rows of a prepared frame the trainer never trained on, given its parameters (seed, ...).
    holdout_rows: Callable[[TrainerModule, pl.DataFrame, Mapping[str, Any]], pl.DataFrame] = (
        lambda module, df, params: module.holdout(df, int(params.get("seed", 42)))  # type: ignore[attr-defined]
    )
    # A column whose rows the trainer keeps together (its holdout is by group, not by time): the
    # gate then counts a group as seen when any of its rows was trained on (models.splits.unseen).
    group: str | None = None

    def holdout(self, df: pl.DataFrame, params: Mapping[str, Any]) -> pl.DataFrame:
        return self.holdout_rows(self.load(), df, params)

    def evaluate(self, predictor: Any, rows: pl.DataFrame) -> dict[str, float]:
        return self.load().evaluate(predictor, rows)

    def main(self, argv: Sequence[str] | None = None) -> int:
        return self.load().main(argv)


# (predictor, held-out rows, output folder, trainer arguments, training frame) -> PNG files
PlotFunction = Callable[[Any, pl.DataFrame, Path, argparse.Namespace, pl.DataFrame], list[Path]]


@dataclass(frozen=True)
class Report:
    plots: PlotFunction
    rows: str = "holdout"  # "holdout" (every held-out row; plots sample only what they draw) or "none"
    # The held-out rows the trainer's logged metrics are computed on (e.g. closed deals only), so
    # the figures in plot titles are the logged ones.
    scored: Callable[[pl.DataFrame], pl.DataFrame] | None = None


@dataclass(frozen=True)
class Prepared:
    """What a model's preparation hands back to ``models.prepare``."""

    frame: pl.DataFrame
    inputs: list[str]  # the source URIs it read, for messages
    checks: list[tuple[Any, str]] = field(default_factory=list)  # (rules, source) checked on the output
    real_rows: int | None = None  # rows before any synthetic top-up (None: all rows are real)


@dataclass(frozen=True)
class PrepareInputs:
    """The source tables of one preparation, already scoped to tenant and date."""

    model_id: str
    uris: Mapping[str, str]  # table -> URI
    scope: Any  # models.prepare.Scope
    top_up: bool
    seed: int
    partition_date: Any


PrepareFunction = Callable[[PrepareInputs], Prepared]
# (column names of the frame, feature columns or None for the model's default) -> rules
ContractFunction = Callable[[Sequence[str], Sequence[str] | None], tuple[Any, ...]]


@dataclass(frozen=True)
class ModelBinding:
    spec: ModelSpec
    prepare: PrepareFunction
    contract: ContractFunction
    trainer: Trainer
    report: Report | None = None
    default_features: tuple[str, ...] | None = ()  # None: every non-identifier column (auto)

    @property
    def model_id(self) -> str:
        return self.spec.model_id


_BINDINGS: dict[str, ModelBinding] = {}


def register(binding: ModelBinding) -> ModelBinding:
    """Add (or replace) a model: its spec joins ``catalog.MODELS`` and every layer sees it."""
    catalog.register(binding.spec)
    _BINDINGS[binding.model_id] = binding
    return binding


def unregister(model_id: str) -> None:
    catalog.unregister(model_id)
    _BINDINGS.pop(model_id, None)


@contextmanager
def registered(binding: ModelBinding) -> Iterator[ModelBinding]:
    """``register`` for the time of a block (tests)."""
    register(binding)
    try:
        yield binding
    finally:
        unregister(binding.model_id)


def get(model_id: str) -> ModelBinding:
    _builtin()
    try:
        return _BINDINGS[model_id]
    except KeyError:
        raise ValueError(f"unknown model id {model_id!r}; expected one of {sorted(catalog.MODELS)}") from None


def bindings() -> dict[str, ModelBinding]:
    _builtin()
    return {model_id: _BINDINGS[model_id] for model_id in catalog.MODELS if model_id in _BINDINGS}


# --- the five runbook models ---------------------------------------------------------------------


def _builtin() -> None:
    """Bind the catalog's five models once (on first use: models.prepare and models.contracts
    import this module, so binding at import time would be circular).

    A thread that asks while another binds waits for it: the flows' train steps of two models
    start in two threads at the same moment, and one must not find the bindings half made."""
    if _BUILTIN_READY:
        return
    with _BUILTIN_LOCK:
        if _BUILTIN_DONE:  # bound, or being bound by this very thread (an import below asked)
            return
        _BUILTIN_DONE.append(True)
        _bind_builtin()
        _BUILTIN_READY.append(True)


def _bind_builtin() -> None:
    from models import contracts
    from models import prepare as prep

    def reports() -> ModuleType:
        from models import reports as module

        return module

    def lazy(loader: Callable[[], ModuleType]) -> Callable[[], TrainerModule]:
        return loader  # type: ignore[return-value]

    def risk_scoring() -> ModuleType:
        from models import risk_scoring as module

        return module

    def win_probability() -> ModuleType:
        from models import win_probability as module

        return module

    def trajectory() -> ModuleType:
        from models import risk_trajectory as module

        return module

    def revenue() -> ModuleType:
        from models import revenue_forecast as module

        return module

    def anomaly() -> ModuleType:
        from models import anomaly as module

        return module

    specs = catalog.MODELS
    for binding in (
        ModelBinding(
            specs["risk_scoring"],
            prepare=prep.prepare_opportunities,
            contract=contracts.risk_score_rules,
            trainer=Trainer(
                "models.risk_scoring",
                lazy(risk_scoring),
                lambda module, df, params: module.holdout(  # type: ignore[attr-defined]
                    df, int(params.get("seed", 42)), industry_id=params.get("industry_id")
                ),
            ),
            report=Report(lambda *a: reports()._risk_scoring(*a[:4]),
                          scored=lambda rows: rows.filter(pl.col(catalog.RISK_TARGET).is_not_null())),
            default_features=catalog.RISK_SCORING_FEATURES,
        ),
        ModelBinding(
            specs["risk_trajectory"],
            prepare=prep.prepare_trajectories,
            contract=contracts.trajectory_rules,
            trainer=Trainer("models.risk_trajectory", lazy(trajectory), group=catalog.TRAJECTORY_ID),
            report=Report(lambda *a: reports()._risk_trajectory(*a[:4]), rows="none"),
            default_features=catalog.TRAJECTORY_FEATURES,
        ),
        ModelBinding(
            specs["win_probability"],
            prepare=prep.prepare_opportunities,
            contract=contracts.win_rules,
            trainer=Trainer("models.win_probability", lazy(win_probability)),
            report=Report(lambda *a: reports()._win_probability(*a[:4]),
                          scored=lambda rows: win_probability().training_rows(rows)),  # closed deals
            default_features=catalog.WIN_PROBABILITY_FEATURES,
        ),
        ModelBinding(
            specs["revenue_forecast"],
            prepare=prep.prepare_revenue,
            contract=contracts.revenue_rules,
            trainer=Trainer(
                "models.revenue_forecast",
                lazy(revenue),
                lambda module, df, params: module.holdout(  # type: ignore[attr-defined]
                    df, int(params.get("seed", 42)), horizon=params.get("horizon")
                ),
            ),
            report=Report(
                lambda predictor, rows, out, args, data: reports()._revenue_forecast(
                    predictor, rows, out, args, revenue().normalise(data)
                ),
            ),
        ),
        ModelBinding(
            specs["anomaly"],
            prepare=prep.prepare_anomaly,
            contract=contracts.anomaly_rules,
            trainer=Trainer("models.anomaly", lazy(anomaly)),
            report=Report(lambda *a: reports()._anomaly(*a[:4]), scored=_labelled_rows),
            default_features=None,
        ),
    ):
        _BINDINGS.setdefault(binding.model_id, binding)


_BUILTIN_DONE: list[bool] = []
_BUILTIN_READY: list[bool] = []
_BUILTIN_LOCK = threading.RLock()


def _labelled_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """F1 is scored on the labelled rows only (all rows when there is no label column)."""
    if catalog.ANOMALY_LABEL not in rows.columns:
        return rows
    return rows.filter(pl.col(catalog.ANOMALY_LABEL).is_not_null())
