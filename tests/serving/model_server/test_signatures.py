"""Running a servable's signatures: the graph called with its inputs as a list answers what
the keyword call answers (a toy SavedModel; no trained world)."""

import numpy as np
import tensorflow as tf

from serving.model_server.signatures import _call, _flat_inputs, run_signature
from serving.model_server.servable import LoadedModel
from tests.serving.conftest import write_toy_model


def _toy(tmp_path) -> LoadedModel:
    path = write_toy_model(tmp_path)
    saved = tf.saved_model.load(str(path))
    return LoadedModel("toy", 1, str(path), saved, {})


def test_signatures_are_called_with_their_inputs_as_a_list_and_answer_as_by_keyword(tmp_path):
    model = _toy(tmp_path)
    function = model.signature("")
    assert sorted(_flat_inputs(function)) == ["tag", "x"]
    inputs = {"x": np.array([[1.0, 2.5], [3.0, -1.0]], np.float32),
              "tag": np.array([b"a", b"b\x00"], dtype=object)}
    by_list = _call(function, "", inputs)
    by_keyword = {key: value.numpy() for key, value in function(
        x=tf.constant(inputs["x"]), tag=tf.constant(inputs["tag"])).items()}
    assert by_list.keys() == by_keyword.keys() == {"sum", "echo"}
    assert by_list["sum"].tolist() == by_keyword["sum"].tolist() == [3.5, 2.0]
    assert by_list["echo"].tolist() == [b"a", b"b\x00"]
    assert run_signature(model, "double", {"n": [4, -2]})["doubled"].tolist() == [8, -4]


def test_a_function_without_a_list_call_is_called_by_keyword():
    class Keywords:
        structured_input_signature = ((), {"n": tf.TensorSpec([None], tf.int64)})

        def __call__(self, n):
            return {"doubled": 2 * n}

    assert _flat_inputs(Keywords()) is None
    assert _call(Keywords(), "", {"n": np.array([3])})["doubled"].tolist() == [6]
