"""Reading the catalogue's JSON lines and columns: a bad line or a missing key is named."""

import pytest

from recs import features as F
from recs.data.catalogue import read_jsonl, to_columns


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "titles.jsonl"
    path.write_text('{"title_id": "t1"}\n\n{"title_id": \n')
    with pytest.raises(ValueError, match=r"titles.jsonl:3 is not valid JSON"):
        read_jsonl(str(path))
    path.write_text('["t1"]\n')
    with pytest.raises(ValueError, match=r"titles.jsonl:1 must be a JSON object; received list"):
        read_jsonl(str(path))


def test_to_columns_names_the_missing_key():
    with pytest.raises(ValueError, match=r"1 rows lack 'genre' \(first at row 1\)"):
        to_columns([{F.TITLE_ID: "a", F.GENRE: "x"}, {F.TITLE_ID: "b"}], (F.TITLE_ID, F.GENRE))
