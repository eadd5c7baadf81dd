"""Warm start (incremental learning): a retrained model begins from the last blessed one.

A retrain runs on a new window of spans, so tf.Transform learns new vocabularies: a user or a
title may have another row, new ones appear, old ones leave. Dense layers carry over as they
are; every embedding table is remapped row by row through the two vocabularies with
`tf.keras.utils.warmstart_embedding_matrix` (rows of new tokens keep their fresh
initialization). The base model is read from its SavedModel alone: the variables from its
checkpoint, the vocabularies from the transform graph's assets inside it.
"""

import dataclasses
import os
from collections.abc import Callable

import tensorflow as tf

from recs import features as F
from recs.models.encoders import FeatureEncoder

_OOV = b"\x00[out-of-vocabulary]"
_PADDING = b"\x00[padding]"


@dataclasses.dataclass(frozen=True)
class WarmStartReport:
    """What a warm start carried over.

    Attributes:
        copied: variables copied whole (dense layers, fixed-size embeddings).
        remapped: embedding feature -> share of the new vocabulary found in the base one.
        skipped: variables left at their initialization, with the reason.
        frozen: variables not touched because they are frozen (non-trainable): they come
            from their own source (`load_frozen`), not from the base model.
    """

    copied: int
    remapped: dict[str, float]
    skipped: tuple[str, ...]
    frozen: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _embedding_features(model: tf.keras.Model) -> dict[object, str]:
    """Variable reference -> raw feature key, for every embedding table of every encoder."""
    keyed = {}
    for module in model.submodules:
        if isinstance(module, FeatureEncoder):
            for key, layer in module.embeddings.items():
                keyed[layer.embeddings.ref()] = key
    return keyed


def read_vocabulary(saved_model_dir: str, name: str) -> list[bytes]:
    """A tf.Transform vocabulary as stored in a SavedModel's assets, one token per line.

    Raises:
        ValueError: the SavedModel has no such asset.
    """
    path = os.path.join(saved_model_dir, "assets", name)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{saved_model_dir!r} has no vocabulary asset {name!r}; warm start needs "
                         "a model exported with its transform graph (recs.export).")
    with tf.io.gfile.GFile(path, "rb") as handle:
        return handle.read().splitlines()


def _with_reserved_row(tokens: list[bytes], layout: str) -> list[bytes]:
    return [_PADDING, *tokens] if layout == F.PADDING_FIRST else [*tokens, _OOV]


def warm_start(model: tf.keras.Model, base_model_dir: str, prefix: str,
               new_vocabulary: Callable[[str], list[bytes]]) -> WarmStartReport:
    """Loads a base SavedModel's weights into a built `model` of the same architecture.

    Args:
        model: the new model, variables built (called once), not yet trained.
        base_model_dir: the base SavedModel (a `recs.export` export of the same model class).
        prefix: the model's attribute path inside the export (`ranker`, `query_tower`, ...).
        new_vocabulary: vocabulary name -> tokens of the new transform output
            (`tft.TFTransformOutput.vocabulary_by_name`).

    Returns:
        What was copied, remapped and skipped. A variable whose shape no longer fits (a
        changed layer width) is skipped, not an error: training starts it afresh. Frozen
        (non-trainable) variables are left alone and counted: they have their own source.

    Raises:
        ValueError: the base holds no variables under `prefix`.
    """
    reader = tf.train.load_checkpoint(os.path.join(base_model_dir, "variables", "variables"))
    shapes = reader.get_variable_to_shape_map()
    names = [f"{prefix}/variables/{index}/.ATTRIBUTES/VARIABLE_VALUE"
             for index in range(len(model.variables))]
    if not any(name in shapes for name in names):
        raise ValueError(f"{base_model_dir!r} holds no variables under {prefix!r}; expected "
                         f"a SavedModel exported by recs.export with a {prefix!r} attribute.")
    keyed = _embedding_features(model)
    vocabularies: dict[str, tuple[list[bytes], list[bytes]]] = {}  # Titles serve two tables.

    def base_and_new(name: str) -> tuple[list[bytes], list[bytes]]:
        if name not in vocabularies:
            vocabularies[name] = (read_vocabulary(base_model_dir, name),
                                  list(new_vocabulary(name)))
        return vocabularies[name]

    frozen = {variable.ref() for variable in model.non_trainable_variables}
    copied, remapped, skipped, kept = 0, {}, [], 0
    for name, variable in zip(names, model.variables):
        if variable.ref() in frozen:
            # Frozen parts (the ranker's copy of the retrieval towers) come from their own
            # source, newer than the base model's copy: `load_frozen`.
            kept += 1
            continue
        if name not in shapes:
            skipped.append(f"{variable.name}: not in the base model")
            continue
        base = reader.get_tensor(name)
        key = keyed.get(variable.ref())
        if key in F.EMBEDDING_VOCABULARIES:
            vocabulary, layout = F.EMBEDDING_VOCABULARIES[key]
            base_tokens, new_tokens = (_with_reserved_row(tokens, layout)
                                       for tokens in base_and_new(vocabulary))
            if (len(base_tokens), len(new_tokens)) != (base.shape[0], variable.shape[0]) \
                    or base.shape[1:] != tuple(variable.shape[1:]):
                skipped.append(f"{variable.name}: vocabulary {vocabulary!r} does not match "
                               f"the table ({base.shape} -> {variable.shape})")
                continue
            variable.assign(tf.keras.utils.warmstart_embedding_matrix(
                base_tokens, new_tokens, base,
                new_embeddings_initializer=lambda shape, dtype=None: tf.identity(variable)))
            # Both lists hold the same reserved row: it is not a token found.
            found = len(set(base_tokens) & set(new_tokens)) - 1
            remapped[key] = found / max(1, len(new_tokens) - 1)
        elif tuple(base.shape) == tuple(variable.shape):
            variable.assign(base)
            copied += 1
        else:
            skipped.append(f"{variable.name}: shape {tuple(base.shape)} -> "
                           f"{tuple(variable.shape)}")
    return WarmStartReport(copied=copied, remapped=remapped, skipped=tuple(skipped),
                           frozen=kept)


def load_frozen(part: tf.keras.Model, model_dir: str, prefix: str,
                new_vocabulary: Callable[[str], list[bytes]]) -> WarmStartReport:
    """Loads every weight of `part` from an export, or fails: for parts used as they are
    (the retrieval towers inside the ranker), where a weight left at its initialization
    would be a silent defect.

    Call it before freezing `part` (or on a part built afresh, as `DeepRanker` freezes its
    towers when it is built around them: load first, then build the ranker).

    Args:
        part: the part, variables built, all of them trainable (the export's layout).
        model_dir: the SavedModel holding the part (a `recs.export.RetrievalExport`).
        prefix: the part's attribute path inside the export (`query_tower`, ...).
        new_vocabulary: vocabulary name -> tokens of the transform output `part` reads.

    Returns:
        What was copied and remapped (rows of tokens new to the export's vocabulary keep
        their initialization, as in a warm start).

    Raises:
        ValueError: a variable of `part` is not in the export or does not fit it; `part` is
            frozen already.
    """
    if part.non_trainable_variables:
        raise ValueError(f"{prefix!r} has frozen variables, which a warm start leaves alone; "
                         f"load the part before freezing it (before building the DeepRanker "
                         f"around it).")
    report = warm_start(part, model_dir, prefix, new_vocabulary)
    if report.skipped:
        raise ValueError(f"{model_dir!r} does not hold all of {prefix!r}: {list(report.skipped)}; "
                         f"export the part with the same config (layer widths, embedding "
                         f"width) as the one it is loaded into.")
    return report
