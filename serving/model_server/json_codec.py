"""TF Serving's REST JSON <-> tensors, as pure functions of a body and the signature's tensor
specs: a predict body (row or columnar format) to arrays of the signature's dtypes, each value
checked against the dtype and shape (nothing is cast), and outputs back to JSON."""

import base64
import binascii
import itertools
import json
import math
import reprlib
from typing import Any, Mapping

import grpc
import numpy as np
import orjson
import tensorflow as tf

from serving.model_server.errors import ServingError, invalid_argument
from serving.model_server.specs import check_input_names, shape_fits, shape_text

_MAX_RANK = 254  # TensorFlow's own limit, for signatures whose inputs have an unknown rank.
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 2, 40, 40


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"Number too big to be stored in double: {text[:40]}")
    return value


def _json_int(text: str) -> int | float:
    """An integer literal; beyond 64 bits a double, as rapidjson (and the fast parser) read
    it, so both parsers give a body the same values."""
    if len(text.lstrip("-")) <= 20:
        value = int(text)
        if -2 ** 63 <= value < 2 ** 64:
            return value
    return _finite_float(text)


def parse_json(data: bytes) -> Any:
    """The request body as JSON. Strict JSON takes the fast parser; TF Serving also reads the
    literals NaN, Infinity and -Infinity (rapidjson's kParseNanAndInfFlag), so a body the fast
    parser refuses is read again by one that knows them.

    Raises:
        ServingError: INVALID_ARGUMENT for anything else that is not UTF-8 JSON.
    """
    if not data.strip():
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as strict_error:
        try:
            return json.loads(data.decode("utf-8"), parse_constant=_NON_FINITE.__getitem__,
                              parse_float=_finite_float, parse_int=_json_int)
        except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError.
            raise invalid_argument(f"JSON Parse error: {strict_error}") from error


def _json_type(value: Any) -> str:
    """rapidjson's name of a JSON value's type, as TF Serving's messages use it."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return "Number"
    return {str: "String", list: "Array", dict: "Object"}.get(type(value), type(value).__name__)


def json_text(value: Any) -> str:
    """A JSON value for an error message, shortened: messages echo client input."""
    if isinstance(value, (list, dict)):
        return _SHORT.repr(value)
    try:
        text = json.dumps(value)
    except ValueError:  # An integer beyond Python's digit limit for str().
        return "<a number too long to print>"
    return text if len(text) <= 60 else text[:57] + "..."


def _is_b64(value: Any) -> bool:
    """TF Serving's encoding of a binary string: {"b64": "..."}."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _flatten(key: str, value: Any, rank: int | None) -> tuple[list[int], list[Any]]:
    """The shape of nested JSON lists and their leaves in row-major order, one nesting level
    at a time (bounded by the input's rank, so deep nesting costs nothing).

    Raises:
        ServingError: lists that are ragged, or nested deeper than the input's rank.
    """
    limit = _MAX_RANK if rank is None else rank
    shape: list[int] = []
    items = [value]
    while True:
        kinds = set(map(type, items))
        if list not in kinds:
            return shape, items
        if kinds != {list}:
            raise invalid_argument(f"input {key!r} is ragged: lists and values mix at level "
                                   f"{len(shape) + 1}")
        if len(shape) == limit:
            raise invalid_argument(f"input {key!r} has lists nested deeper than its rank, {limit}")
        lengths = set(map(len, items))
        if len(lengths) > 1:
            raise invalid_argument(f"input {key!r} is ragged: lists of sizes "
                                   f"{sorted(lengths)[:5]} at level {len(shape) + 1}")
        shape.append(lengths.pop())
        items = list(itertools.chain.from_iterable(items))
        if not items:
            return shape, items


def _type_error(key: str, leaves: list[Any], allowed: tuple[type, ...],
                dtype: tf.DType) -> ServingError:
    bad = next(value for value in leaves if type(value) not in allowed)
    return invalid_argument(f"input {key!r}: JSON Value: {json_text(bad)} Type: {_json_type(bad)} "
                            f"is not of expected type: {dtype.name}")


def _json_bytes(key: str, value: str | dict) -> bytes:
    if isinstance(value, str):
        try:
            return value.encode()
        except UnicodeEncodeError as error:  # A lone surrogate escape such as "\ud800".
            raise invalid_argument(f"input {key!r}: string {json_text(value)} is not valid "
                                   f"Unicode: {error.reason}") from error
    if not _is_b64(value):
        raise invalid_argument(f"input {key!r}: JSON Value: {json_text(value)} not formatted "
                               f"correctly for base64 data; expected {{\"b64\": \"<base64>\"}}")
    encoded = value["b64"]
    try:
        # Like absl's Base64Unescape: the standard alphabet, padding optional.
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as error:  # ValueError: non-ASCII characters.
        raise invalid_argument(f"input {key!r}: Unable to base64 decode {json_text(encoded)}: "
                               f"{error}") from error


def _json_leaves(key: str, leaves: list[Any], dtype: tf.DType) -> np.ndarray:
    """JSON scalars as a flat array of `dtype`, with TF Serving's rules (json_tensor.cc):
    strings (or b64 objects) for strings, true/false for bools, integer literals within range
    for integers, numbers that fit without loss for floats. Nothing is cast: 3.0 is not an
    int64, true is not a number, "5" is not a number. Checks run per column, not per value,
    where they can (this is the REST hot path)."""
    kinds = set(map(type, leaves))
    target = np.dtype(dtype.as_numpy_dtype)
    if target.kind == "O":  # DT_STRING
        if not kinds <= {str, dict}:
            raise _type_error(key, leaves, (str, dict), dtype)
        if kinds == {str}:
            try:
                return np.array([value.encode() for value in leaves], dtype=object)
            except UnicodeEncodeError:
                pass  # The slow path below names the string.
        return np.array([_json_bytes(key, value) for value in leaves], dtype=object)
    if target.kind == "b":
        if not kinds <= {bool}:
            raise _type_error(key, leaves, (bool,), dtype)
        return np.array(leaves, dtype=bool)
    if target.kind in "iu":
        if not kinds <= {int}:
            raise _type_error(key, leaves, (int,), dtype)
        low, high = np.iinfo(target).min, np.iinfo(target).max
        if leaves and (min(leaves) < low or max(leaves) > high):
            bad = next(v for v in leaves if not low <= v <= high)
            raise invalid_argument(f"input {key!r}: JSON Value: {json_text(bad)} is out of range "
                                   f"for {dtype.name} [{low}, {high}]")
        return np.array(leaves, dtype=target)
    if target.kind == "f" and target.itemsize in (2, 4, 8):  # float16, float32, float64
        if not kinds <= {int, float}:
            raise _type_error(key, leaves, (int, float), dtype)
        # Integers are exact up to 2**digits - 1; other finite numbers must be in range.
        exact = 2 ** (np.finfo(target).nmant + 1) - 1
        integers = [value for value in leaves if type(value) is int] if int in kinds else []
        bad = next((value for value in integers if abs(value) > exact), None)
        if bad is None:
            values = np.array(leaves, dtype=np.float64)
            finite = np.abs(values[np.isfinite(values)])
            if finite.size and finite.max() > np.finfo(target).max:
                bad = next(v for v in leaves if math.isfinite(v)
                           and abs(v) > np.finfo(target).max)
        if bad is not None:
            raise invalid_argument(f"input {key!r}: Cannot convert JSON value: {json_text(bad)} to "
                                   f"{dtype.name} without loss of precision.")
        return values.astype(target)
    raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                       f"input {key!r}: conversion of JSON values to {dtype.name}")


def _json_tensor(key: str, value: Any, spec: tf.TensorSpec) -> np.ndarray:
    """One input's JSON value (nested lists of scalars) as an array matching `spec`."""
    shape, leaves = _flatten(key, value, spec.shape.rank)
    if not shape_fits(spec.shape, shape):
        raise invalid_argument(f"input {key!r} must have shape {shape_text(spec.shape)}; received "
                               f"{shape}")
    return _json_leaves(key, leaves, spec.dtype).reshape(shape)


def parse_predict_body(body: Mapping[str, Any], specs: Mapping[str, tf.TensorSpec]
                       ) -> tuple[dict[str, np.ndarray], bool]:
    """Decodes a REST predict body in row ("instances") or columnar ("inputs") format.

    Args:
        body: the parsed JSON object.
        specs: the signature's inputs, {name: tf.TensorSpec} (`LoadedModel.input_specs`).

    Returns:
        (inputs by name as arrays of the signature's dtypes, True when the request used the
        row format).

    Raises:
        ServingError: INVALID_ARGUMENT for neither or both formats, rows that do not name the
            inputs, ragged lists, or values of the wrong type or out of range.
    """
    if ("instances" in body) == ("inputs" in body):
        raise invalid_argument("JSON Value: request must have exactly one of 'instances' (row "
                               "format) or 'inputs' (columnar format)")
    names = sorted(specs)
    if "inputs" in body:
        columns = body["inputs"]
        if not isinstance(columns, dict) or _is_b64(columns):
            if len(names) != 1:
                raise invalid_argument(f"'inputs' is a plain value/list, but expecting an object "
                                       f"keyed by {names}")
            columns = {names[0]: columns}
        check_input_names(columns, names)
        return {key: _json_tensor(key, columns[key], specs[key]) for key in names}, False
    rows = body["instances"]
    if not isinstance(rows, list) or not rows:
        raise invalid_argument("'instances' must be a non-empty list")
    named = [isinstance(row, dict) and not _is_b64(row) for row in rows]
    if any(named):
        if not all(named):
            raise invalid_argument("instances must be all objects keyed by input names or all "
                                   "values, not a mix")
        keys = set(rows[0])
        if any(set(row) != keys for row in rows):
            raise invalid_argument("every instance must have the same keys")
        check_input_names(keys, names)
        return {key: _json_tensor(key, [row[key] for row in rows], specs[key])
                for key in names}, True
    if len(names) != 1:
        raise invalid_argument(f"instances must be objects keyed by {names}")
    return {names[0]: _json_tensor(names[0], rows, specs[names[0]])}, True


def _json_value(array: np.ndarray) -> Any:
    if array.dtype == object:
        return np.vectorize(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes)
                            else v, otypes=[object])(array).tolist()
    return array.tolist()


def format_predict_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """Encodes outputs as TF Serving does: "predictions" for rows, "outputs" for columns.

    Raises:
        ServingError: INVALID_ARGUMENT when rows are asked of outputs that do not share a
            batch dimension (TF Serving's answer too).
    """
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": _json_value(next(iter(outputs.values())))}
        return {"outputs": {key: _json_value(value) for key, value in outputs.items()}}
    sizes = {key: value.shape[0] if value.ndim else None for key, value in outputs.items()}
    if None in sizes.values() or len(set(sizes.values())) > 1:
        raise invalid_argument(f"outputs have no common batch size for the row format: {sizes}; "
                               "use the columnar format ('inputs')")
    if len(outputs) == 1:
        return {"predictions": _json_value(next(iter(outputs.values())))}
    columns = {key: _json_value(value) for key, value in outputs.items()}
    count = next(iter(sizes.values()))
    return {"predictions": [{key: column[i] for key, column in columns.items()}
                            for i in range(count)]}


def predict_response_bytes(outputs: dict[str, np.ndarray], row_format: bool) -> bytes:
    """`format_predict_response` as a JSON body. orjson writes it (about a twentieth of the
    standard library's time for a 200-title answer); outputs holding NaN or an infinity are
    written by the standard library, whose NaN and Infinity literals are TF Serving's."""
    document = format_predict_response(outputs, row_format)
    if all(np.isfinite(value).all() for value in outputs.values() if value.dtype.kind == "f"):
        try:
            return orjson.dumps(document)
        except (orjson.JSONEncodeError, TypeError):  # e.g. an integer beyond 64 bits
            pass
    return json.dumps(document).encode()
