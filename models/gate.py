"""Champion/challenger gate: may a candidate model version replace the one now serving?

Pure arithmetic on two metric dicts scored on the same fresh held-out data, so the evaluate flow,
a notebook and a test reach the same decision. Each metric's direction comes from the runbook's
metric names; the tolerance is how much worse (in the metric's own units) a candidate may be and
still pass, because two fits on the same data differ by noise and a gate that blocks on noise
blocks every retrain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from salesrisk import catalog

# Every model's gated metrics, from the specs (salesrisk.catalog.MODELS[...].scores): the defaults
# when a caller names no directions or tolerances. The flows pass the one model's own.
LOWER_IS_BETTER: frozenset[str] = frozenset(
    m.name for spec in catalog.MODELS.values() for m in spec.scores if m.gated and not m.higher_is_better
)
HIGHER_IS_BETTER: frozenset[str] = frozenset(
    m.name for spec in catalog.MODELS.values() for m in spec.scores if m.gated and m.higher_is_better
)
DEFAULT_TOLERANCES: dict[str, float] = {
    m.name: m.tolerance for spec in catalog.MODELS.values() for m in spec.scores if m.gated and m.tolerance
}


@dataclass
class GateDecision:
    """What the gate decided and why; ``reason`` is one line per metric, fit for a tag or artifact."""

    promote: bool
    reason: str
    candidate: dict
    champion: dict | None
    forced: bool
    # A segment's model is also judged against the model that would otherwise answer its rows
    # (an industry model against the global one): that model's name and scores on the same rows.
    baseline: dict | None = None
    baseline_name: str | None = None
    candidate_vs_baseline: dict | None = None  # the candidate's scores on the baseline's rows

    def as_tags(self, prefix: str = "gate") -> dict[str, str]:
        """The decision as MLflow model-version tags (strings only)."""
        tags = {
            f"{prefix}.promote": str(self.promote).lower(),
            f"{prefix}.forced": str(self.forced).lower(),
            f"{prefix}.reason": self.reason,
        }
        for side, metrics in (("candidate", self.candidate), ("champion", self.champion or {})):
            for name, value in metrics.items():
                tags[f"{prefix}.{side}.{name}"] = repr(float(value))
        return tags

    def to_markdown(self) -> str:
        """A table of both scores and the verdict, e.g. for a Prefect markdown artifact."""
        names = sorted(set(self.candidate) | set(self.champion or {}))
        lines = [
            f"**{'promote' if self.promote else 'block'}**{' (forced)' if self.forced else ''}",
            "",
            "| metric | direction | candidate | champion |",
            "|---|---|---|---|",
        ]
        for name in names:
            champ = (self.champion or {}).get(name)
            lines.append(
                f"| {name} | {_direction_label(name)} | {_fmt(self.candidate.get(name))} | {_fmt(champ)} |"
            )
        lines += ["", *(f"- {line}" for line in self.reason.splitlines())]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return asdict(self)


def direction(metric: str, directions: Mapping[str, int] | None = None) -> int:
    """+1 when higher is better, -1 when lower is better; ValueError for a name the gate cannot judge.

    ``directions`` (a model spec's own) come first, then every catalogued model's."""
    if directions and metric in directions:
        return directions[metric]
    if metric in HIGHER_IS_BETTER:
        return 1
    if metric in LOWER_IS_BETTER:
        return -1
    raise ValueError(
        f"metric {metric!r} has no known direction; known: "
        f"{', '.join(sorted(LOWER_IS_BETTER | HIGHER_IS_BETTER))}"
    )


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    tolerances: dict[str, float] | None = None,
    force: bool = False,
    directions: Mapping[str, int] | None = None,
) -> GateDecision:
    """Promote when there is no champion, or when no shared metric is worse by more than its tolerance.

    ``tolerances`` override :data:`DEFAULT_TOLERANCES` metric by metric (absolute, >= 0);
    ``directions`` (metric -> +1/-1, e.g. ``spec.directions``) name metrics the catalog does not.

    Metrics without a known direction are reported and left out of the verdict; a candidate with a
    missing or non-finite value for a metric the champion has is blocked (it cannot show it is not
    worse). ``force`` promotes regardless and the reason says what the gate would have done.
    """
    tolerances = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    bad_tol = {k: v for k, v in tolerances.items() if not _finite(v) or v < 0}
    if bad_tol:
        raise ValueError(f"tolerances must be finite and >= 0, got {bad_tol}")
    cand = {k: float(v) for k, v in candidate.items()}
    champ = {k: float(v) for k, v in champion.items()} if champion is not None else None

    passed, lines = _judge(cand, champ, tolerances, directions or {})
    if force:
        verdict = "promote" if passed else "block"
        lines.insert(0, f"forced promotion: the gate alone would {verdict}")
    return GateDecision(
        promote=passed or force,
        reason="\n".join(lines),
        candidate=cand,
        champion=champ,
        forced=force,
    )


def _judge(
    cand: Mapping[str, float],
    champ: Mapping[str, float] | None,
    tolerances: Mapping[str, float],
    directions: Mapping[str, int],
) -> tuple[bool, list[str]]:
    if champ is None:
        return True, ["no champion serving: promote the first version"]
    lines: list[str] = []
    passed = True
    judged = 0
    for name in sorted(champ):
        try:
            sign = direction(name, directions)
        except ValueError:
            lines.append(f"{name}: no known direction, not judged")
            continue
        old = champ[name]
        new = cand.get(name)
        if new is None or not _finite(new):
            passed = False
            lines.append(f"{name}: candidate has no finite value ({new}) -> block")
            continue
        if not _finite(old):
            lines.append(f"{name}: champion has no finite value ({old}), not judged")
            continue
        judged += 1
        tol = tolerances.get(name, 0.0)
        worse_by = (old - new) * sign  # > 0 means the candidate is worse
        label = "higher is better" if sign > 0 else "lower is better"
        if worse_by > tol:
            passed = False
            verdict = f"worse by {worse_by:.6g} > tolerance {tol:g} -> block"
        elif worse_by > 0:
            verdict = f"worse by {worse_by:.6g}, within tolerance {tol:g}"
        else:
            verdict = "not worse"
        lines.append(f"{name} ({label}): candidate {new:.6g} vs champion {old:.6g}: {verdict}")
    for name in sorted(set(cand) - set(champ)):
        lines.append(f"{name}: champion has no value, not judged")
    if judged == 0 and passed:
        passed = False
        lines.append("no metric shared by candidate and champion could be compared -> block")
    return passed, lines


def _direction_label(name: str) -> str:
    if name in HIGHER_IS_BETTER:
        return "higher is better"
    if name in LOWER_IS_BETTER:
        return "lower is better"
    return "unknown"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"
