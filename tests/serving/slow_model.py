"""A pyfunc (MLflow "model from code") whose predict can be made slow and held at a gate.

Files under ``SALESRISK_TEST_ROOT`` steer it from the test: ``slow-sleep`` holds seconds to sleep
per call; while ``slow-gate`` exists a call writes ``slow-started`` and waits for the gate to go.
"""

import os
import time
from pathlib import Path

import mlflow
import pandas as pd


class SlowModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        root = Path(os.environ["SALESRISK_TEST_ROOT"])
        sleep = root / "slow-sleep"
        if sleep.exists():
            time.sleep(float(sleep.read_text()))
        if (root / "slow-gate").exists():
            (root / "slow-started").write_text("1")
            deadline = time.monotonic() + 60
            while (root / "slow-gate").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return pd.DataFrame({"score": model_input.iloc[:, 0].astype(float) * 0 + 1.0})


mlflow.models.set_model(SlowModel())
