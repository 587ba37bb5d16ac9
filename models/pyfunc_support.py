"""Saving a trainer's model as an MLflow pyfunc that loads anywhere, the same way for every trainer.

Why one helper: MLflow's defaults are wrong for this project in three ways, measured here. Left to
infer requirements it imports the model and may try the network; without ``code_paths`` the pickled
``PythonModel`` only loads where this project happens to be installed (not on an Azure ML
endpoint); and without a signature nothing tells the serving side which columns the model needs.
Every trainer calls :func:`save_pyfunc`, so all five models carry the same guarantees.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger("salesrisk.pyfunc")

# What any of our pyfunc models imports when it is loaded: the packed ``models`` and ``salesrisk``
# packages (see :func:`code_paths`) import these at module level.
CORE_REQUIREMENTS: tuple[str, ...] = (
    "mlflow",
    "cloudpickle",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "scipy",
    "polars",
    "fsspec",
    "pydantic",
    "pydantic-settings",
)

_PACKAGES: tuple[str, ...] = ("models", "salesrisk")
_SPECIFIER = re.compile(r"[<>=!~;@\[ ]")


def pinned(names: Iterable[str]) -> list[str]:
    """``name==installed-version`` for each bare name; names that carry a specifier pass through.

    Pinning to what is installed (not to a range) makes the serving environment the one the model
    was trained and tested in.
    """
    out: list[str] = []
    for name in names:
        name = name.strip()
        if not name:
            continue
        if _SPECIFIER.search(name):
            out.append(name)
            continue
        try:
            out.append(f"{name}=={importlib_metadata.version(name)}")
        except importlib_metadata.PackageNotFoundError as error:
            raise ValueError(f"pip requirement {name!r} is not installed in this environment") from error
    return out


def pip_requirements(extra: Sequence[str] = ()) -> list[str]:
    """The core requirements plus ``extra`` (e.g. ``["catboost"]``), pinned, without duplicates."""
    seen: dict[str, str] = {}
    for requirement in pinned([*CORE_REQUIREMENTS, *extra]):
        key = _SPECIFIER.split(requirement, 1)[0].lower().replace("_", "-")
        seen[key] = requirement  # a later, more specific entry wins
    return list(seen.values())


def code_paths() -> list[str]:
    """The ``models`` and ``salesrisk`` package folders, packed into the model so it loads on a
    machine where this project is not installed (MLflow puts them first on ``sys.path``)."""
    return [str(Path(importlib.import_module(name).__file__).parent) for name in _PACKAGES]


def _importable(python_model: Any) -> Any:
    """Rebind a ``PythonModel`` defined in ``__main__`` to its importable module.

    ``python -m models.x`` runs the trainer as ``__main__``; cloudpickle would then pickle the
    class by value together with the module's globals, and the model would not load elsewhere.
    """
    cls = type(python_model)
    if cls.__module__ != "__main__":
        return python_model
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is None or not spec.name:
        raise ValueError(
            f"{cls.__name__} is defined in a script; define it in an importable module "
            "(run trainers as python -m models.<name>)"
        )
    python_model.__class__ = getattr(importlib.import_module(spec.name), cls.__name__)
    return python_model


def input_schema(frame: pd.DataFrame) -> Any:
    """The input schema: every column by name and required; numeric columns typed ``Any``.

    MLflow refuses int64 input for a ``double`` column and NaN-bearing floats for a ``long`` one,
    and JSON over HTTP turns 5.0 into 5: either strict type would reject valid rows. The models cast
    numeric features to float themselves, so the schema pins names and string types only.
    """
    from mlflow.models import infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    numeric = set(numeric_inputs(frame))
    typed = [name for name in frame.columns if str(name) not in numeric]
    inferred = {spec.name: spec for spec in infer_signature(frame[typed]).inputs.inputs} if typed else {}
    return Schema([ColSpec(AnyType(), str(name)) if str(name) in numeric else inferred[str(name)] for name in frame.columns])


def numeric_inputs(frame: pd.DataFrame) -> list[str]:
    """The numeric input columns, saved in the model's metadata: the schema types them ``Any``
    (see :func:`input_schema`), so this is how a server knows to check and block them as numbers."""
    return [
        str(name)
        for name in frame.columns
        if pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(frame[name])
    ]


def save_pyfunc(
    model_dir: Path,
    python_model: Any,
    artifacts: dict[str, str],
    input_example: pd.DataFrame,
    extra_pip: Sequence[str] = (),
    *,
    output_example: pd.DataFrame | None = None,
    params: Any = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Save ``python_model`` (an ``mlflow.pyfunc.PythonModel``) with its ``artifacts`` at
    ``model_dir``, which must not exist yet.

    ``input_example`` is a few rows of the feature columns only; ``output_example`` (what
    ``predict`` returns for them) completes the signature when given. ``extra_pip`` names what this
    model needs beyond :data:`CORE_REQUIREMENTS` (bare names are pinned to the installed version).
    ``params`` (an ``mlflow.types.ParamSchema``) declares the predict parameters the model takes:
    MLflow's ``PyFuncModel.predict`` drops any parameter the signature does not declare.
    """
    import mlflow
    from mlflow.models import ModelSignature, infer_signature

    example = input_example.reset_index(drop=True)
    # the output schema inferred on its own (inferring it with the input would warn about ints)
    outputs = infer_signature(output_example).inputs if output_example is not None else None
    signature = ModelSignature(inputs=input_schema(example), outputs=outputs, params=params)
    mlflow.pyfunc.save_model(
        path=str(model_dir),
        python_model=_importable(python_model),
        artifacts=dict(artifacts),
        code_paths=code_paths(),
        pip_requirements=pip_requirements(extra_pip),
        signature=signature,
        input_example=example,
        metadata={**(metadata or {}), "numeric_inputs": numeric_inputs(example)},
    )
    log.info("saved pyfunc model to %s", model_dir)
