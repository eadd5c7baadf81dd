"""Each refusal's gRPC code and the HTTP status TF Serving's REST API answers for it."""

import grpc
import pytest

from serving.model_server.errors import CODE_BY_NUMBER, ServingError, invalid_argument


@pytest.mark.parametrize("code, status", [
    (grpc.StatusCode.INVALID_ARGUMENT, 400), (grpc.StatusCode.NOT_FOUND, 404),
    (grpc.StatusCode.FAILED_PRECONDITION, 400), (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (grpc.StatusCode.UNAVAILABLE, 503), (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (grpc.StatusCode.UNIMPLEMENTED, 501), (grpc.StatusCode.INTERNAL, 500),
    (grpc.StatusCode.UNAUTHENTICATED, 401), (grpc.StatusCode.CANCELLED, 499),
])
def test_http_status_follows_tf_serving(code, status):
    assert ServingError(code, "m").http_status == status


def test_invalid_argument_and_code_numbers():
    error = invalid_argument("bad input")
    assert (error.code, error.message, str(error)) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                       "bad input", "bad input")
    assert CODE_BY_NUMBER[3] == grpc.StatusCode.INVALID_ARGUMENT  # TensorFlow's OpError codes.
    assert CODE_BY_NUMBER[5] == grpc.StatusCode.NOT_FOUND
