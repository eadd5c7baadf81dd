"""The run report in a real browser (slow): `recs generate` -> `recs ingest` -> the TFX
pipeline on LocalDagRunner (small data, short training) -> `recs report`, then Debian's
headless Chromium (installed by scripts/system-deps.sh) renders the page: every image decodes,
the run's key numbers are on it, and its screenshot is not blank. On the way: the terminal's
pipeline stage and the Trainers' per-epoch curves."""

import io
import json
import pathlib
import re
import shutil
import subprocess

import pytest

from recs.config import IndexConfig, RankerConfig, RetrievalConfig, TrainingConfig
from recs.contract.layout import RunLayout
from tfx_pipeline.workdir import pipeline_config

pytestmark = pytest.mark.slow  # A LocalDagRunner run: minutes.

_EPOCHS = 2
_K = 10
_CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu",
                   "--disable-background-networking", "--disable-component-update",
                   "--disable-sync", "--no-first-run", "--hide-scrollbars")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[RunLayout, str]:
    """A small run's work directory, and what its pipeline stage printed."""
    from rich.console import Console as RichConsole

    from recs_cli.console import Console
    from recs_cli.demo import run_pipeline
    from recs_cli.main import main

    workdir = RunLayout(tmp_path_factory.mktemp("run"))
    assert main(["generate", "--out", str(workdir.raw), "--users", "300", "--titles", "60",
                 "--days", "3", "--seed", "7"]) == 0
    assert main(["ingest", "--raw", str(workdir.raw), "--out", str(workdir.ingested)]) == 0
    fast = TrainingConfig(batch_size=128, epochs=_EPOCHS, learning_rate=0.05,
                          optimizer="adagrad")
    config = pipeline_config(
        workdir, min_ranker_auc=0.5, index=IndexConfig(k=20, min_recall=0.7),
        # Recall@10 of 60 titles: Recall@100, the default, would be 1 from the first epoch.
        # The towers' curve and the item-to-item weights are both scored by Recall@10.
        retrieval=RetrievalConfig(training=fast, eval_k=_K, selection=f"recall_at_{_K}"),
        ranker=RankerConfig(training=TrainingConfig(batch_size=128, epochs=_EPOCHS,
                                                    learning_rate=0.01)))
    terminal = io.StringIO()
    run_pipeline(Console(RichConsole(file=terminal, width=120), live=False), config,
                 "TFX pipeline")
    assert main(["report", "--workdir", str(workdir.root)]) == 0
    return workdir, terminal.getvalue()


def _chromium(profile: pathlib.Path, *arguments: str) -> str:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium not found: `make test` installs Debian's chromium "
                    "(scripts/system-deps.sh); install it with apt-get install chromium")
    # A fresh profile per call: nothing cached or remembered between renders.
    done = subprocess.run([binary, *_CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           *arguments], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_pipeline_stage_shows_every_component_and_trainers_write_epoch_curves(run):
    workdir, printed = run
    from ml_metadata.metadata_store import metadata_store

    from tfx_pipeline.pipeline import metadata_store_config

    store = metadata_store.MetadataStore(metadata_store_config(str(workdir.metadata)))
    components = [c.name.split(".", 1)[1] for c in store.get_contexts_by_type("node")]
    # One line per finished component under the stage, then the stage's own line.
    for name in components:
        assert re.search(rf"^    {re.escape(name)} +\d", printed, re.MULTILINE), (name, printed)
    assert "✓ TFX pipeline" in printed

    retrieval, = (workdir.pipeline_root / "RetrievalTrainer" / "model_run").iterdir()
    outputs = json.loads((retrieval / "metrics.json").read_text())
    recall = outputs["history"][f"val_recall_at_{_K}"]
    assert len(recall) == _EPOCHS and len(outputs["history"]["loss"]) == _EPOCHS
    # The last epoch's validation recall is the towers' final one; the item-to-item blend's
    # weight 0 (the towers alone) ranks the same rows with each row's played titles left out,
    # which can only lift a pair's title.
    assert outputs["metrics"][f"recall_at_{_K}_item_item_weight_0"] >= recall[-1]
    assert 0.0 < recall[-1] < 1.0  # Not saturated: the curve can show progress.
    ranker, = (workdir.pipeline_root / "RankerTrainer" / "model_run").iterdir()
    history = json.loads((ranker / "metrics.json").read_text())["history"]
    for name in ("auc", "val_auc", "log_loss", "val_log_loss"):
        assert 1 <= len(history[name]) <= _EPOCHS, name


def test_report_renders_in_chromium_with_every_image_and_the_key_numbers(run, tmp_path):
    import matplotlib.image

    workdir, _ = run
    page = workdir.root / "report.html"
    dom = _chromium(tmp_path / "profile-dom", "--virtual-time-budget=10000", "--dump-dom",
                    page.as_uri())
    total = int(re.search(r'data-images-total="(\d+)"', dom).group(1))
    loaded = int(re.search(r'data-images-loaded="(\d+)"', dom).group(1))
    # Both Trainers' curves, the reliability diagram, the index's recall against latency.
    assert total >= 4 and loaded == total

    text = re.sub(r"<script.*?</script>|<style.*?</style>|<[^>]+>", " ", dom, flags=re.S)
    ingestion = json.loads((workdir.ingested / "ingestion_report.json").read_text())
    ranker, = (workdir.pipeline_root / "RankerTrainer" / "model_run").iterdir()
    auc = json.loads((ranker / "metrics.json").read_text())["metrics"]["auc"]
    blessing, = (workdir.pipeline_root / "IndexBuilder" / "blessing").iterdir()
    index = json.loads((blessing / "index_report.json").read_text())
    for number in (f"{ingestion['events_read']:,}", f"{ingestion['records_written']:,}",
                   f"{auc:.3f}", f"{index['recall_at_k']:.3f}"):
        assert number in text, number
    for model in workdir.serving.iterdir():  # Every pushed version, read from ML-Metadata.
        version, = model.iterdir()
        assert version.name in text, model.name

    shot = tmp_path / "report.png"
    _chromium(tmp_path / "profile-shot", "--window-size=1200,1600", f"--screenshot={shot}",
              page.as_uri())
    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[:2] == (1600, 1200) and pixels.std() > 0.05  # Not a blank page.
