"""Model serving: the TF Serving-protocol model server, its clients, the recommender, the
recommendation service, and profile updates from the event queue."""

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)

from serving.client import GrpcClient, ModelServerError, RestClient
from serving.config import ModelServingConfig, ServiceConfig
from serving.fresh import FreshTitles
from serving.model_server import ModelRegistry, ModelServer, ServingError
from serving.recommender import (Recommendation, Recommender, ServedList, UnknownUserError,
                                 load_catalogue)
from serving.store import ProfileStore, RedisProfileStore, load_store, open_store

__all__ = ["FreshTitles", "GrpcClient", "ModelRegistry", "ModelServer", "ModelServerError",
           "ModelServingConfig", "ProfileStore", "Recommendation", "Recommender",
           "RedisProfileStore", "RestClient", "ServedList", "ServiceConfig", "ServingError",
           "UnknownUserError", "load_catalogue", "load_store", "open_store"]
