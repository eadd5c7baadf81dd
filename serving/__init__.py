"""Model serving: the TF Serving-protocol model server, its clients, the recommender."""

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)

from serving.client import GrpcClient, ModelServerError, RestClient
from serving.fresh import FreshTitles
from serving.model_server import ModelRegistry, ModelServer, ServingError, write_models_config
from serving.recommender import Recommendation, Recommender, UnknownUserError, load_catalogue
from serving.store import ProfileStore, load_store

__all__ = ["FreshTitles", "GrpcClient", "ModelRegistry", "ModelServer", "ModelServerError",
           "ProfileStore",
           "Recommendation", "Recommender", "RestClient", "ServingError", "UnknownUserError",
           "load_catalogue", "load_store", "write_models_config"]
