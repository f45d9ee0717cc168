"""Python client of the AutoML job service: ``Client`` (one method per REST operation) and ``ApiError``."""

from automl_client.api import SETTLED, ApiError, Client

__all__ = ["SETTLED", "ApiError", "Client"]
__version__ = "0.1.0"
