"""One MLflow model that answers for a whole family: each row by its industry to that industry's
model, every other row to the global model, each answered row naming the model and version.

This is what an Azure ML managed online endpoint serves for ``risk_scoring_industry``: a managed
endpoint splits traffic between deployments by percentage, never by a row's content, and holds at
most 20 deployments, so per-row routing over thousands of industry models has to live inside one
model (docs/industry-models.md). The local endpoint server routes the same way over its slots.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from models.pyfunc_support import save_pyfunc
from salesrisk import catalog

ROUTING = "routing"  # the artifact naming each member
FALLBACK = "fallback"


def _member_key(industry: str) -> str:
    return f"industry-{industry}"


class IndustryRouterModel(mlflow.pyfunc.PythonModel):
    """Members are MLflow models saved inside the router (artifacts); ``routing.json`` names them."""

    def load_context(self, context: Any) -> None:
        routing = json.loads(Path(context.artifacts[ROUTING]).read_text())
        self.column = routing["column"]
        self.names = {k: (m["name"], str(m["version"])) for k, m in routing["members"].items()}
        self.models = {k: mlflow.pyfunc.load_model(context.artifacts[k]) for k in self.names}

    def member_of(self, industry: Any) -> str:
        key = _member_key(str(industry)) if industry is not None and not pd.isna(industry) else None
        return key if key in self.models else FALLBACK

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        industries = frame[self.column] if self.column in frame.columns else pd.Series([None] * len(frame), index=frame.index)
        members = [self.member_of(value) for value in industries]
        parts = []
        for key in dict.fromkeys(members):
            rows = [i for i, m in enumerate(members) if m == key]
            model = self.models[key]
            inputs = frame.iloc[rows]
            schema = model.metadata.get_input_schema() if model.metadata else None
            if self.column in inputs.columns and (schema is None or self.column not in schema.input_names()):
                inputs = inputs.drop(columns=[self.column])
            output = model.predict(inputs.reset_index(drop=True), params=params) if params else model.predict(inputs.reset_index(drop=True))
            output = output.copy() if isinstance(output, pd.DataFrame) else pd.DataFrame({"prediction": list(output)})
            if len(output) != len(rows):
                raise ValueError(f"{self.names[key][0]} v{self.names[key][1]} returned {len(output)} rows for {len(rows)}")
            output["model_name"], output["model_version"] = self.names[key]
            output.index = rows
            parts.append(output)
        return pd.concat(parts).sort_index().reset_index(drop=True) if parts else pd.DataFrame()


def save_router(
    path: str | Path,
    industries: Mapping[str, tuple[str, str, str]],
    fallback: tuple[str, str, str],
    *,
    column: str = catalog.INDUSTRY_ID,
    input_example: pd.DataFrame | None = None,
) -> Path:
    """Save a router over ``industries`` (industry -> (registered name, version, MLflow model
    folder)) with ``fallback`` (the same triple) for every other row; returns the model folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    members = {FALLBACK: fallback, **{_member_key(catalog.check_industry_id(i)): m for i, m in industries.items()}}
    routing = path.parent / f"{path.name}-routing.json"
    routing.write_text(json.dumps({
        "column": column,
        "members": {key: {"name": name, "version": str(version)} for key, (name, version, _) in members.items()},
    }, indent=2, sort_keys=True))
    artifacts = {ROUTING: str(routing), **{key: str(folder) for key, (_, _, folder) in members.items()}}
    if input_example is None:  # the fallback's own example, one row per member's industry
        from mlflow.models import Model

        example = Model.load(fallback[2]).load_input_example(fallback[2])
        base = (example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)).head(1)
        input_example = pd.concat([base.assign(**{column: i}) for i in [*industries, "other"]], ignore_index=True)
    save_pyfunc(path, IndustryRouterModel(), artifacts, input_example, member_requirements(f for _, _, f in members.values()))
    return path


def member_requirements(folders: Iterable[str]) -> list[str]:
    """Every member's pip requirements (the router loads them all in one environment)."""
    found: dict[str, None] = {}
    for folder in folders:
        requirements = Path(folder, "requirements.txt")
        if requirements.exists():
            for line in requirements.read_text().splitlines():
                if line.strip() and not line.startswith(("#", "-")):
                    found[line.strip()] = None
    return list(found)
