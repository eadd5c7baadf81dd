"""ScaNN candidate index against exact search, faiss (IVF, HNSW) and hnswlib, in one run.

Data: realistic clustered embeddings (a Zipf-weighted Gaussian mixture, L2-normalized, as the
towers produce) - 1M candidates x 64 dims and held-out queries from the same mixture. The
project's tuner picks ScaNN's setting for recall@100 >= 0.95 on tuning queries; every method is
then measured on other queries: recall@10 and @100 against exact search, single-query latency
(median, p99), batched QPS, build time and memory. Peers sweep their own search knob; each is
compared at the fastest setting that reaches the same recall@100.

    python benchmarks/index_scann.py                     # 1M x 64, 1,000 queries
    python benchmarks/index_scann.py --candidates 50000  # a quick look
"""

import argparse
import gc
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recs  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)
from common import current_rss_mb, latencies_ms, peak_rss_mb, timed, write_result  # noqa: E402
from recs.config import IndexConfig  # noqa: E402
from recs.evaluation import exact_top_k  # noqa: E402
from recs.index import tune_scann, validated_scann_layer  # noqa: E402

import faiss  # noqa: E402
import hnswlib  # noqa: E402
import tensorflow as tf  # noqa: E402
from scann.scann_ops.py import scann_ops_pybind  # noqa: E402

K = 100
TARGET = 0.95


def clustered_embeddings(rng: np.random.Generator, count: int, centers: np.ndarray,
                         weights: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Draws L2-normalized points around Zipf-weighted centers."""
    cluster = rng.choice(len(centers), size=count, p=weights)
    points = centers[cluster] + spread[cluster, None] * rng.standard_normal(
        (count, centers.shape[1]), dtype=np.float32)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def make_data(num_candidates: int, num_queries: int, dim: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clusters = max(16, num_candidates // 250)
    centers = rng.standard_normal((clusters, dim), dtype=np.float32) / np.sqrt(dim)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.8
    weights /= weights.sum()
    spread = rng.uniform(0.5, 1.0, clusters).astype(np.float32) / np.sqrt(dim)
    candidates = np.concatenate([
        clustered_embeddings(rng, min(100_000, num_candidates - start), centers, weights,
                             spread) for start in range(0, num_candidates, 100_000)])
    queries = clustered_embeddings(rng, 2 * num_queries, centers, weights, spread)
    return candidates, queries[:num_queries], queries[num_queries:]


def recalls(found: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    def at(k: int) -> float:
        return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))
    return {"recall_at_10": at(10), "recall_at_100": at(K)}


def measure(name: str, setting: dict, batch_search, single_search, queries: np.ndarray,
            truth: np.ndarray) -> dict:
    found, seconds = timed(lambda: batch_search(queries))
    point = {"method": name, **setting, **recalls(np.asarray(found), truth),
             "batch_qps": len(queries) / seconds,
             **latencies_ms(single_search, list(queries))}
    point["single_qps"] = 1000.0 / point["median_ms"]
    print(f"  {name:14s} {setting}  r@10 {point['recall_at_10']:.3f}  "
          f"r@100 {point['recall_at_100']:.3f}  median {point['median_ms']:.3f} ms  "
          f"p99 {point['p99_ms']:.3f} ms  batch {point['batch_qps']:.0f} q/s", flush=True)
    return point


def build(call) -> tuple[object, dict]:
    gc.collect()
    before = current_rss_mb()
    index, seconds = timed(call)
    return index, {"build_s": seconds, "memory_mb": current_rss_mb() - before}


def exact_tf(candidates: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    matrix = tf.constant(candidates)

    @tf.function(input_signature=[tf.TensorSpec([None, candidates.shape[1]], tf.float32)])
    def search(batch):
        return tf.math.top_k(tf.matmul(batch, matrix, transpose_b=True), k=K).indices

    def batched(all_queries):
        return np.concatenate([search(all_queries[i:i + 100]).numpy()
                               for i in range(0, len(all_queries), 100)])

    point = measure("exact (TF)", {}, batched, lambda q: search(q[None, :]).numpy(),
                    queries, truth)
    return {"build_s": 0.0, "memory_mb": candidates.nbytes / 2**20, "points": [point]}


def scann_sweep(candidates: np.ndarray, tuning: np.ndarray, queries: np.ndarray,
                truth: np.ndarray) -> tuple[dict, dict]:
    config = IndexConfig(k=K, min_recall=TARGET, tuning_margin=0.005)
    # As the IndexBuilder does: tune on one half of the held-out queries; the other half
    # validates the build that is served (`recs.index.validated_scann_layer`).
    half = len(tuning) // 2
    (chosen, trials), tune_s = timed(lambda: tune_scann(candidates, tuning[:half], config))
    print(f"  tuner: {len(trials)} trials in {tune_s:.0f} s -> leaves {chosen.num_leaves}, "
          f"search {chosen.num_leaves_to_search}, reorder {chosen.num_reordering_candidates}",
          flush=True)
    searcher, cost = build(lambda: (
        scann_ops_pybind.builder(candidates, K, "dot_product")
        .tree(num_leaves=chosen.num_leaves, num_leaves_to_search=chosen.num_leaves_to_search,
              training_sample_size=100_000)
        .score_ah(chosen.dimensions_per_block)
        .reorder(chosen.num_reordering_candidates).build()))
    searcher.set_num_threads(2)
    points = []
    probes = sorted({max(1, round(chosen.num_leaves_to_search * f))
                     for f in (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)})
    for leaves in probes:
        reorder = chosen.num_reordering_candidates
        points.append(measure(
            "ScaNN", {"leaves_to_search": leaves, "reorder": reorder},
            lambda q, n=leaves: searcher.search_batched_parallel(q, K, reorder, n)[0],
            lambda q, n=leaves: searcher.search(q, K, reorder, n), queries, truth))
    del searcher
    # The served path: the TFRS layer inside the retrieval SavedModel (TF ops), built and
    # validated as the IndexBuilder builds it, then measured on queries held out from both.
    ids = np.arange(len(candidates), dtype=np.int64)
    validation = tuning[half:]
    validation_truth = exact_top_k(candidates, validation, K)
    (layer, served_config, validated, _, rejected), layer_cost = build(
        lambda: validated_scann_layer(ids, candidates, validation, validation_truth, chosen,
                                      trials, TARGET))
    search = tf.function(lambda batch: layer(batch, k=K)[1],
                         input_signature=[tf.TensorSpec([None, candidates.shape[1]], tf.float32)])
    served = measure(
        "ScaNN (TFRS)", {"leaves_to_search": served_config.num_leaves_to_search,
                         "reorder": served_config.num_reordering_candidates},
        lambda q: search(q).numpy(), lambda q: search(q[None, :]).numpy(), queries, truth)
    tuner = {"seconds": tune_s, "chosen": chosen.to_dict(), "served": served_config.to_dict(),
             "validation_recall_at_100": validated, "rejected_on_validation": rejected,
             "served_recall_at_100_held_out": served["recall_at_100"],
             "trials": [vars(trial) for trial in trials]}
    return ({**cost, "points": points, "tuner": tuner},
            {**layer_cost, "points": [served]})


def faiss_ivf(candidates: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    dim = candidates.shape[1]
    nlist = int(round(len(candidates) ** 0.5))

    def make():
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = candidates[np.random.default_rng(0).choice(len(candidates),
                                                            min(len(candidates), 100_000),
                                                            replace=False)]
        index.train(sample)
        index.add(candidates)
        return index

    index, cost = build(make)
    points = []
    for nprobe in (1, 2, 4, 8, 16, 32, 64, 128):
        if nprobe > nlist:
            break
        index.nprobe = nprobe
        points.append(measure("faiss IVF", {"nlist": nlist, "nprobe": nprobe},
                              lambda q: index.search(q, K)[1],
                              lambda q: index.search(q[None, :], K)[1], queries, truth))
    return {**cost, "points": points}


def faiss_hnsw(candidates: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    def make():
        index = faiss.IndexHNSWFlat(candidates.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 100
        index.add(candidates)
        return index

    index, cost = build(make)
    points = []
    for ef in (100, 150, 200, 300, 400, 600):
        index.hnsw.efSearch = ef
        points.append(measure("faiss HNSW", {"M": 32, "ef_search": ef},
                              lambda q: index.search(q, K)[1],
                              lambda q: index.search(q[None, :], K)[1], queries, truth))
    return {**cost, "points": points}


def hnswlib_sweep(candidates: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    def make():
        index = hnswlib.Index(space="ip", dim=candidates.shape[1])
        index.init_index(max_elements=len(candidates), M=32, ef_construction=100, random_seed=0)
        index.set_num_threads(2)
        index.add_items(candidates, np.arange(len(candidates)))
        return index

    index, cost = build(make)
    points = []
    for ef in (100, 150, 200, 300, 400, 600):
        index.set_ef(ef)
        points.append(measure("hnswlib", {"M": 32, "ef": ef},
                              lambda q: index.knn_query(q, k=K, num_threads=2)[0],
                              lambda q: index.knn_query(q[None, :], k=K, num_threads=1)[0],
                              queries, truth))
    return {**cost, "points": points}


def at_target(method: dict) -> dict | None:
    """The fastest single-query point that reaches recall@100 >= TARGET."""
    reached = [p for p in method["points"] if p["recall_at_100"] >= TARGET]
    return min(reached, key=lambda p: p["median_ms"]) if reached else None


def plot(methods: dict[str, dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, method in methods.items():
        points = sorted(method["points"], key=lambda p: p["recall_at_100"])
        axis.plot([p["recall_at_100"] for p in points], [p["single_qps"] for p in points],
                  marker="o", label=name)
    axis.axvline(TARGET, color="grey", linestyle="--", linewidth=1)
    axis.set_yscale("log")
    axis.set_xlabel("recall@100 against exact search")
    axis.set_ylabel("single-query QPS (1 / median latency)")
    axis.set_title("Candidate index: recall vs speed")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--name", default="index_scann")
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(2)

    print(f"data: {args.candidates} x {args.dim}, {args.queries} queries", flush=True)
    candidates, tuning, queries = make_data(args.candidates, args.queries, args.dim, args.seed)
    truth, truth_s = timed(lambda: exact_top_k(candidates, queries, K))
    print(f"exact oracle (NumPy) in {truth_s:.1f} s", flush=True)

    methods: dict[str, dict] = {}
    print("exact", flush=True)
    methods["exact (TF)"] = exact_tf(candidates, queries, truth)
    print("ScaNN", flush=True)
    methods["ScaNN"], methods["ScaNN (TFRS)"] = scann_sweep(candidates, tuning, queries, truth)
    print("faiss IVF", flush=True)
    methods["faiss IVF"] = faiss_ivf(candidates, queries, truth)
    print("faiss HNSW", flush=True)
    methods["faiss HNSW"] = faiss_hnsw(candidates, queries, truth)
    print("hnswlib", flush=True)
    methods["hnswlib"] = hnswlib_sweep(candidates, queries, truth)

    summary = {name: {"build_s": m["build_s"], "memory_mb": m["memory_mb"],
                      "at_recall_0.95": at_target(m)} for name, m in methods.items()}
    exact = methods["exact (TF)"]["points"][0]
    scann = summary["ScaNN"]["at_recall_0.95"]
    ratios: dict[str, float | None] = {}
    if scann:
        ratios["scann_single_qps_over_exact"] = scann["single_qps"] / exact["single_qps"]
        ratios["scann_batch_qps_over_exact"] = scann["batch_qps"] / exact["batch_qps"]
        for peer in ("faiss IVF", "faiss HNSW", "hnswlib"):
            point = summary[peer]["at_recall_0.95"]
            ratios[f"scann_single_qps_over_{peer}"] = (
                scann["single_qps"] / point["single_qps"] if point else None)
            ratios[f"scann_batch_qps_over_{peer}"] = (
                scann["batch_qps"] / point["batch_qps"] if point else None)
    plot_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                             f"{args.name}.png")
    os.makedirs(os.path.dirname(plot_path), exist_ok=True)
    plot(methods, plot_path)
    figures = {"ScaNN": methods["ScaNN"], "ScaNN (TFRS)": methods["ScaNN (TFRS)"],
               "summary_at_recall_0.95": {k: summary[k] for k in ("ScaNN", "ScaNN (TFRS)")},
               "peak_rss_mb": peak_rss_mb(), "exact_oracle_s": truth_s}
    peers = {name: methods[name] for name in ("exact (TF)", "faiss IVF", "faiss HNSW",
                                                "hnswlib")}
    peers["summary_at_recall_0.95"] = {k: summary[k] for k in peers if k in summary}
    path = write_result(args.name, {**vars(args), "k": K, "target_recall_at_100": TARGET,
                                    "threads": 2, "plot": os.path.basename(plot_path)},
                        figures, peers, ratios)
    print("\nat recall@100 >= 0.95 (fastest setting per method):")
    for name, entry in summary.items():
        point = entry["at_recall_0.95"]
        text = (f"median {point['median_ms']:.3f} ms, p99 {point['p99_ms']:.3f} ms, "
                f"batch {point['batch_qps']:.0f} q/s, r@10 {point['recall_at_10']:.3f}"
                if point else "never reached")
        print(f"  {name:14s} build {entry['build_s']:6.1f} s  mem {entry['memory_mb']:7.0f} MB  "
              f"{text}")
    print("ratios:", {k: (round(v, 2) if v else v) for k, v in ratios.items()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
