"""PNG plots of results people would rather look at than read."""

import io

import tensorflow as tf


def plot_training_curves(history: dict[str, list[float]], title: str, path: str) -> None:
    """Writes one line per metric of a Keras history, by epoch, to a PNG at `path`."""
    import matplotlib  # Imported here: plotting is the only user, and it is slow to import.

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, values in sorted(history.items()):
        axis.plot(range(1, len(values) + 1), values, marker="o", label=name)
    axis.set_xlabel("epoch")
    axis.set_title(title)
    axis.legend()
    axis.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(buffer.getvalue())
