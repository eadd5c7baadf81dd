"""The plots: each writes a PNG file, and the training curves draw one axis per panel."""

import matplotlib.image
import numpy as np
import pytest

from recs.evaluation import calibration
from recs.plots import plot_training_curves


def test_plots_write_png_files(tmp_path):
    from recs.plots import plot_index_tuning, plot_reliability, plot_training_curves

    paths = [tmp_path / name for name in ("reliability.png", "curves.png", "tuning.png")]
    plot_reliability(calibration(np.array([0.1, 0.9]), np.array([0, 1])), "t", str(paths[0]))
    plot_training_curves({"loss": [1.0, 0.5]}, "t", str(paths[1]))
    plot_index_tuning([{"num_leaves": 4, "recall": 0.97, "ms_per_query": 0.1},
                       {"num_leaves": 4, "recall": 0.5, "ms_per_query": None}], 0.95,
                      str(paths[2]))
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in paths)


def _width(path) -> int:
    return matplotlib.image.imread(str(path)).shape[1]


def test_training_curves_draw_one_axis_per_panel(tmp_path):
    history = {"loss": [2.0, 1.5], "val_loss": [2.1, 1.8], "regularization_loss": [0.0, 0.0],
               "val_recall_at_10": [0.2, 0.3]}
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    plot_training_curves(history, "t", str(one), {"loss": "loss"})
    # recall_at_10 is only in the history as val_recall_at_10: drawn from that alone.
    plot_training_curves(history, "t", str(two), {"loss": "loss", "recall_at_10": "Recall@10"})
    assert _width(two) == pytest.approx(2 * _width(one), rel=0.02)
    with pytest.raises(ValueError, match=r"panels \['auc'\] are not in the history; it holds "
                                         r"\['loss', 'regularization_loss', 'val_loss'"):
        plot_training_curves(history, "t", str(tmp_path / "bad.png"), {"auc": "AUC"})
