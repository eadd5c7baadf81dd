"""Train on the newest day span: ImportExampleGen's date pattern over ingestion's day folders.

Ingestion writes one span per delivery day, `examples/day=YYYY-MM-DD/`. With the span
pattern, each pipeline run takes the newest day (span number = days since 1970-01-01), which
is how a daily schedule adds one span per run; the default pattern reads every day as one.

    python examples/daily_span_pipeline.py --workdir demo_output --out /tmp/daily.json
"""

import argparse
import pathlib

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs.contract.layout import RunLayout
from tfx_pipeline.workdir import pipeline_config
from tfx_pipeline import compile_for_kubeflow
from transforms.ingestion import SPAN_PATTERN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=pathlib.Path, required=True)
    parser.add_argument("--out", default="daily.json", help="the compiled Kubeflow v2 job")
    parser.add_argument("--image", default="registry.example/recs:latest")
    args = parser.parse_args()

    config = pipeline_config(RunLayout(args.workdir), examples_pattern=SPAN_PATTERN,
                             pipeline_name="recs-daily")
    path = compile_for_kubeflow(config, args.out, image=args.image)
    print(f"ImportExampleGen reads {config.examples_dir}/{SPAN_PATTERN}; compiled to {path}")
    print("Run it locally with tfx_pipeline.run_local(config) once a day's span has landed.")


if __name__ == "__main__":
    main()
