"""Where :data:`deployments.endpoints.BACKENDS` finds the ``azureml`` serving backend."""

from deployments.azureml.endpoints import AzureMLBackend

__all__ = ["AzureMLBackend"]
