"""Served model names, the serving layout and the assets stored beside each version.

The Pushers write `<base>/<model>/<version>/saved_model.pb`, TF Serving's layout; the model
server, the service and the monitor read it. Functions here use the local file system, or
`tf.io.gfile` for other schemes (gs://, s3://), imported only then.
"""

import dataclasses
import os
import re
from typing import IO

from recs.config import Config, require

RANKER = "ranker"
RETRIEVAL = "retrieval"
RETRIEVAL_EXACT = "retrieval_exact"
TOWERS = "towers"
RECOMMENDER = "recommender"
RECOMMENDER_EXACT = "recommender_exact"
"""Retrieval, exclusion and ranking in one call (ScaNN, and brute force for stock TF Serving)."""
SERVED_MODELS = (RANKER, RETRIEVAL, RETRIEVAL_EXACT, TOWERS, RECOMMENDER, RECOMMENDER_EXACT)
"""Every model the pipeline pushes; `retrieval` and `recommender` (ScaNN) need a server with
ScaNN's ops."""

STOCK_SERVABLE = (RANKER, RETRIEVAL_EXACT, TOWERS, RECOMMENDER_EXACT)
"""The models the stock `tensorflow/serving` image can load (no custom ops)."""

SAVED_MODEL_FILE = "saved_model.pb"
ASSETS_EXTRA = "assets.extra"
CATALOGUE_ASSET = "catalogue.jsonl"
"""In `assets.extra/` of each index SavedModel: the titles it indexes, id order kept."""
BATCHING_PARAMS_FILE = "batching_params.pbtxt"
"""In a version directory: the model's server-side batching parameters (TF Serving's
`--enable_per_model_batching_parameters`); a model without it is not batched."""
WARMUP_FILE = "tf_serving_warmup_requests"
"""In `assets.extra/`: PredictionLog records TF Serving replays before a version serves."""


def is_version_label(label: str) -> bool:
    """True for a TF Serving version label this project accepts: letters, digits, `_`, `-`."""
    return bool(label) and label.replace("_", "").replace("-", "").isalnum()


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def _remote(path: str) -> bool:
    return "://" in path


def open_text(path: str) -> IO[str]:
    """Opens a text file for reading, local or remote."""
    return _gfile().GFile(path) if _remote(path) else open(path, encoding="utf-8")


def exists(path: str) -> bool:
    return _gfile().exists(path) if _remote(path) else os.path.exists(path)


MAX_VERSION = 2 ** 63 - 1
"""TF Serving's versions are int64."""


def version_number(name: str) -> int | None:
    """The version a directory name stands for: ASCII digits of a number in
    [0, MAX_VERSION]; None for anything else (`12a`, `-1`, `²`, 20 digits)."""
    name = name.rstrip("/")
    if not (name.isascii() and name.isdigit()) or len(name) > len(str(MAX_VERSION)):
        return None
    version = int(name)
    return version if version <= MAX_VERSION else None


def _entries(model_dir: str) -> list[str]:
    if _remote(model_dir):
        entries = _gfile().listdir(model_dir) if _gfile().isdir(model_dir) else []
    else:
        entries = os.listdir(model_dir) if os.path.isdir(model_dir) else []
    return [entry.rstrip("/") for entry in entries]


def versions_on_disk(base_dir: str, model: str) -> list[int]:
    """Version directories of `model` holding a saved_model.pb, ascending; directories whose
    names are not versions (`version_number`) are skipped (`not_versions` names them)."""
    model_dir = os.path.join(base_dir, model)
    found = ((entry, version_number(entry)) for entry in _entries(model_dir))
    return sorted(version for entry, version in found if version is not None
                  and exists(os.path.join(model_dir, entry, SAVED_MODEL_FILE)))


def not_versions(base_dir: str, model: str) -> list[str]:
    """The entries of `model`'s directory that are not versions (`version_number`: beyond
    int64, `-1`, `²`, `12a`), sorted; hidden names (a push's `.staging-N` copy) are not
    counted."""
    return sorted(entry for entry in _entries(os.path.join(base_dir, model))
                  if version_number(entry) is None and not entry.startswith("."))


def version_dir(base_dir: str, model: str, version: int) -> str:
    return os.path.join(base_dir, model, str(version))


def newest_version_dir(base_dir: str, model: str) -> str:
    """The newest version of `model` that holds a saved_model.pb.

    Raises:
        FileNotFoundError: no version has one (nothing pushed yet, or a push half-copied).
    """
    versions = versions_on_disk(base_dir, model)
    if not versions:
        raise FileNotFoundError(f"no pushed version of {model!r} under {base_dir}: expected "
                                f"{base_dir}/{model}/<version>/{SAVED_MODEL_FILE}; run the "
                                "pipeline first.")
    return version_dir(base_dir, model, versions[-1])


def asset_path(version_path: str, name: str) -> str:
    return os.path.join(version_path, ASSETS_EXTRA, name)


@dataclasses.dataclass(frozen=True)
class BatchingParams(Config):
    """TF Serving's BatchingParameters (the fields this server uses).

    Attributes:
        max_batch_size: rows in one batch.
        batch_timeout_micros: how long the first request of a batch waits for others.
        max_enqueued_batches: closed batches waiting for a thread; more are refused.
        num_batch_threads: batches running at once.
    """

    max_batch_size: int = 64
    batch_timeout_micros: int = 2000
    max_enqueued_batches: int = 100
    num_batch_threads: int = 2

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            require(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))
        require(self.batch_timeout_micros >= 0, "batch_timeout_micros", ">= 0",
                self.batch_timeout_micros)

    def text(self) -> str:
        """The BatchingParameters text proto TF Serving reads."""
        return (f"max_batch_size {{ value: {self.max_batch_size} }}\n"
                f"batch_timeout_micros {{ value: {self.batch_timeout_micros} }}\n"
                f"max_enqueued_batches {{ value: {self.max_enqueued_batches} }}\n"
                f"num_batch_threads {{ value: {self.num_batch_threads} }}\n"
                "pad_variable_length_inputs: true\n")

    @classmethod
    def parse(cls, text: str) -> "BatchingParams":
        """Reads the fields above from a BatchingParameters text proto (others are ignored).

        Raises:
            ValueError: a field holds an invalid value.
        """
        values = {name: int(value) for name, value in
                  re.findall(r"(\w+)\s*\{\s*value:\s*(-?\d+)\s*\}", text)}
        return cls(**{name: values[name] for name in (
            "max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
            "num_batch_threads") if name in values})


def write_batching_params(version_path: str, params: BatchingParams = BatchingParams()) -> str:
    """Marks a version as batchable (`BATCHING_PARAMS_FILE` in its directory): only models whose
    every signature is row-aligned (each input and output shares the 0th dimension).

    Returns:
        The file's path.
    """
    path = os.path.join(version_path, BATCHING_PARAMS_FILE)
    if _remote(path):
        with _gfile().GFile(path, "w") as handle:
            handle.write(params.text())
    else:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(params.text())
    return path
