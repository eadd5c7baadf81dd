"""The pipeline's Evaluator gate on the tiny world's ranker: a challenger worse than the
champion is refused."""

import pytest

from recs.contract.layout import RunLayout
from tfx_pipeline.workdir import pipeline_config


def _flipped_ranker(ranker_dir: str, out: str) -> str:
    """The ranker with its scores turned around (1 - p): AUC becomes 1 - AUC."""
    import tensorflow as tf

    from recs.contract.signatures import EXAMPLES, PROBABILITY, SERVING_TF_EXAMPLE

    module = tf.Module()
    module.ranker = tf.saved_model.load(ranker_dir)
    score = module.ranker.signatures[SERVING_TF_EXAMPLE]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES)])
    def flipped(examples):
        return {PROBABILITY: 1.0 - score(**{EXAMPLES: examples})[PROBABILITY]}

    module.flipped = flipped
    tf.saved_model.save(module, out, signatures={SERVING_TF_EXAMPLE: flipped})
    return out


@pytest.mark.slow
def test_evaluator_refuses_a_challenger_worse_than_the_champion(tiny_world, tmp_path):
    # The pipeline's own EvalConfig, run by TFMA as the Evaluator runs it: with the absolute
    # gate at 0, only the comparison with the champion (the last blessed ranker) can refuse.
    import tensorflow_model_analysis as tfma

    from tfx_pipeline.pipeline import BASELINE, CANDIDATE, eval_config

    config = eval_config(pipeline_config(RunLayout(tmp_path), min_ranker_auc=0.0,
                                         max_auc_drop=0.005))
    good = str(tiny_world.serving_dir / "ranker" / "1")
    bad = _flipped_ranker(good, str(tmp_path / "flipped"))

    def blessed(candidate: str, champion: str, out: str) -> bool:
        models = [tfma.default_eval_shared_model(path, model_name=name, eval_config=config)
                  for name, path in ((CANDIDATE, candidate), (BASELINE, champion))]
        tfma.run_model_analysis(eval_shared_model=models, eval_config=config,
                                data_location=tiny_world.examples_glob, output_path=out)
        return tfma.load_validation_result(out).validation_ok

    assert blessed(good, bad, str(tmp_path / "better"))
    assert not blessed(bad, good, str(tmp_path / "worse"))
