"""The win-probability model the serving benchmark deploys, logged as MLflow "model from code".

A CatBoost classifier behind a ``PythonModel`` that returns the win probability, as the trainer's
pyfunc does; kept as code (not a pickle) so ``mlflow models serve`` loads it the same way. It hands
CatBoost a float array in training column order (selecting columns only when they arrive in
another order): building a CatBoost pool from a pandas frame costs more than the prediction.
"""

import mlflow
import pandas as pd


class WinProbability(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from catboost import CatBoostClassifier

        self.model = CatBoostClassifier()
        self.model.load_model(context.artifacts["catboost"])
        self.features = list(self.model.feature_names_)
        # CatBoost's default (-1) predicts on every core; the benchmark's --model-threads sets it
        self.threads = int((getattr(context, "model_config", None) or {}).get("thread_count", -1))

    def predict(self, context, model_input, params=None):
        frame = model_input if list(model_input.columns) == self.features else model_input[self.features]
        probability = self.model.predict(frame.to_numpy(dtype="float64"), prediction_type="Probability",
                                         thread_count=self.threads)[:, 1]
        return pd.DataFrame({"win_probability": probability})


mlflow.models.set_model(WinProbability())
