"""Model serving: the TF Serving-protocol model server, its clients, the recommender, the
recommendation service, and profile updates from the event queue.

Names are imported on first use: the service process loads the clients and the recommender,
never the model server's TensorFlow runtime unless it embeds one.
"""

from recs._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "GrpcClient": "serving.grpc_client",
    **{name: "serving.client" for name in ("ModelServerError", "RestClient")},
    "ModelServingConfig": "serving.config", "ServiceConfig": "serving.config",
    "FreshTitles": "serving.fresh",
    **{name: "serving.model_server" for name in ("ModelRegistry", "ModelServer",
                                                 "ServingError")},
    **{name: "serving.recommender" for name in ("Recommendation", "Recommender", "ServedList",
                                                "UnknownUserError", "load_catalogue")},
    **{name: "serving.store" for name in ("ProfileStore", "RedisProfileStore", "load_store",
                                          "open_store")},
})
