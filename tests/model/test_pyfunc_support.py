"""The pyfunc saving helpers every trainer uses: pinned requirements and a forgiving input schema."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pandas as pd
import pytest

from models import pyfunc_support


def test_bare_names_are_pinned_to_the_installed_version_and_specifiers_pass_through():
    pinned = pyfunc_support.pinned(["catboost", "torch==2.13.0", " "])
    assert pinned == [f"catboost=={metadata.version('catboost')}", "torch==2.13.0"]
    with pytest.raises(ValueError, match="not-a-real-package"):
        pyfunc_support.pinned(["not-a-real-package"])


def test_requirements_hold_the_core_once_each():
    requirements = pyfunc_support.pip_requirements(["catboost", "scikit-learn"])
    names = [r.split("==")[0] for r in requirements]
    assert len(names) == len(set(names))
    assert {"mlflow", "pandas", "polars", "scikit-learn", "catboost"} <= set(names)
    assert all("==" in r for r in requirements)


def test_code_paths_are_the_project_packages():
    assert [p.rsplit("/", 1)[-1] for p in pyfunc_support.code_paths()] == ["models", "salesrisk"]


def test_numeric_columns_accept_ints_floats_and_nan_strings_stay_strings():
    from mlflow.models.utils import _enforce_schema  # what pyfunc.predict runs before the model

    schema = pyfunc_support.input_schema(pd.DataFrame({"n": [1, 2], "f": [0.5, 1.0], "s": ["a", "b"]}))
    assert [c.to_dict()["type"] for c in schema.inputs] == ["any", "any", "string"]
    for frame in (
        pd.DataFrame({"n": [1.5, np.nan], "f": [1, 2], "s": ["a", None]}),
        pd.DataFrame({"n": [3, 4], "f": [np.nan, 2.0], "s": ["x", "y"], "extra": [0, 0]}),
    ):
        _enforce_schema(frame, schema)
    with pytest.raises(Exception, match="n"):
        _enforce_schema(pd.DataFrame({"f": [1.0], "s": ["a"]}), schema)
