"""Score ingested interactions with the pushed ranker over TF Serving's REST and gRPC APIs.

Works against the local TF Serving-protocol server (`recs serve-models`) and against the
`tensorflow/serving` image serving the same `ranker` model: both speak the same protocol.

    python examples/score_with_tf_serving.py --examples 'demo_output/ingested/examples/*/*.gz'
"""

import argparse

import numpy as np
import tensorflow as tf

import recs  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from recs import features as F
from recs.contract.signatures import EXAMPLES, PROBABILITY, SERVING_TF_EXAMPLE
from serving.clients import GrpcClient, RestClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", required=True, help="glob of ingested TFRecord.gz files")
    parser.add_argument("--rest", default="http://localhost:8501")
    parser.add_argument("--grpc", default="localhost:8500")
    parser.add_argument("--count", type=int, default=8)
    args = parser.parse_args()

    files = tf.io.gfile.glob(args.examples)
    if not files:
        raise SystemExit(f"no files match {args.examples!r}; run `make demo` first")
    examples = [record.numpy() for record in
                tf.data.TFRecordDataset(files, compression_type="GZIP").take(args.count)]
    labels = [tf.io.parse_single_example(x, {F.LABEL: tf.io.FixedLenFeature([], tf.int64)})[
        F.LABEL].numpy() for x in examples]
    # Serialized tf.Examples through the `serving_tf_example` signature: REST sends them as
    # {"b64": ...}, gRPC as a string TensorProto; the clients do that.
    rest = RestClient(args.rest).predict("ranker", {EXAMPLES: examples},
                                         signature=SERVING_TF_EXAMPLE)[PROBABILITY]
    grpc = GrpcClient(args.grpc)
    try:
        via_grpc = grpc.predict("ranker", {EXAMPLES: examples},
                                signature=SERVING_TF_EXAMPLE)[PROBABILITY]
    finally:
        grpc.close()
    for label, p_rest, p_grpc in zip(labels, rest, via_grpc):
        print(f"engaged={label}  P(engaged) REST {p_rest:.4f}  gRPC {p_grpc:.4f}")
    np.testing.assert_allclose(rest, via_grpc, rtol=1e-5)


if __name__ == "__main__":
    main()
