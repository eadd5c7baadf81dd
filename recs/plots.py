"""PNG plots of results people would rather look at than read."""

import io
from collections.abc import Mapping, Sequence

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


def plot_training_curves(history: Mapping[str, Sequence[float]], title: str, path: str,
                         panels: Mapping[str, str] | None = None) -> None:
    """Writes a Keras history by epoch to a PNG: one axis per metric, its training and
    validation values on the same axis.

    Args:
        history: metric name -> one value per epoch; validation metrics are `val_<name>`.
        title: the figure's title.
        path: where the PNG goes.
        panels: metric name -> its axis label, in drawing order; `{"auc": "AUC"}` draws
            `auc` and `val_auc`, or only one of them if the other is not in `history`.
            None draws every metric of `history` under its own name.

    Raises:
        ValueError: a panel's metric is not in `history`, neither for training nor validation.
    """
    if panels is None:
        names = dict.fromkeys(key.removeprefix("val_") for key in history)
        panels = {name: name for name in names}
    missing = [name for name in panels if name not in history and f"val_{name}" not in history]
    if missing:
        raise ValueError(f"panels {missing} are not in the history; it holds "
                         f"{sorted(history)}.")
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False,
                                layout="constrained")
    for axis, (name, label) in zip(axes[0], panels.items()):
        for key, split in ((name, "training"), (f"val_{name}", "validation")):
            if key in history:
                values = history[key]
                axis.plot(range(1, len(values) + 1), values, marker="o", label=split)
        axis.set_xlabel("epoch")
        axis.set_title(label, fontsize="medium")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend()
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    save_figure(figure, path)


def plot_index_tuning(trials: list[dict], target: float, path: str,
                      chosen: Mapping[str, int] | None = None) -> None:
    """Writes the tuner's trials (recall against latency, one line per partitioning) to a PNG.

    Args:
        trials: `recs.index.Trial` fields as dicts.
        target: the recall the tuner aimed at, drawn as a vertical line.
        path: where the PNG goes.
        chosen: the settings the index was built with (`IndexReport.config`), marked with a
            star when a trial measured them.
    """
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for leaves in sorted({trial["num_leaves"] for trial in trials}):
        line = [t for t in trials if t["num_leaves"] == leaves and t["ms_per_query"]]
        line.sort(key=lambda t: t["recall"])
        axis.plot([t["recall"] for t in line], [t["ms_per_query"] for t in line],
                  marker="o", label=f"{leaves} partitions")
    settings = ("num_leaves", "num_leaves_to_search", "num_reordering_candidates")
    picked = [t for t in trials if chosen and t["ms_per_query"]
              and all(t[name] == chosen[name] for name in settings)]
    for trial in picked:
        axis.plot(trial["recall"], trial["ms_per_query"], marker="*", markersize=16,
                  color="black", linestyle="none", label="chosen")
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
