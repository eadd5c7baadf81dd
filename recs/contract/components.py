"""The TFX pipeline's component ids, the output keys and the files its run report reads.

The pipeline (`tfx_pipeline.pipeline`) names its components with these ids; ML-Metadata
records every artifact under "<pipeline>.<component id>" and the output key it was written
to; the run report (`monitoring.run_report`) looks them up by the same names, without loading
TFX. Constants only.
"""

IMPORT_EXAMPLE_GEN = "ImportExampleGen"
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "SchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
TRANSFORM = "Transform"
LATEST_BLESSED_RANKER = "LatestBlessedRanker"
LATEST_BLESSED_RETRIEVAL = "LatestBlessedRetrieval"
RETRIEVAL_TRAINER = "RetrievalTrainer"
RANKER_TRAINER = "RankerTrainer"
EVALUATOR = "Evaluator"
INDEX_BUILDER = "IndexBuilder"
RECOMMENDER_BUILDER = "RecommenderBuilder"
PUSHER_PREFIX = "Pusher_"
"""A Pusher's id is this and the served model's name (`pusher_id`)."""


def pusher_id(model: str) -> str:
    """The id of the Pusher of served model `model`: `Pusher_<model>`."""
    return f"{PUSHER_PREFIX}{model}"


def pushed_model(component_id: str) -> str | None:
    """The served model a Pusher's id names; None for any other component."""
    return component_id.removeprefix(PUSHER_PREFIX) if component_id.startswith(
        PUSHER_PREFIX) else None


# Output keys the report reads (the components' specs name them).
EXAMPLES = "examples"
STATISTICS = "statistics"
SCHEMA = "schema"
ANOMALIES = "anomalies"
MODEL = "model"
MODEL_RUN = "model_run"
BLESSING = "blessing"
PUSHED_MODEL = "pushed_model"

# Files the components write into their artifacts and the report reads.
METRICS_FILE = "metrics.json"
"""In a Trainer's `model_run`: held-out metrics, per-epoch history, warm start."""
TRAINING_CURVES_FILE = "training_curves.png"
"""In a Trainer's `model_run`: the history plotted."""
INDEX_REPORT_FILE = "index_report.json"
"""In the IndexBuilder's `blessing`: recall, latencies, the chosen and refused settings."""
