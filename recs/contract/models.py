"""Served model names, the serving layout and the assets stored beside each version.

The Pushers write `<base>/<model>/<version>/saved_model.pb`, TF Serving's layout; the model
server, the service and the monitor read it. Functions here use the local file system, or
`tf.io.gfile` for other schemes (gs://, s3://), imported only then.
"""

import os
from typing import IO

RANKER = "ranker"
RETRIEVAL = "retrieval"
RETRIEVAL_EXACT = "retrieval_exact"
TOWERS = "towers"
SERVED_MODELS = (RANKER, RETRIEVAL, RETRIEVAL_EXACT, TOWERS)
"""Every model the pipeline pushes; `retrieval` (ScaNN) needs a server with ScaNN's ops."""

STOCK_SERVABLE = (RANKER, RETRIEVAL_EXACT, TOWERS)
"""The models the stock `tensorflow/serving` image can load (no custom ops)."""

SAVED_MODEL_FILE = "saved_model.pb"
ASSETS_EXTRA = "assets.extra"
CATALOGUE_ASSET = "catalogue.jsonl"
"""In `assets.extra/` of each index SavedModel: the titles it indexes, id order kept."""
WARMUP_FILE = "tf_serving_warmup_requests"
"""In `assets.extra/`: PredictionLog records TF Serving replays before a version serves."""


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


def versions_on_disk(base_dir: str, model: str) -> list[int]:
    """Numeric version directories of `model` holding a saved_model.pb, ascending."""
    model_dir = os.path.join(base_dir, model)
    if _remote(model_dir):
        entries = _gfile().listdir(model_dir) if _gfile().isdir(model_dir) else []
    else:
        entries = os.listdir(model_dir) if os.path.isdir(model_dir) else []
    return sorted(int(entry.rstrip("/")) for entry in entries
                  if entry.rstrip("/").isdigit()
                  and exists(os.path.join(model_dir, entry.rstrip("/"), SAVED_MODEL_FILE)))


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
