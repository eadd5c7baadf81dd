"""PNG plots of results people would rather look at than read."""

import io

import tensorflow as tf


def save_figure(figure, path: str) -> None:
    """Writes a matplotlib figure as PNG to a local or remote (gfile) path and closes it."""
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(buffer.getvalue())


def pyplot():
    """Imported on use: plotting is the only user, and matplotlib is slow to import."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def plot_training_curves(history: dict[str, list[float]], title: str, path: str) -> None:
    """Writes one line per metric of a Keras history, by epoch, to a PNG at `path`."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for name, values in sorted(history.items()):
        axis.plot(range(1, len(values) + 1), values, marker="o", label=name)
    axis.set_xlabel("epoch")
    axis.set_title(title)
    axis.legend()
    axis.grid(alpha=0.3)
    save_figure(figure, path)


def plot_index_tuning(trials: list[dict], target: float, path: str) -> None:
    """Writes the tuner's trials (recall against latency, one line per partitioning) to a PNG.

    Args:
        trials: `recs.index.Trial` fields as dicts.
        target: the recall the tuner aimed at, drawn as a vertical line.
        path: where the PNG goes.
    """
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for leaves in sorted({trial["num_leaves"] for trial in trials}):
        chosen = [t for t in trials if t["num_leaves"] == leaves and t["ms_per_query"]]
        chosen.sort(key=lambda t: t["recall"])
        axis.plot([t["recall"] for t in chosen], [t["ms_per_query"] for t in chosen],
                  marker="o", label=f"{leaves} partitions")
    axis.axvline(target, color="grey", linestyle="--", linewidth=1)
    axis.set_xlabel("recall@k against exact search")
    axis.set_ylabel("median ms per query")
    axis.set_title("ScaNN settings that reach the target")
    axis.legend()
    axis.grid(alpha=0.3)
    save_figure(figure, path)


def plot_reliability(table: dict, title: str, path: str) -> None:
    """Writes a reliability diagram (observed rate against mean prediction per bin) to a PNG.

    Args:
        table: `recs.evaluation.calibration` output.
        title: plot title; the ECE is appended.
        path: where the PNG goes.
    """
    plt = pyplot()

    filled = [b for b in table["bins"] if b["count"]]
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    axis.plot([b["mean_predicted"] for b in filled], [b["observed"] for b in filled],
              marker="o", label="model")
    axis.set_xlabel("mean predicted P(engaged)")
    axis.set_ylabel("observed engagement rate")
    axis.set_title(f"{title}\nECE {table['ece']:.4f}")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.legend()
    axis.grid(alpha=0.3)
    save_figure(figure, path)


def plot_experiment(comparisons: list[dict], title: str, path: str) -> None:
    """Writes each metric's relative lift of treatment over control with its confidence
    interval (error bar) to a PNG; significant metrics are drawn solid."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 0.6 + 0.6 * len(comparisons)))
    for row, comparison in enumerate(comparisons):
        control = comparison["control"] or float("nan")
        lift = 100.0 * comparison["difference"] / control
        low = 100.0 * comparison["ci_low"] / control
        high = 100.0 * comparison["ci_high"] / control
        axis.errorbar(lift, row, xerr=[[lift - low], [high - lift]], fmt="o", capsize=4,
                      color="tab:blue" if comparison["p_value"] < comparison["alpha"]
                      else "tab:gray")
    axis.axvline(0.0, color="black", linewidth=0.8)
    axis.set_yticks(range(len(comparisons)), [c["metric"] for c in comparisons])
    axis.set_xlabel("treatment vs control, % (confidence interval)")
    axis.set_title(title)
    axis.grid(alpha=0.3, axis="x")
    save_figure(figure, path)
