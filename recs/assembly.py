"""The one assembly path: trained models -> raw-feature SavedModels -> candidate indexes ->
TF Serving's layout.

    export_towers(two-tower model)   -> towers/               (query_embedding, candidate_embedding)
    export_ranker(ranker)            -> ranker/               (serving_default, serving_tf_example)
    export_indexes(towers/, catalogue) -> retrieval/ (ScaNN), retrieval_exact/ (brute force),
                                        each with its catalogue snapshot; the recall gate's report
    export_recommenders(retrieval/, ranker, catalogue)
                                     -> recommender/, recommender_exact/ (one call per request)

The TFX components run these one per component (the RetrievalTrainer and RankerTrainer
export, the IndexBuilder indexes, the RecommenderBuilder joins both, the Pushers copy to
`<base>/<model>/<version>/`); `assemble` runs all of them into a serving directory at once,
for the tests' worlds and the benchmarks.
"""

from typing import Any

import tensorflow as tf

from recs import features as F
from recs.config import IndexConfig
from recs.contract.models import (RANKER, RECOMMENDER, RECOMMENDER_EXACT, RETRIEVAL,
                                  RETRIEVAL_EXACT, TOWERS, version_dir)
from recs.data.catalogue import to_columns
from recs.export import RankerExport, RetrievalExport
from recs.index import IndexReport, build_indexes, catalogue_lines
from recs.types import ArrayDict, JsonDict


def export_towers(transform_output: Any, model: tf.keras.Model, path: str) -> None:
    """Writes the two-tower model's towers behind the transform graph to `path`.

    Args:
        transform_output: the `tft.TFTransformOutput` the model was trained on.
        model: a `recs.models.TwoTowerModel`.
        path: the SavedModel's directory.
    """
    RetrievalExport(transform_output.transform_features_layer(),
                    transform_output.raw_feature_spec(), model.query_tower,
                    model.candidate_tower).save(path)


def export_ranker(transform_output: Any, model: tf.keras.Model, path: str) -> None:
    """Writes the ranker (deep, or blended with trees) behind the transform graph to `path`."""
    RankerExport(transform_output.transform_features_layer(),
                 transform_output.raw_feature_spec(), model).save(path)


def export_indexes(towers_dir: str, catalogue: list[JsonDict], queries: ArrayDict,
                   config: IndexConfig, scann_dir: str, exact_dir: str) -> IndexReport:
    """Indexes every catalogue title with the exported towers, validates ScaNN against brute
    force on `queries`, and writes both retrieval SavedModels with their catalogue snapshot.

    Args:
        towers_dir: an `export_towers` SavedModel.
        catalogue: catalogue rows, each with every `recs.features.CANDIDATE_FEATURES` key.
        queries: raw query features of held-out requests.
        config: index settings and the recall gate.
        scann_dir / exact_dir: where the ScaNN and the brute-force retrieval models go.

    Returns:
        The gate's report; `blessed` says whether ScaNN reached `config.min_recall`.
    """
    columns = to_columns(catalogue, F.CANDIDATE_FEATURES)
    scann, exact, report = build_indexes(tf.saved_model.load(towers_dir), columns, queries,
                                         config)
    lines = catalogue_lines(columns)
    scann.save(scann_dir, lines, scann=True)
    exact.save(exact_dir, lines, scann=False)
    return report


def export_recommenders(transform_output: Any, scann_dir: str, exact_dir: str, ranker: Any,
                        catalogue: list[JsonDict], recommender_dir: str,
                        recommender_exact_dir: str) -> None:
    """Joins each retrieval model with the ranker into a recommender model
    (`recs.recommend.RecommenderExport`): one over the ScaNN index, one over brute force.

    Args:
        transform_output: the `tft.TFTransformOutput` the ranker was trained on.
        scann_dir / exact_dir: the `export_indexes` retrieval models.
        ranker: the ranker's Keras model, or the `ranker` of a loaded ranker export.
        catalogue: the rows the indexes hold (their catalogue snapshot).
        recommender_dir / recommender_exact_dir: where the two recommenders go.
    """
    import scann  # noqa: F401  (registers ScaNN's ops: the ScaNN retrieval model loads)

    from recs.recommend import RecommenderExport

    columns = to_columns(catalogue, F.CANDIDATE_FEATURES)
    for retrieval_dir, target, scann_ops in ((scann_dir, recommender_dir, True),
                                             (exact_dir, recommender_exact_dir, False)):
        RecommenderExport(transform_output, tf.saved_model.load(retrieval_dir), ranker,
                          columns).save(target, scann=scann_ops)


def assemble(transform_output: Any, retrieval_model: tf.keras.Model,
             ranker_model: tf.keras.Model, catalogue: list[JsonDict], queries: ArrayDict,
             index_config: IndexConfig, serving_dir: str, version: int = 1) -> IndexReport:
    """Exports both models and the indexes as version `version` of the four served models
    under `serving_dir` (`<serving_dir>/<model>/<version>/`).

    Returns:
        The index gate's report.
    """
    def target(model: str) -> str:
        return version_dir(serving_dir, model, version)

    export_towers(transform_output, retrieval_model, target(TOWERS))
    export_ranker(transform_output, ranker_model, target(RANKER))
    report = export_indexes(target(TOWERS), catalogue, queries, index_config, target(RETRIEVAL),
                            target(RETRIEVAL_EXACT))
    export_recommenders(transform_output, target(RETRIEVAL), target(RETRIEVAL_EXACT),
                        ranker_model, catalogue, target(RECOMMENDER), target(RECOMMENDER_EXACT))
    return report


__all__ = ["assemble", "export_indexes", "export_ranker", "export_recommenders",
           "export_towers"]
