"""tf.Transform memory as the span grows: does the preprocessing stay within a fixed budget?

    python benchmarks/transform_memory.py --rows 250000,500000,1000000

For each size, writes a span of interaction tf.Examples (1M-user / 100k-title id spaces, Zipf
activity and popularity, descriptions and watch histories) and runs the project's
`preprocessing_fn` on Beam's multi-process DirectRunner the way TFX's Transform executor does:
one read of the span for the analyzers, a second read for the transformation (so no stage
holds the span). The peer in the same run is the one-read form
(`AnalyzeAndTransformDataset` over one PCollection), which the DirectRunner must materialize for
its second consumer: the usual source of "Transform runs out of memory" reports.

Peak memory is the whole process tree's (the runner and its worker processes), sampled every
0.2 s. Writes benchmarks/results/transform_memory.json.
"""

import argparse
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import recs  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)
from common import run_in_process, write_result  # noqa: E402

import numpy as np  # noqa: E402

WORDS = [f"w{i}" for i in range(5000)]
GENRES = ["drama", "comedy", "action", "documentary", "kids", "horror", "romance", "scifi"]
DEVICES = ["tv", "mobile", "tablet", "web"]


def write_span(path: pathlib.Path, rows: int, users: int, titles: int, seed: int = 7,
               shards: int = 4) -> None:
    """Writes `rows` interaction examples in the ingested schema, in `shards` TFRecord files."""
    import tensorflow as tf

    from recs import features as F
    from recs.features import to_example

    rng = np.random.default_rng(seed)
    title_genre = rng.integers(0, len(GENRES), titles)
    title_words = rng.integers(0, len(WORDS), (titles, 12))
    title_year = rng.integers(1960, 2027, titles)
    title_duration = rng.integers(600, 9000, titles)
    popularity = 1.0 / np.arange(1, titles + 1) ** 0.9
    path.mkdir(parents=True, exist_ok=True)
    writers = [tf.io.TFRecordWriter(str(path / f"part-{i:05d}.tfrecord")) for i in range(shards)]
    chunk = 50_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        user = np.minimum(rng.zipf(1.3, n), users) - 1
        title = rng.choice(titles, n, p=popularity / popularity.sum())
        watch = rng.uniform(0, 1, n) * title_duration[title]
        history = rng.integers(0, titles, (n, 10))
        for i in range(n):
            t = title[i]
            record = {
                F.USER_ID: f"u{user[i]:07d}", F.AGE: int(18 + user[i] % 60),
                F.COUNTRY: ("us", "de", "br", "in")[user[i] % 4],
                F.SUBSCRIPTION_TIER: ("basic", "standard", "premium")[user[i] % 3],
                F.PREFERRED_GENRES: f"{GENRES[user[i] % 8]}|{GENRES[(user[i] // 8) % 8]}",
                F.HISTORY: "|".join(f"t{h:06d}" for h in history[i, : 1 + i % 10]),
                F.DEVICE_TYPE: DEVICES[i % 4], F.HOUR: int(i % 24), F.TIMESTAMP: 1767225600 + i,
                F.TITLE_ID: f"t{t:06d}", F.GENRE: GENRES[title_genre[t]],
                F.RELEASE_YEAR: int(title_year[t]), F.POPULARITY: float(popularity[t] * 1e4),
                F.DESCRIPTION: " ".join(WORDS[w] for w in title_words[t]),
                F.DURATION_SECONDS: int(title_duration[t]), F.WATCH_SECONDS: float(watch[i]),
                F.WATCH_RATIO: float(watch[i] / title_duration[t]), F.LIKED: int(i % 7 == 0),
                F.SKIPPED: int(i % 5 == 0), F.COMPLETED: int(watch[i] > 0.9 * title_duration[t]),
                F.LABEL: int(watch[i] > 0.5 * title_duration[t]),
            }
            writers[(start + i) % shards].write(to_example(record))
    for writer in writers:
        writer.close()


def run_transform(pattern: str, out: str, beam_args: list[str], reads: int) -> None:
    """Analyzes and transforms the span; `reads` = 2 as TFX does, 1 for the shared-read form."""
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.public import tfxio

    from recs import features as F
    from transforms.preprocessing import preprocessing_fn

    schema = schema_utils.schema_from_feature_spec(F.raw_feature_spec())
    source = tfxio.TFExampleRecord(file_pattern=pattern, schema=schema)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        with tft_beam.Context(temp_dir=f"{out}/tmp"):
            analyzed = pipeline | "ReadForAnalysis" >> source.BeamSource()
            config = source.TensorAdapterConfig()
            if reads == 2:
                transform_fn = (analyzed, config) | tft_beam.AnalyzeDataset(preprocessing_fn)
                data = pipeline | "ReadForTransform" >> source.BeamSource()
                transformed = ((data, config), transform_fn) | tft_beam.TransformDataset(
                    output_record_batches=True)
            else:
                transformed, transform_fn = (
                    (analyzed, config)
                    | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn,
                                                          output_record_batches=True))
            _ = transform_fn | tft_beam.WriteTransformFn(f"{out}/transform_fn")
            _ = (transformed[0]
                 | "CountRows" >> beam.Map(lambda batch: batch[0].num_rows)
                 | beam.CombineGlobally(sum)
                 | beam.io.WriteToText(f"{out}/rows"))


def measure(pattern: str, beam_args: list[str], reads: int) -> dict[str, float]:
    """Runs `run_transform` in a fresh process; wall time and the tree's peak RSS."""
    out = tempfile.mkdtemp(prefix="tft-bench-")
    seconds, peak = run_in_process(run_transform, pattern, out, beam_args, reads)
    rows = sum(int(p.read_text()) for p in pathlib.Path(out).glob("rows*"))
    return {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds,
            "peak_rss_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="250000,500000,1000000")
    parser.add_argument("--peer-rows", default="250000,500000",
                        help="sizes also run in the one-read form")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--titles", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", default="transform_memory")
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",")]
    peer_sizes = [int(n) for n in args.peer_rows.split(",") if n]
    beam_args = ["--direct_running_mode=multi_processing",
                 f"--direct_num_workers={args.workers}"]
    root = pathlib.Path(tempfile.mkdtemp(prefix="tft-span-"))
    two_reads, one_read = [], []
    for rows in sorted(set(sizes) | set(peer_sizes)):
        span = root / f"rows={rows}"
        write_span(span, rows, args.users, args.titles)
        pattern = str(span / "*.tfrecord")
        if rows in sizes:
            two_reads.append(measure(pattern, beam_args, reads=2))
            print("two reads", two_reads[-1], flush=True)
        if rows in peer_sizes:
            one_read.append(measure(pattern, beam_args, reads=1))
            print("one read", one_read[-1], flush=True)
    growth = np.polyfit([r["rows"] / 1e6 for r in two_reads],
                        [r["peak_rss_mb"] for r in two_reads], 1)[0] if len(two_reads) > 1 else 0
    peer_growth = (np.polyfit([r["rows"] / 1e6 for r in one_read],
                              [r["peak_rss_mb"] for r in one_read], 1)[0]
                   if len(one_read) > 1 else 0)
    budget_mb = 4096
    projected = two_reads[-1]["peak_rss_mb"] + growth * (10 - two_reads[-1]["rows"] / 1e6)
    by_rows = {r["rows"]: r for r in two_reads}
    path = write_result(
        args.name,
        parameters={"rows": sizes, "peer_rows": peer_sizes, "users": args.users,
                    "titles": args.titles, "beam_args": beam_args,
                    "budget_mb": budget_mb,
                    "form": "TFX Transform's: analyzers and transformation read the span "
                            "separately"},
        figures={"runs": two_reads, "rss_growth_mb_per_million_rows": growth,
                 "projected_peak_rss_mb_at_10M_rows": projected,
                 "within_budget_at_10M_projected": bool(projected <= budget_mb)},
        peers={"one_read": one_read, "one_read_rss_growth_mb_per_million_rows": peer_growth},
        ratios={f"one_read_peak_over_two_reads_at_{r['rows']}": r["peak_rss_mb"]
                / by_rows[r["rows"]]["peak_rss_mb"] for r in one_read if r["rows"] in by_rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
