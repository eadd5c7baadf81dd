"""Rolling training windows: the newest N day spans of ingestion's output as one pipeline input.

A retrain reads a window of recent spans, not the whole history. Locally the window is a folder
of day folders whose files are hard links to the spans' files (no copy; Beam's file matching
does not descend into symlinked folders, so directory links will not do); where links are not
possible (another device, object storage) the files are copied. Point
`PipelineConfig.examples_dir` at the returned folder; the default pattern reads every span in it.
"""

import os
import re

import tensorflow as tf

_DAY = re.compile(r"^day=\d{4}-\d{2}-\d{2}$")


def day_spans(examples_dir: str) -> list[str]:
    """The `day=YYYY-MM-DD` span folders under `examples_dir`, oldest first."""
    if not tf.io.gfile.isdir(examples_dir):
        return []
    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(examples_dir)
                  if _DAY.match(name.rstrip("/")))


def rolling_window(examples_dir: str, window_root: str, num_spans: int,
                   last_day: str = "") -> str:
    """Gathers the `num_spans` day spans ending at `last_day` (default: the newest).

    Args:
        examples_dir: ingestion's `examples/` folder (one `day=YYYY-MM-DD` folder per span).
        window_root: where window folders are made, one per (first day, last day).
        num_spans: spans in the window; fewer are taken when fewer exist.
        last_day: `YYYY-MM-DD` of the window's newest span; empty for the newest one.

    Returns:
        The window folder, `<window_root>/<first day>_<last day>`.

    Raises:
        ValueError: `num_spans` < 1, no day spans under `examples_dir`, or no span for
            `last_day`.
    """
    if num_spans < 1:
        raise ValueError(f"num_spans must be >= 1; received {num_spans}.")
    spans = day_spans(examples_dir)
    if not spans:
        raise ValueError(f"no day spans (day=YYYY-MM-DD folders) under {examples_dir!r}; run "
                         "ingestion first.")
    end = len(spans)
    if last_day:
        if f"day={last_day}" not in spans:
            raise ValueError(f"no span for last_day {last_day!r} under {examples_dir!r}; "
                             f"spans run from {spans[0]} to {spans[-1]}.")
        end = spans.index(f"day={last_day}") + 1
    chosen = spans[max(0, end - num_spans):end]
    window = os.path.join(window_root, f"{chosen[0][4:]}_{chosen[-1][4:]}")
    for span in chosen:
        source, target = os.path.join(examples_dir, span), os.path.join(window, span)
        tf.io.gfile.makedirs(target)
        for name in tf.io.gfile.listdir(source):
            destination = os.path.join(target, name)
            if tf.io.gfile.exists(destination):
                continue
            try:
                os.link(os.path.join(source, name), destination)
            except OSError:
                tf.io.gfile.copy(os.path.join(source, name), destination)
    return window
