"""The standard protocols on imported tables, for real (tf.Transform on Beam's
DirectRunner, the default model through `train_retrieval`), on a tiny seeded table."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from recs.data.tables import ColumnMapping
from tfx_pipeline.evaluate_tables import (EASE, KS, LEAVE_LAST_OUT, MOST_POPULAR, PLOT_FILE,
                                          PROTOCOLS, RANDOM, RECBOLE, RESULT_FILE, DEFAULT,
                                          EvaluateConfig, LoggedDisplay, evaluate,
                                          resolve_protocols)

MAPPING = ColumnMapping(user="customer", item="sku", rating="stars", timestamp="when",
                        positive_rating=3)
USERS, TASTES, PER_TASTE = 80, 3, 40


def _ratings() -> pd.DataFrame:
    """80 users in 3 tastes of 40 items each (120 items): 11 items of their taste and 3 from
    anywhere, one a minute, rated 2-5 (a 2 is not engaged at positive_rating 3)."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(USERS):
        taste = user % TASTES
        items = [taste * PER_TASTE + j for j in rng.choice(PER_TASTE, 11, replace=False)]
        items += list(rng.choice(TASTES * PER_TASTE, 3, replace=False))
        for minute, item in enumerate(items):
            rows.append({"customer": f"c{user:03d}", "sku": f"i{item}",
                         "stars": int(rng.integers(2, 6)),
                         "when": 1_700_000_000 + 1000 * user + 60 * minute})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("tables") / "ratings.csv"
    _ratings().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def evaluated(table, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    result = evaluate(table, MAPPING, out, EvaluateConfig(epochs=1))
    return out, result


@pytest.mark.slow
def test_every_protocol_has_the_default_model_and_both_peers_at_every_k(evaluated):
    out, result = evaluated
    assert json.loads((out / RESULT_FILE).read_text()) == \
        json.loads(json.dumps(result, default=float))
    # Timestamps are mapped, so every protocol applies.
    assert list(result["protocols"]) == list(PROTOCOLS)
    for name, protocol in result["protocols"].items():
        assert protocol["ks"] == list(KS)  # 120 items: every cut-off is below the catalogue
        assert set(protocol["models"]) == {DEFAULT, MOST_POPULAR, EASE}
        for figures in protocol["models"].values():
            for k in KS:
                assert 0 <= figures[f"ndcg_at_{k}"] <= figures[f"recall_at_{k}"] <= 1
            assert figures["seconds"] >= figures["fit_seconds"] >= 0
        for peer in (MOST_POPULAR, EASE):
            ratio = protocol["ratios"][f"default_over_{peer}"]["ndcg_at_10"]
            assert ratio == pytest.approx(protocol["models"][DEFAULT]["ndcg_at_10"]
                                          / protocol["models"][peer]["ndcg_at_10"])
        # Co-watching is the whole signal of this table: EASE beats popularity wherever the
        # user's own training items are masked.
        if protocol["training_items_masked"]:
            assert protocol["models"][EASE]["ndcg_at_10"] > \
                protocol["models"][MOST_POPULAR]["ndcg_at_10"]
        # The Trainer chose the item-to-item weight on the validation split.
        assert "item_item_weight" in protocol["models"][DEFAULT]["trainer_metrics"]


@pytest.mark.slow
def test_what_each_protocol_ranks_is_counted(evaluated):
    _, result = evaluated
    # The positives: engaged rows (stars >= 3), each (user, item) pair once.
    frame = _ratings()
    engaged = frame[frame["stars"] >= 3]
    positives = len(engaged.drop_duplicates(["customer", "sku"]))
    assert result["counts"]["engaged"] == len(engaged)
    assert result["counts"]["positives"] == positives
    random, recbole, last = (result["protocols"][name]
                             for name in (RANDOM, RECBOLE, LEAVE_LAST_OUT))
    # TFRS: round(0.8 n) training pairs, the rest ranked one pair at a time, nothing masked;
    # the default model's validation pairs are held out of its training pairs.
    assert (random["level"], random["training_items_masked"]) == ("pairs", False)
    assert random["train_pairs"] == round(0.8 * positives)
    assert random["ranked"] == random["test_pairs"] == positives - random["train_pairs"]
    assert random["default_model_fit_pairs"] + random["validation_pairs"] == \
        random["train_pairs"]
    # Leave-last-out: every user has at least 3 positives, so one test and one validation
    # interaction each.
    assert last["ranked"] == last["test_pairs"] == last["validation_pairs"] == USERS
    assert last["train_pairs"] == positives - 2 * USERS
    assert recbole["level"] == "users" and recbole["ranked"] <= USERS
    assert recbole["train_pairs"] + recbole["validation_pairs"] + recbole["test_pairs"] == \
        positives


@pytest.mark.slow
def test_the_plot_is_a_png(evaluated):
    out, _ = evaluated
    with Image.open(out / PLOT_FILE) as image:
        assert image.format == "PNG"
        image.load()  # decodes every pixel
        width, height = image.size
    assert width > 400 and height > 3 * 200  # a row of panels per protocol


def test_leave_last_out_without_timestamps_names_the_protocol_and_the_column(table, tmp_path):
    untimed = ColumnMapping(user="customer", item="sku", rating="stars")
    with pytest.raises(ValueError, match="protocol 'leave-last-out' needs .* no timestamp "
                                         r"column \(timestamp=''\)"):
        evaluate(table, untimed, tmp_path, EvaluateConfig(protocols=(LEAVE_LAST_OUT,)))
    # Asked for nothing in particular, the protocols that apply run.
    assert resolve_protocols(EvaluateConfig(), untimed) == (RECBOLE, RANDOM)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("values, message", [
    ({"protocols": ("recbole", "temporal")}, "protocols must be distinct names of"),
    ({"core": 0}, "core must be >= 1"),
    ({"validation_share": 1.0}, r"validation_share must be in \(0, 1\)"),
])
def test_config_rejects_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        EvaluateConfig(**values)


def test_data_too_thin_for_a_protocol_is_a_clear_error(tmp_path):
    path = tmp_path / "r.csv"
    pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"],
                  "t": [1, 2, 3]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="protocol 'leave-last-out' leaves no test "
                                         "interactions in 3 positives of 2 users"):
        evaluate(path, ColumnMapping(timestamp="t"), tmp_path / "out",
                 EvaluateConfig(protocols=(LEAVE_LAST_OUT,)))


def test_without_a_terminal_the_stages_are_logged(caplog):
    display = LoggedDisplay()
    with caplog.at_level(logging.INFO, logger="tfx_pipeline.evaluate_tables"):
        with display.stage("protocol recbole") as stage:
            stage.show("EASE")
            stage.detail("80 users ranked")
        display.summary([("recbole NDCG@10 default / EASE", "1.10x")],
                        [("results", "evaluation.json")])
    assert caplog.messages == ["protocol recbole ...", "  EASE", "  80 users ranked",
                               "protocol recbole: done", "recbole NDCG@10 default / EASE: 1.10x",
                               "results: evaluation.json"]
