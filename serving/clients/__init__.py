"""Clients of TF Serving's REST and gRPC APIs (the same code talks to the local model server and
to a real `tensorflow/serving`), and an in-process client of a model registry.

Names are imported on first use: the REST client needs only NumPy and the standard library;
the gRPC and local clients load TensorFlow. Both protocol clients speak TLS to an `https://`
address (`serving.security.ClientTls`) and can send a bearer token.
"""

from recs._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    **{name: "serving.clients.base" for name in ("ClientBase", "ModelServerError",
                                                  "check_version_choice")},
    "RestClient": "serving.clients.rest",
    "GrpcClient": "serving.clients.grpc_client",
    "LocalClient": "serving.clients.local",
})
