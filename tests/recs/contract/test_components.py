"""The pipeline's component ids: the names the run report looks up are the ones the pipeline
gives its components."""

from recs.contract import components as C
from recs.contract.models import SERVED_MODELS


def test_a_pushers_id_names_its_model_and_back():
    assert C.pusher_id("ranker") == "Pusher_ranker"
    assert [C.pushed_model(C.pusher_id(model)) for model in SERVED_MODELS] == list(
        SERVED_MODELS)
    assert C.pushed_model(C.RANKER_TRAINER) is None


def test_the_pipeline_names_its_components_with_the_contracts_ids(tmp_path):
    from recs.contract.layout import RunLayout
    from tfx_pipeline.pipeline import create_pipeline
    from tfx_pipeline.workdir import pipeline_config

    ids = {component.id for component in
           create_pipeline(pipeline_config(RunLayout(tmp_path))).components}
    named = {value for name, value in vars(C).items()
             if name.isupper() and isinstance(value, str) and value[:1].isupper()
             and name != "PUSHER_PREFIX"}
    assert named <= ids
    assert {C.pusher_id(model) for model in SERVED_MODELS} <= ids
