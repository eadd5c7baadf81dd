"""Config round-trips and validation errors."""

import pytest

from recs.config import IndexConfig, RankerConfig, RetrievalConfig, TrainingConfig
from recs.data.synthetic import GeneratorConfig
from recs.models.encoders import FeatureSizes
from tfx_pipeline.config import PipelineConfig


@pytest.mark.parametrize("config", [
    TrainingConfig(batch_size=7, optimizer="sgd"),
    RetrievalConfig(tower_layers=(8, 4), temperature=0.5),
    RankerConfig(hidden_layers=(32,), dropout=0.2),
    IndexConfig(k=5, num_leaves=3),
    GeneratorConfig(num_users=3, num_titles=2, days=1),
    FeatureSizes(users=3, titles=4, countries=2, subscription_tiers=2, genres=5,
                 description_tokens=9),
    PipelineConfig(pipeline_root="r", examples_dir="e", catalogue_path="c",
                   serving_base_dir="s", ranker=RankerConfig(hidden_layers=(4, 2))),
])
def test_json_round_trip_is_exact(config):
    assert type(config).from_json(config.to_json()) == config


def test_ranker_defaults_are_the_documented_128_64():
    assert RankerConfig().hidden_layers == (128, 64)


def test_unknown_key_names_the_key_and_the_fields():
    with pytest.raises(ValueError, match=r"unknown keys \['layers'\].*tower_layers"):
        RetrievalConfig.from_dict({"layers": [3]})


@pytest.mark.parametrize("build, message", [
    (lambda: TrainingConfig(optimizer="rmsprop"), "optimizer must be one of"),
    (lambda: TrainingConfig(batch_size=0), "batch_size must be > 0; received 0"),
    (lambda: RetrievalConfig(tower_layers=()), "tower_layers must be a non-empty tuple"),
    (lambda: RetrievalConfig(selection="map_at_10"), "selection must be recall_at_K or "
     "ndcg_at_K with K > 0; received 'map_at_10'"),
    (lambda: RetrievalConfig(selection="ndcg_at_0"), "selection must be recall_at_K or"),
    (lambda: RetrievalConfig(selection=10), "selection must be recall_at_K or"),
    (lambda: RankerConfig(dropout=1.0), r"dropout must be in \[0, 1\); received 1.0"),
    (lambda: IndexConfig(min_recall=1.5), "min_recall must be in"),
    (lambda: GeneratorConfig(start_date="soon"), "start_date must be an ISO date"),
    (lambda: FeatureSizes(users=0, titles=1, countries=1, subscription_tiers=1, genres=1,
                          description_tokens=1), "users must be a positive int"),
    (lambda: PipelineConfig(pipeline_root="", examples_dir="e", catalogue_path="c",
                            serving_base_dir="s"), "pipeline_root must be a non-empty path"),
])
def test_bad_values_raise_value_error_naming_the_field(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_index_settings_scale_with_catalogue_size():
    # 10,000 candidates: sqrt -> 100 leaves; a quarter of them probed (> 4k * 100 / 10,000).
    resolved = IndexConfig(k=100).resolved(10_000)
    assert (resolved.num_leaves, resolved.num_leaves_to_search,
            resolved.num_reordering_candidates) == (100, 25, 400)
    # 400 candidates, k=100: 20 leaves; probe ceil(4 * 100 * 20 / 400) = 20, i.e. all of them.
    small = IndexConfig(k=100).resolved(400)
    assert (small.k, small.num_leaves, small.num_leaves_to_search) == (100, 20, 20)
