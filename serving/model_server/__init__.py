"""A local model server that speaks TF Serving's REST and gRPC protocols.

The stock `tensorflow_model_server` binary is not installable everywhere (it ships as a Docker
image or from an apt repository), and it cannot load the ScaNN retrieval model, whose custom
ops it lacks. This server loads the same `<base>/<model_name>/<version>/` SavedModels and
answers the same requests, so clients are written once for both:

REST (TF Serving's RESTful API):
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict
         {"instances": [...]} (row format) or {"inputs": {...}} (columnar format)
gRPC (tensorflow_serving.apis):
    PredictionService.Predict, PredictionService.GetModelMetadata, ModelService.GetModelStatus
    (ModelSpec by version, version_label, or neither for the newest)

Like `tensorflow_model_server` it keeps the newest `num_versions` of each model (plus labelled
ones), polls the base directory for new versions, replays each new version's
`assets.extra/tf_serving_warmup_requests` before it takes traffic, and unloads old versions
only after the new one serves. A version that fails to load is logged (logger
`recs.model_server`, once per distinct error) and reported by both status APIs as TF Serving
reports it, state END with the error, while the other versions keep serving.

The package, one runtime part a module (as TF Serving keeps them apart):
    errors       `ServingError` with TF Serving's gRPC code, and the HTTP status of each code
    specs        input names and shapes checked against a signature's tensor specs
    servable     one loaded version (`LoadedModel`) and its status entry
    signatures   running a signature on NumPy inputs, batching, warmup
    batching     TF Serving's batching parameters and the batch queue
    registry     the version manager: loading, polling, labels, status
    json_codec   REST JSON <-> arrays, pure functions of a body and the tensor specs
    rest_api     the REST router and ASGI application
    grpc_api     PredictionService and ModelService
    server       `ModelServer` and `serve_models`: both front ends over one worker pool

One request, REST:
    uvicorn (serving.http: read timeouts, head and body caps, keep-alive)
    -> `rest_api.RestApp` on the event loop: route, method, body
    -> the worker pool: `json_codec.parse_json` -> `json_codec.parse_predict_body` (each JSON
       value checked against the signature's dtype and shape: nothing is cast)
       -> `signatures.predict` -> `json_codec.format_predict_response`
gRPC (the same worker pool runs the handlers):
    request bytes -> PredictRequest (a malformed message is INVALID_ARGUMENT, not INTERNAL)
    -> `grpc_api.tensor_from_proto` per input (dtype, shape, size and value count checked
       before any array is allocated) -> `signatures.predict` -> PredictResponse

Every refusal is a `ServingError` carrying TF Serving's gRPC code; REST answers it as
`{"error": "..."}` with the HTTP status TF Serving uses for that code.

Both ports may serve TLS and require a bearer token (`ModelServingConfig.tls`, `.tokens`; off
by default). The token is this server's own: stock TF Serving has none, and takes gRPC TLS
from its `--ssl_config_file`. A request without an accepted token is 401 on REST (REST model
status stays open for the readiness probe) and UNAUTHENTICATED on gRPC.
"""


from recs._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ServingError": "serving.model_server.errors",
    "LoadedModel": "serving.model_server.servable",
    **{name: "serving.model_server.signatures" for name in ("predict", "run_signature",
                                                            "warm_up")},
    "ModelRegistry": "serving.model_server.registry",
    **{name: "serving.model_server.json_codec" for name in ("format_predict_response",
                                                            "parse_predict_body")},
    "tensor_from_proto": "serving.model_server.grpc_api",
    **{name: "serving.model_server.server" for name in ("ModelServer", "serve_models")},
})
