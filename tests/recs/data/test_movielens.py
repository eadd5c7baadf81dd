"""The MovieLens adapters on the real files: 100K mapped into the interaction schema, 1M's
ratings, and missing files named."""

import numpy as np
import pytest

from recs import features as F


def test_movielens_100k_maps_into_the_interaction_schema(shared_data):
    from recs.data.movielens import interaction_records, read_ml100k

    data = read_ml100k(str(shared_data / "movielens-100k"))
    assert data.num_ratings == 100_000
    assert len(data.catalogue) == 1664  # 1,682 movies, duplicate titles collapsed.
    rows = np.arange(10)
    records = interaction_records(data, rows, reference=rows)
    assert all(set(r) == set(F.RAW_FEATURE_DTYPES) for r in records)
    for record, rating in zip(records, data.ratings[rows]):
        assert record[F.LABEL] == int(rating >= 4)
        assert record[F.WATCH_RATIO] == rating / 5
        assert 0 <= record[F.HOUR] < 24 and record[F.DEVICE_TYPE] == "web"
    # u.data's first row: user 196 rated "Kolya (1996)" (item 242) 3.
    assert (records[0][F.USER_ID], records[0][F.TITLE_ID]) == ("u196", "Kolya (1996)")
    assert records[0][F.RELEASE_YEAR] == 1997 and "comedy" in records[0][F.DESCRIPTION].lower()
    # History: the user's reference ratings strictly before this one, most recent first.
    # u196's rating at row 20 has earlier ratings of u196 to look back on.
    mine = np.flatnonzero(data.users == "u196")
    row = mine[np.argsort(data.timestamps[mine])[20]]
    full = interaction_records(data, [row], reference=mine)[0][F.HISTORY].split("|")
    earlier = mine[data.timestamps[mine] < data.timestamps[row]]
    expected = data.titles[earlier[np.argsort(-data.timestamps[earlier], kind="stable")]]
    assert len(full) == min(F.MAX_WATCHED, len(earlier))
    assert set(full) <= set(expected.tolist()) and data.titles[row] not in full
    assert full[0] in data.titles[earlier[data.timestamps[earlier] ==
                                          data.timestamps[earlier].max()]]
    # Derived features look only at the reference ratings.
    blind = interaction_records(data, rows, reference=np.array([], dtype=np.int64))
    assert all(r[F.PREFERRED_GENRES] == "" and r[F.POPULARITY] == 0.0 and r[F.HISTORY] == ""
               for r in blind)


def test_movielens_1m_fallback_ratings_load(shared_data):
    from recs.data.movielens import read_ml1m

    data = read_ml1m(str(shared_data / "movielens-1m"))
    assert data.num_ratings == 1_000_209
    assert len(data.catalogue) == 3706 and len(data.profiles) == 6040
    assert np.bincount(data.ratings)[1:].tolist() == [56174, 107557, 261197, 348971, 226310]


def test_missing_movielens_files_are_named(tmp_path):
    from recs.data.movielens import read_ml100k

    with pytest.raises(FileNotFoundError, match=r"lacks \['u.data'"):
        read_ml100k(str(tmp_path))
