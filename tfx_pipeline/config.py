"""The one config object `create_pipeline` takes."""

import dataclasses
import os

from recs.config import Config, IndexConfig, RankerConfig, RetrievalConfig, require


@dataclasses.dataclass(frozen=True)
class PipelineConfig(Config):
    """Everything the TFX pipeline needs, local or on Kubeflow.

    Attributes:
        pipeline_root: where TFX writes artifacts (local path or object storage).
        examples_dir: ingestion's tf.Example output, one `day=YYYY-MM-DD` folder per span.
        examples_pattern: ImportExampleGen's input pattern under `examples_dir`. The
            default reads every span as one; `transforms.ingestion.SPAN_PATTERN`
            ("day={YYYY}-{MM}-{DD}/*.tfrecord.gz") makes each run take the newest day as its
            span, numbered in days since 1970-01-01, for daily runs that add one span each.
        catalogue_path: the content catalogue (JSON lines) the index is built over.
        serving_base_dir: Pushers write `<serving_base_dir>/<model_name>/<version>/`.
        metadata_path: SQLite ML-Metadata file for local runs; empty for Kubeflow.
        pipeline_name: the pipeline's name in ML-Metadata and Kubeflow.
        min_ranker_auc: the Evaluator blesses a ranker whose eval AUC reaches this.
        max_auc_drop: champion/challenger: the Evaluator also scores the last blessed ranker
            on the same eval split and refuses a candidate whose AUC is lower by more than
            this (a retrain must not push a worse model). The first run has no champion.
        warm_start: the Trainers start from the last blessed model of their kind (the
            champion ranker; the towers the IndexBuilder last blessed): incremental learning
            across retrains, embedding rows remapped through the new vocabularies. The first
            run has none and starts afresh.
        enable_cache: TFX's execution cache: a component whose inputs and properties are
            unchanged since an earlier run reuses that run's outputs (a retrain on the same
            data skips ExampleGen, statistics, schema and Transform). Off by default: a
            scheduled run on new spans changes every input anyway.
        eval_buckets: ExampleGen's hash-bucket split, (train, eval).
        beam_args: Beam options of every Beam-based component.
        retrieval: two-tower model settings. `RetrievalConfig.item_item` (on by default)
            adds co-watching item-to-item scores to the towers' (fitted by the
            RetrievalTrainer after the towers, weight picked on the eval split, 0 included);
            when a weight above 0 wins, the exported embeddings have `item_item.rank` more
            dimensions, which the IndexBuilder and the services take as they come.
        ranker: ranker settings. `RankerConfig(tower_features=True)` makes the ranker read
            the retrieval towers' embeddings (the RankerTrainer then takes the
            RetrievalTrainer's model); off by default: measured, it helps on MovieLens and
            hurts on the synthetic streaming world (figures in the README).
        index: ScaNN settings and the recall gate.
    """

    pipeline_root: str
    examples_dir: str
    catalogue_path: str
    serving_base_dir: str
    metadata_path: str = ""
    examples_pattern: str = "*/*.tfrecord.gz"
    pipeline_name: str = "recs"
    min_ranker_auc: float = 0.6
    max_auc_drop: float = 0.005
    warm_start: bool = True
    enable_cache: bool = False
    eval_buckets: tuple[int, ...] = (4, 1)
    beam_args: tuple[str, ...] = ("--direct_num_workers=1",)
    retrieval: RetrievalConfig = RetrievalConfig()
    ranker: RankerConfig = RankerConfig()
    index: IndexConfig = IndexConfig()

    def __post_init__(self) -> None:
        for name in ("pipeline_root", "examples_dir", "catalogue_path", "serving_base_dir",
                     "examples_pattern"):
            require(bool(getattr(self, name)), name, "a non-empty path", getattr(self, name))
        require(0.0 <= self.min_ranker_auc <= 1.0, "min_ranker_auc", "in [0, 1]",
                 self.min_ranker_auc)
        require(0.0 <= self.max_auc_drop <= 1.0, "max_auc_drop", "in [0, 1]",
                self.max_auc_drop)
        require(len(self.eval_buckets) == 2 and min(self.eval_buckets) > 0, "eval_buckets",
                 "two positive ints (train, eval)", self.eval_buckets)

    def serving_dir(self, model_name: str) -> str:
        return os.path.join(self.serving_base_dir, model_name)
