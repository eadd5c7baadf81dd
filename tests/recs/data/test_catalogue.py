"""User-facing errors that are not covered next to their feature's tests."""

import os
import subprocess
import sys

import numpy as np
import pytest

from recs import features as F
from recs.config import IndexConfig
from recs.data.catalogue import read_jsonl, to_columns
from recs.index import build_indexes
from tfx_pipeline import PipelineConfig, run_local


def test_importing_recs_after_keras_3_was_chosen_fails_loudly():
    # tf.keras resolves lazily: only touching it before recs commits the process to Keras 3.
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    code = "import tensorflow as tf; tf.keras.layers.Dense; import recs"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode != 0
    assert "TensorFlow Recommenders needs Keras 2" in result.stderr


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "titles.jsonl"
    path.write_text('{"title_id": "t1"}\n\n{"title_id": \n')
    with pytest.raises(ValueError, match=r"titles.jsonl:3 is not valid JSON"):
        read_jsonl(str(path))
    path.write_text('["t1"]\n')
    with pytest.raises(ValueError, match=r"titles.jsonl:1 must be a JSON object; received list"):
        read_jsonl(str(path))


def test_to_columns_names_the_missing_key():
    with pytest.raises(ValueError, match=r"1 rows lack 'genre' \(first at row 1\)"):
        to_columns([{F.TITLE_ID: "a", F.GENRE: "x"}, {F.TITLE_ID: "b"}], (F.TITLE_ID, F.GENRE))


def test_catalogue_with_duplicate_ids_is_rejected():
    catalogue = {F.TITLE_ID: np.array(["t1", "t1"], dtype=object)}
    with pytest.raises(ValueError, match="title_id values must be unique"):
        build_indexes(towers=None, catalogue=catalogue, queries={}, config=IndexConfig())


def test_local_run_needs_a_metadata_path(tmp_path):
    config = PipelineConfig(pipeline_root=str(tmp_path), examples_dir="e", catalogue_path="c",
                            serving_base_dir="s")
    with pytest.raises(ValueError, match="metadata_path is empty"):
        run_local(config)
