"""The REST JSON codec as pure functions of a body and a signature's tensor specs: no model,
no server."""

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving.model_server.errors import ServingError
from serving.model_server.json_codec import (format_predict_response, json_text, parse_json,
                                             parse_predict_body, predict_response_bytes)

SPECS = {"x": tf.TensorSpec([None, 2], tf.float32), "n": tf.TensorSpec([None], tf.int64),
         "s": tf.TensorSpec([None], tf.string)}


def _invalid(body: dict, specs=SPECS) -> str:
    with pytest.raises(ServingError) as raised:
        parse_predict_body(body, specs)
    assert raised.value.code.name == "INVALID_ARGUMENT" and raised.value.http_status == 400
    return raised.value.message


def test_columnar_and_row_bodies_decode_to_the_same_arrays():
    columns, row_format = parse_predict_body(
        {"inputs": {"x": [[1, 2.5], [3, 4]], "n": [7, 8], "s": ["a", {"b64": "AP8="}]}}, SPECS)
    rows, rows_format = parse_predict_body({"instances": [
        {"x": [1, 2.5], "n": 7, "s": "a"}, {"x": [3, 4], "n": 8, "s": {"b64": "AP8"}}]}, SPECS)
    assert (row_format, rows_format) == (False, True)
    for arrays in (columns, rows):
        assert arrays["x"].dtype == np.float32 and arrays["x"].tolist() == [[1, 2.5], [3, 4]]
        assert arrays["n"].dtype == np.int64 and arrays["n"].tolist() == [7, 8]
        # "AP8=" is base64 of the bytes 0x00 0xff; padding is optional, as in TF Serving.
        assert arrays["s"].tolist() == [b"a", b"\x00\xff"]


def test_a_single_input_may_be_given_without_its_name():
    only = {"s": tf.TensorSpec([None], tf.string)}
    assert parse_predict_body({"inputs": ["a", "b"]}, only)[0]["s"].tolist() == [b"a", b"b"]
    assert parse_predict_body({"instances": ["c"]}, only)[0]["s"].tolist() == [b"c"]
    assert "expecting an object keyed by" in _invalid({"inputs": [1.0]})


@pytest.mark.parametrize("body, message", [
    ({}, "exactly one of 'instances'"),
    ({"inputs": {}, "instances": []}, "exactly one of 'instances'"),
    ({"instances": []}, "'instances' must be a non-empty list"),
    ({"inputs": {"x": [[1, 2]], "n": [1]}}, "missing ['s']"),
    ({"inputs": {"x": [[1, 2]], "n": [1], "s": ["a"], "y": [1]}}, "unexpected ['y']"),
    ({"inputs": {"x": [[1, 2], [3]], "n": [1, 2], "s": ["a", "b"]}}, "ragged"),
    ({"inputs": {"x": [[1, [2]]], "n": [1], "s": ["a"]}}, "ragged: lists and values mix"),
    ({"inputs": {"x": [[[1, 2]]], "n": [1], "s": ["a"]}}, "nested deeper than its rank"),
    ({"inputs": {"x": [[1, 2, 3]], "n": [1], "s": ["a"]}}, "must have shape [-1,2]"),
    ({"inputs": {"x": [["1", 2]], "n": [1], "s": ["a"]}}, "is not of expected type: float"),
    ({"inputs": {"x": [[1, 2]], "n": [1.0], "s": ["a"]}}, "is not of expected type: int64"),
    ({"inputs": {"x": [[1, 2]], "n": [True], "s": ["a"]}}, "is not of expected type: int64"),
    ({"inputs": {"x": [[1, 2]], "n": [2 ** 63], "s": ["a"]}}, "out of range for int64"),
    ({"inputs": {"x": [[1e39, 2]], "n": [1], "s": ["a"]}}, "without loss of precision"),
    ({"inputs": {"x": [[2 ** 25, 2]], "n": [1], "s": ["a"]}}, "without loss of precision"),
    ({"inputs": {"x": [[1, 2]], "n": [1], "s": [5]}}, "is not of expected type: string"),
    ({"inputs": {"x": [[1, 2]], "n": [1], "s": [{"b64": "***"}]}}, "Unable to base64 decode"),
    ({"inputs": {"x": [[1, 2]], "n": [1], "s": [{"text": "a"}]}}, "not formatted correctly"),
    ({"instances": [{"x": [1, 2], "n": 1, "s": "a"}, [1, 2]]}, "not a mix"),
    ({"instances": [{"x": [1, 2], "n": 1, "s": "a"}, {"x": [1, 2], "n": 1}]}, "same keys"),
])
def test_bad_bodies_are_invalid_argument_naming_the_problem(body, message):
    assert message in _invalid(body)


def test_nan_and_infinity_literals_are_read_for_floats_as_tf_serving_reads_them():
    body = parse_json(b'{"inputs": {"x": [[NaN, Infinity], [-Infinity, 1]], "n": [1, 2],'
                      b' "s": ["a", "b"]}}')
    x = parse_predict_body(body, SPECS)[0]["x"]
    assert np.isnan(x[0, 0]) and x[0, 1] == np.inf and x[1, 0] == -np.inf


@pytest.mark.parametrize("data, message", [
    (b"", "The document is empty"), (b"  \n", "The document is empty"),
    (b"{", "JSON Parse error"), (b"\xff\xfe", "JSON Parse error"),
    (b"[" * 100_000 + b"]" * 100_000, "JSON Parse error"),
])
def test_bodies_that_are_not_json_are_invalid_argument(data, message):
    with pytest.raises(ServingError, match=message):
        parse_json(data)


def test_both_parsers_read_large_integers_alike():
    # Beyond 64 bits an integer literal is a double in rapidjson; the strict parser
    # (orjson) refuses it and the fallback reads it the same way.
    assert parse_json(b"[18446744073709551616]") == [float(2 ** 64)]
    assert parse_json(b"[1, NaN]")[0] == 1


def test_outputs_are_encoded_as_tf_serving_does():
    one = {"p": np.array([0.5, 0.25], dtype=np.float32)}
    two = {"p": np.array([0.5, 0.25]), "t": np.array([b"a", b"\xff"], dtype=object)}
    assert format_predict_response(one, row_format=False) == {"outputs": [0.5, 0.25]}
    assert format_predict_response(one, row_format=True) == {"predictions": [0.5, 0.25]}
    assert format_predict_response(two, row_format=False) == {
        "outputs": {"p": [0.5, 0.25], "t": ["a", "\ufffd"]}}
    assert format_predict_response(two, row_format=True) == {
        "predictions": [{"p": 0.5, "t": "a"}, {"p": 0.25, "t": "\ufffd"}]}
    with pytest.raises(ServingError, match="no common batch size"):
        format_predict_response({"p": np.zeros(2), "q": np.zeros(3)}, row_format=True)


def test_answer_bodies_read_back_as_the_document_and_keep_tf_serving_s_nan_literals():
    import json

    outputs = {"p": np.array([0.1, 0.25], np.float32), "t": np.array([b"\xc3\xa9", b"b"],
                                                                      dtype=object),
               "n": np.array([2 ** 63 - 1], np.int64), "e": np.zeros((1, 3), np.float32)}
    body = predict_response_bytes(outputs, row_format=False)
    assert json.loads(body) == format_predict_response(outputs, row_format=False)
    # NaN and infinities as TF Serving writes them (literals), which strict JSON lacks.
    body = predict_response_bytes({"p": np.array([np.nan, np.inf, 1.0])}, False)
    assert body == b'{"outputs": [NaN, Infinity, 1.0]}'
    assert predict_response_bytes({"n": np.array([2 ** 64 - 1], np.uint64)}, False) == (
        b'{"outputs":[18446744073709551615]}')


def test_error_messages_echo_client_input_shortened():
    assert len(json_text("x" * 1000)) == 60 and json_text("x" * 1000).endswith("...")
    assert len(json_text([[[[list(range(1000))]]]])) < 60
    assert json_text(10 ** 5000) == "<a number too long to print>"


def test_parse_predict_body_rejects_ragged_instances():
    specs = {"a": tf.TensorSpec([None], tf.int64), "b": tf.TensorSpec([None], tf.int64)}
    with pytest.raises(ServingError, match="same keys"):
        parse_predict_body({"instances": [{"a": 1}, {"b": 2}]}, specs)


def test_ragged_lists_are_refused_at_every_level():
    specs = {"e": tf.TensorSpec([None, 2], tf.float32)}
    for ragged in ([[1.0, 2.0], [3.0]], [[1.0, 2.0], 3.0], [[[1.0], [2.0]], [3.0, 4.0]]):
        with pytest.raises(ServingError, match="'e'") as error:
            parse_predict_body({"inputs": {"e": ragged}}, specs)
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    rows, _ = parse_predict_body({"instances": [{"e": [1, 2.5]}, {"e": [3, 4]}]}, specs)
    np.testing.assert_array_equal(rows["e"], np.array([[1, 2.5], [3, 4]], dtype=np.float32))
