"""Capacity model: what 50M users, 1M titles and 2B events a day need, from figures measured here.

    python benchmarks/capacity_model.py [--users 50e6 --titles 1e6 --events-per-day 2e9 ...]

Reads the measured figures of this 2-core machine from `benchmarks/results/` (ingestion,
tf.Transform, training, ScaNN index, serving), applies the scaling assumptions listed in
`ASSUMPTIONS`, and writes `benchmarks/results/capacity_model.json` and `docs/capacity.md`. Every
derived number names the measured figure it comes from, so rerunning a benchmark updates the
model.
"""

import argparse
import dataclasses
import json
import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import RESULTS, write_result  # noqa: E402

from recs.config import RankerConfig, RetrievalConfig  # noqa: E402

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "capacity.md"
BYTES_PER_FLOAT = 4

ASSUMPTIONS = {
    "beam_scaling": "Beam stages (ingestion, Transform) scale linearly with worker cores at "
                    "70% efficiency (shuffle and stragglers); a measured core = a cloud vCPU.",
    "training_scaling": "MultiWorkerMirroredStrategy: each added worker adds 80% of one "
                        "worker's throughput (all-reduce of the dense and embedding gradients "
                        "over the network); workers have 8 vCPU = 4x this machine.",
    "optimizer_slots": "Adagrad keeps 1 slot per weight (two towers), Adam 2 (ranker).",
    "active_ids": "Ids seen fewer than 5 times in the training window share the OOV bucket "
                  "(tft vocabulary frequency_threshold); 60% of users qualify in a 7-day window.",
    "serving": "A service replica of 4 vCPU (2x this machine) sustains 2x the rate measured "
               "here within the p99 target; the model servers scale the same way.",
    "peak_factor": "Peak request rate = 3x the daily mean.",
    "requests_per_active_user": "6 recommendation requests per daily active user per day; "
                                "20% of users active on a given day.",
}


@dataclasses.dataclass(frozen=True)
class Workload:
    users: float = 50e6
    titles: float = 1e6
    events_per_day: float = 2e9
    window_days: int = 7
    epochs: int = 3
    beam_workers: int = 100
    beam_worker_vcpus: int = 4
    training_workers: int = 8
    p99_target_ms: float = 100.0
    # The library's defaults: the exported embedding is the towers' last layer plus the
    # item-to-item factors and the popularity prior's segments.
    embedding_dim: int = RetrievalConfig().embedding_dim
    output_dim: int = RetrievalConfig().output_dim
    ranker_embedding_dim: int = RankerConfig().embedding_dim


def _load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run benchmarks/{name}.py first.")
    return json.loads(path.read_text())


def measured() -> dict[str, float]:
    """The figures of this machine the model starts from, with where each came from."""
    ingestion = _load("ingestion")["figures"]
    transform = _load("transform_memory")["figures"]
    ml1m = _load("quality_ml1m")
    index = _load("index_scann")
    serving = _load("serving")
    # The service's default protocol (REST to the model server), its ramp to saturation.
    runs = {run["target_rps"]: run for run in serving["figures"]["ramp"]["rest"]}
    sustainable = max((rps for rps, run in runs.items() if run["p99_ms"] <= 100
                       and run["failed"] == 0), default=min(runs))
    largest = transform["runs"][-1]
    return {
        "cores": ml1m["machine"]["cores"],
        "ingestion_events_per_second": ingestion["events_per_second"],
        "records_per_event": ingestion["records_per_event"],
        "ingestion_peak_rss_mb": ingestion["peak_rss_mb"],
        "transform_rows_per_second": largest["rows_per_second"],
        "transform_peak_rss_mb": largest["peak_rss_mb"],
        "transform_rss_growth_mb_per_million_rows": transform["rss_growth_mb_per_million_rows"],
        "training_examples_per_second": ml1m["figures"]["training_examples_per_second"],
        "scann_memory_mb_per_million_64d": index["figures"]["ScaNN"]["memory_mb"],
        "scann_single_query_ms": index["figures"]["summary_at_recall_0.95"]["ScaNN"][
            "at_recall_0.95"]["median_ms"],
        "service_sustainable_rps": sustainable,
        "service_p99_ms_at_sustainable": runs[sustainable]["p99_ms"],
        "service_cpu_ms_per_request_at_sustainable": runs[sustainable]["cpu_ms_per_request"][
            "total"],
    }


def model(w: Workload, m: dict[str, float]) -> dict[str, dict[str, float]]:
    cores = m["cores"]
    gib = 2 ** 30
    trained_users = 0.6 * w.users
    towers = {
        "user_embedding_gib": trained_users * w.embedding_dim * BYTES_PER_FLOAT / gib,
        "title_embedding_gib": w.titles * w.embedding_dim * BYTES_PER_FLOAT / gib,
    }
    towers["with_adagrad_slots_gib"] = 2 * (towers["user_embedding_gib"]
                                            + towers["title_embedding_gib"])
    ranker_tables = (trained_users + w.titles) * w.ranker_embedding_dim * BYTES_PER_FLOAT / gib
    embeddings = {**towers, "ranker_tables_gib": ranker_tables,
                  "ranker_with_adam_slots_gib": 3 * ranker_tables}

    index_mb = m["scann_memory_mb_per_million_64d"] * (w.titles / 1e6) * (w.output_dim / 64)
    index = {"scann_index_mb": index_mb,
             "scann_single_query_ms_at_recall_0.95": m["scann_single_query_ms"]
             * (w.titles / 1e6)}

    beam_cores = w.beam_workers * w.beam_worker_vcpus * 0.7
    records_per_day = w.events_per_day * m["records_per_event"]
    per_core_events = m["ingestion_events_per_second"] / cores
    per_core_rows = m["transform_rows_per_second"] / cores
    window_rows = records_per_day * w.window_days
    data = {
        "records_per_day": records_per_day,
        "ingestion_core_hours_per_day": w.events_per_day / per_core_events / 3600,
        "ingestion_hours_on_workers": w.events_per_day / (per_core_events * beam_cores) / 3600,
        "transform_rows_in_window": window_rows,
        "transform_core_hours": window_rows / per_core_rows / 3600,
        "transform_hours_on_workers": window_rows / (per_core_rows * beam_cores) / 3600,
        "transform_worker_peak_rss_mb": m["transform_peak_rss_mb"]
        + m["transform_rss_growth_mb_per_million_rows"] * window_rows / 1e6 / w.beam_workers,
    }

    worker_rate = m["training_examples_per_second"] * 4  # 8 vCPU worker = 4x this machine
    cluster_rate = worker_rate * (1 + 0.8 * (w.training_workers - 1))
    positives = window_rows * 0.35  # the engaged share the two towers train on
    full_retrain_examples = (positives + window_rows) * w.epochs

    def workers_for(hours: float) -> int:
        needed = full_retrain_examples / (hours * 3600) / worker_rate  # in worker units
        return math.ceil(1 + (needed - 1) / 0.8) if needed > 1 else 1

    training = {
        "examples_per_second_per_worker": worker_rate,
        "examples_per_second_cluster": cluster_rate,
        "two_tower_hours": positives * w.epochs / cluster_rate / 3600,
        "ranker_hours": window_rows * w.epochs / cluster_rate / 3600,
        "workers_for_full_retrain_in_6_hours": workers_for(6.0),
        "incremental_daily_hours_one_epoch_newest_span":
        records_per_day * 1.35 / cluster_rate / 3600,
        "worker_memory_gib_mirrored": embeddings["with_adagrad_slots_gib"]
        + embeddings["ranker_with_adam_slots_gib"],
    }

    daily_active = 0.2 * w.users
    mean_rps = daily_active * 6 / 86400
    peak_rps = 3 * mean_rps
    replica_rps = 2 * m["service_sustainable_rps"]
    serving = {"mean_rps": mean_rps, "peak_rps": peak_rps,
               "replica_sustainable_rps": replica_rps,
               "service_replicas_at_peak": math.ceil(peak_rps / replica_rps),
               "measured_p99_ms_per_replica": m["service_p99_ms_at_sustainable"]}
    return {"embeddings": embeddings, "index": index, "data": data, "training": training,
            "serving": serving}


def _markdown(w: Workload, m: dict[str, float], out: dict[str, dict[str, float]]) -> str:
    def table(section: dict[str, float]) -> str:
        rows = "\n".join(f"| {key} | {value:,.2f} |" for key, value in section.items())
        return "| quantity | value |\n|---|---|\n" + rows

    lines = [
        "# Capacity model",
        "",
        "Generated by `python benchmarks/capacity_model.py` from the measured figures in",
        "`benchmarks/results/` (one 2-core machine); edit the script, not this file.",
        "",
        "## Workload",
        "",
        table({k: float(v) for k, v in dataclasses.asdict(w).items()}),
        "",
        "## Measured on this machine",
        "",
        table(m),
        "",
        "## Assumptions",
        "",
        *[f"* **{key}**: {text}" for key, text in ASSUMPTIONS.items()],
        "",
    ]
    for name, section in out.items():
        lines += [f"## {name.capitalize()}", "", table(section), ""]
    lines += [
        "## Reading it",
        "",
        "* The user tables dominate memory. Mirrored training keeps a full copy on every worker:",
        "  beyond roughly 30 GiB per worker move to `ParameterServerStrategy` (tables sharded",
        "  over parameter servers), or cap the vocabulary with a higher frequency threshold.",
        "* The index is small at 1M titles: one ScaNN replica per service pod is affordable;",
        "  stock TF Serving cannot load it (custom ops), so it stays in `scann-model-server`.",
        "* A full retrain (both models, every epoch over the whole window) does not fit a day on",
        "  the configured workers; the table gives the workers a 6-hour retrain needs. The",
        "  cheaper daily path is warm-started training on the newest span only (one epoch).",
        "* Transform over the window is the longest Beam stage. Its memory per worker was flat",
        "  here from 250k to 1M rows (the two-read form TFX uses); the one-read form grew by",
        "  about 3.5 GB per million rows (`transform_memory.json`).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Workload()
    for field in dataclasses.fields(Workload):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=float,
                            default=getattr(defaults, field.name))
    args = parser.parse_args()
    workload = Workload(**{f.name: type(getattr(defaults, f.name))(getattr(args, f.name))
                           for f in dataclasses.fields(Workload)})
    figures = measured()
    out = model(workload, figures)
    path = write_result("capacity_model", parameters=dataclasses.asdict(workload),
                        figures=out, peers={"measured_inputs": figures},
                        ratios={"peak_rps_per_replica": out["serving"]["peak_rps"]
                                / out["serving"]["replica_sustainable_rps"]})
    DOCS.parent.mkdir(exist_ok=True)
    DOCS.write_text(_markdown(workload, figures, out))
    print(DOCS.read_text())
    print(f"wrote {path} and {DOCS}")


if __name__ == "__main__":
    main()
