"""Warm start from a saved model: dense layers copied, embedding rows remapped by vocabulary."""

import numpy as np
import pytest
import tensorflow as tf

from recs import features as F
from recs.config import RankerConfig, RetrievalConfig
from recs.models.encoders import FeatureSizes
from recs.models.ranker import DeepRanker
from recs.models.retrieval import TwoTowerModel, candidate_tower, query_tower
from recs.warm_start import load_frozen, warm_start

# Vocabularies of two training windows: u2 left, u4 arrived, and the order changed.
BASE = {F.USER_ID: [b"u1", b"u2", b"u3"], F.TITLE_ID: [b"t1", b"t2", b"t3", b"t4", b"t5"],
        F.COUNTRY: [b"de", b"fr"], F.SUBSCRIPTION_TIER: [b"basic", b"premium"],
        F.GENRE_VOCABULARY: [b"drama", b"comedy", b"horror"],
        F.DESCRIPTION_VOCABULARY: [f"w{i}".encode() for i in range(9)]}
NEW = {**BASE, F.USER_ID: [b"u3", b"u1", b"u4"],
       F.TITLE_ID: [b"t5", b"t4", b"t3", b"t2", b"t9"]}
SIZES = FeatureSizes(users=4, titles=6, countries=3, subscription_tiers=3, genres=4,
                     description_tokens=10)


def _batch(n: int, seed: int = 0) -> dict[str, tf.Tensor]:
    """Random transformed features within SIZES' id ranges."""
    rng = np.random.default_rng(seed)
    t = F.transformed_name
    ids = {F.USER_ID: SIZES.users, F.TITLE_ID: SIZES.titles, F.COUNTRY: SIZES.countries,
           F.SUBSCRIPTION_TIER: SIZES.subscription_tiers, F.GENRE: SIZES.genres,
           F.AGE: F.AGE_BUCKETS, F.HOUR: F.HOURS_PER_DAY}
    bags = {F.PREFERRED_GENRES: (SIZES.genres, F.MAX_PREFERRED_GENRES),
            F.HISTORY: (SIZES.titles, F.MAX_HISTORY),
            F.DESCRIPTION: (SIZES.description_tokens, F.MAX_DESCRIPTION_TOKENS)}
    features = {t(key): rng.integers(0, size, n) for key, size in ids.items()}
    features.update({t(key): rng.integers(0, size, (n, length))
                     for key, (size, length) in bags.items()})
    features[F.WATCHED] = rng.integers(0, SIZES.titles, (n, F.MAX_WATCHED))
    features[t(F.DEVICE_TYPE)] = np.eye(len(F.DEVICE_TYPES) + 1, dtype=np.float32)[
        rng.integers(0, len(F.DEVICE_TYPES) + 1, n)]
    for key in (F.POPULARITY, F.RELEASE_YEAR, F.GENRE_MATCH):
        features[t(key)] = rng.normal(size=n).astype(np.float32)
    return {key: tf.constant(value) for key, value in features.items()}


def _save(tmp_path, **parts: tf.keras.Model) -> str:
    module = tf.Module()
    for name, part in parts.items():
        setattr(module, name, part)
    path = str(tmp_path / "base")
    tf.saved_model.save(module, path)
    (tmp_path / "base" / "assets").mkdir(exist_ok=True)
    for name, tokens in BASE.items():
        (tmp_path / "base" / "assets" / name).write_bytes(b"\n".join(tokens) + b"\n")
    return path


def _built_ranker(config: RankerConfig = RankerConfig(), seed: int = 0) -> DeepRanker:
    tf.keras.utils.set_random_seed(seed)
    model = DeepRanker(SIZES, config)
    model(_batch(4))
    return model


def _table(model: tf.keras.Model, key: str) -> np.ndarray:
    encoder = next(m for m in model.submodules if hasattr(m, "embeddings")
                   and isinstance(m.embeddings, dict))
    return encoder.embeddings[key].embeddings.numpy()


def test_ranker_rows_follow_their_tokens_and_dense_layers_carry_over(tmp_path):
    base = _built_ranker(seed=1)
    path = _save(tmp_path, ranker=base)
    fresh = _built_ranker(seed=2)
    before = _table(fresh, F.USER_ID).copy()
    report = warm_start(fresh, path, "ranker", NEW.__getitem__)

    old, new = _table(base, F.USER_ID), _table(fresh, F.USER_ID)
    np.testing.assert_array_equal(new[0], old[2])        # u3: row 2 -> row 0
    np.testing.assert_array_equal(new[1], old[0])        # u1: row 0 -> row 1
    np.testing.assert_array_equal(new[2], before[2])     # u4 is new: its initialization
    np.testing.assert_array_equal(new[3], old[3])        # the out-of-vocabulary row
    # History ids are title ids + 1 with padding at 0: t5 (base row 5) -> new row 1.
    old_history, new_history = _table(base, F.HISTORY), _table(fresh, F.HISTORY)
    np.testing.assert_array_equal(new_history[1], old_history[5])
    np.testing.assert_array_equal(new_history[0], old_history[0])
    np.testing.assert_array_equal(fresh.output_layer.kernel.numpy(),
                                  base.output_layer.kernel.numpy())
    assert report.remapped[F.USER_ID] == pytest.approx(2 / 3)
    assert report.remapped[F.TITLE_ID] == pytest.approx(4 / 5)
    assert report.skipped == ()


def test_same_vocabularies_give_the_same_model(tmp_path):
    base = _built_ranker(seed=1)
    path = _save(tmp_path, ranker=base)
    fresh = _built_ranker(seed=2)
    warm_start(fresh, path, "ranker", BASE.__getitem__)
    features = _batch(16, seed=3)
    np.testing.assert_allclose(fresh(features).numpy(), base(features).numpy(), rtol=1e-6)


def test_a_changed_layer_is_skipped_and_trained_afresh(tmp_path):
    path = _save(tmp_path, ranker=_built_ranker(seed=1))
    wider = _built_ranker(RankerConfig(hidden_layers=(32, 64)), seed=2)
    first_kernel = wider.hidden[0].kernel.numpy().copy()
    report = warm_start(wider, path, "ranker", NEW.__getitem__)
    assert any("(168, 128) -> (168, 32)" in reason for reason in report.skipped)
    np.testing.assert_array_equal(wider.hidden[0].kernel.numpy(), first_kernel)
    assert report.remapped[F.USER_ID] == pytest.approx(2 / 3)


def test_towers_warm_start_part_by_part(tmp_path):
    config = RetrievalConfig()
    batch = _batch(4)
    base = TwoTowerModel(SIZES, config)
    base.query_tower(batch), base.candidate_tower(batch)
    path = _save(tmp_path, query_tower=base.query_tower, candidate_tower=base.candidate_tower)
    fresh = TwoTowerModel(SIZES, config)
    fresh.query_tower(batch), fresh.candidate_tower(batch)
    warm_start(fresh.query_tower, path, "query_tower", BASE.__getitem__)
    warm_start(fresh.candidate_tower, path, "candidate_tower", BASE.__getitem__)
    np.testing.assert_allclose(fresh.query_tower(batch), base.query_tower(batch), rtol=1e-6)
    np.testing.assert_allclose(fresh.candidate_tower(batch), base.candidate_tower(batch),
                               rtol=1e-6)


def test_errors_name_what_is_missing(tmp_path):
    path = _save(tmp_path, ranker=_built_ranker(seed=1))
    with pytest.raises(ValueError, match="no variables under 'towers'"):
        warm_start(_built_ranker(), path, "towers", NEW.__getitem__)
    (tmp_path / "base" / "assets" / F.USER_ID).unlink()
    with pytest.raises(ValueError, match="no vocabulary asset 'user_id'"):
        warm_start(_built_ranker(), path, "ranker", NEW.__getitem__)


def _towers(config: RetrievalConfig, seed: int) -> tuple[tf.keras.Model, tf.keras.Model]:
    tf.keras.utils.set_random_seed(seed)
    towers = query_tower(SIZES, config), candidate_tower(SIZES, config)
    for tower in towers:
        tower(_batch(4))
    return towers


def test_ranker_reads_loaded_towers_and_its_warm_start_leaves_them_alone(tmp_path):
    config = RetrievalConfig()
    trained = _towers(config, seed=1)
    retrieval = _save(tmp_path, query_tower=trained[0], candidate_tower=trained[1])
    loaded = _towers(config, seed=2)
    for tower in loaded:
        report = load_frozen(tower, retrieval, tower.name, BASE.__getitem__)
        assert report.skipped == () and set(report.remapped.values()) == {1.0}
    batch = _batch(8, seed=3)
    for tower, source in zip(loaded, trained):
        np.testing.assert_allclose(tower(batch), source(batch), rtol=1e-6)

    # A base ranker built around other towers: the warm start copies the ranker's own
    # layers and leaves the (frozen) towers as loaded.
    with_towers = RankerConfig(tower_features=True)
    tf.keras.utils.set_random_seed(4)
    base = DeepRanker(SIZES, with_towers, _towers(config, seed=5))
    base(batch)
    base_path = _save(tmp_path / "ranker", ranker=base)
    ranker = DeepRanker(SIZES, with_towers, loaded)
    ranker(batch)
    report = warm_start(ranker, base_path, "ranker", BASE.__getitem__)
    assert report.frozen == len(loaded[0].variables) + len(loaded[1].variables) == 18
    assert report.skipped == () and report.copied > 0
    np.testing.assert_array_equal(ranker.output_layer.kernel.numpy(),
                                  base.output_layer.kernel.numpy())
    for tower, source in zip(loaded, trained):
        np.testing.assert_allclose(tower(batch), source(batch), rtol=1e-6)


def test_load_frozen_refuses_a_part_that_does_not_fit(tmp_path):
    trained = _towers(RetrievalConfig(), seed=1)
    retrieval = _save(tmp_path, query_tower=trained[0], candidate_tower=trained[1])
    wider, _ = _towers(RetrievalConfig(tower_layers=(128, 32)), seed=2)
    with pytest.raises(ValueError, match=r"does not hold all of 'query_tower'.*shape"):
        load_frozen(wider, retrieval, "query_tower", BASE.__getitem__)
    trained[0].trainable = False
    with pytest.raises(ValueError, match="load the part before freezing it"):
        load_frozen(trained[0], retrieval, "query_tower", BASE.__getitem__)


def test_plain_towers_warm_start_and_load_from_towers_with_item_item_factors(tmp_path):
    # The Trainer warm-starts a fresh (plain) model from a base export whose towers carry
    # item-to-item factors; the ranker loads them frozen. Both find every tower variable.
    from recs.config import ItemItemConfig
    from recs.models.item_item import fit_item_item

    config = RetrievalConfig()
    batch = _batch(6, seed=3)
    base = TwoTowerModel(SIZES, config)
    plain = base.query_tower(batch).numpy(), base.candidate_tower(batch).numpy()
    rng = np.random.default_rng(0)
    base.attach_item_item(fit_item_item(rng.integers(0, 3, 30), rng.integers(0, 5, 30),
                                        SIZES.titles, ItemItemConfig(rank=4, l2=1.0)))
    assert base.query_tower(batch).shape == (6, 32 + 4)
    path = _save(tmp_path, query_tower=base.query_tower, candidate_tower=base.candidate_tower)

    fresh = TwoTowerModel(SIZES, config)
    fresh.query_tower(batch), fresh.candidate_tower(batch)
    frozen = _towers(config, seed=7)
    for tower, loaded, expected in zip((fresh.query_tower, fresh.candidate_tower), frozen,
                                       plain):
        report = warm_start(tower, path, tower.name, BASE.__getitem__)
        assert report.skipped == () and report.copied > 0
        np.testing.assert_allclose(tower(batch), expected, rtol=1e-6)
        report = load_frozen(loaded, path, tower.name, BASE.__getitem__)
        assert report.skipped == ()
        np.testing.assert_allclose(loaded(batch), expected, rtol=1e-6)
