"""Model serving, one runtime part a subpackage:

    types.py       the interfaces, declared once: PredictClient, ProfileStore,
                   CandidateSource, the model roles
    config.py      ServiceConfig: the service, its experiments and its limits
    http.py        the guarded HTTP stack both servers run on (limits, timeouts, TLS, the
                   bearer-token gate)
    security.py    tokens and TLS settings of both servers and their clients (off by
                   default)
    model_server/  a TF Serving-protocol model server: its config (shared with the
                   deployment), errors, registry, signatures, batching, the REST JSON codec
                   and router, gRPC, the server
    clients/       TF Serving's REST and gRPC clients, and an in-process one
    online/        one recommendation: policy (arms -> candidates -> list policy ->
                   fallback -> served log), status, experiments, exploration, fresh titles,
                   the recommender (profile -> retrieve -> rank), profile stores
    api/           the recommendation service's HTTP API
    consumer.py    profile updates from the event queue
    deploy.py      Kubernetes manifests
    app.py         the one place that wires the parts together

Names are imported on first use: the service process loads the clients and the recommender,
never the model server's TensorFlow runtime unless it embeds one.
"""

from recs._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "GrpcClient": "serving.clients.grpc_client",
    **{name: "serving.clients" for name in ("LocalClient", "ModelServerError", "RestClient")},
    "ModelServingConfig": "serving.model_server.config", "ServiceConfig": "serving.config",
    "FreshTitles": "serving.online.fresh",
    **{name: "serving.model_server" for name in ("ModelRegistry", "ModelServer",
                                                 "ServingError", "serve_models")},
    **{name: "serving.online.recommender" for name in (
        "Recommendation", "Recommender", "ServedList", "UnknownUserError", "load_catalogue")},
    **{name: "serving.online.store" for name in ("RedisProfileStore", "load_store",
                                                 "open_store")},
    **{name: "serving.types" for name in ("CandidateSource", "PredictClient",
                                          "ProfileStore")},
})
