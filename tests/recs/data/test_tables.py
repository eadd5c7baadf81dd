"""`recs import`: interaction tables through a column mapping into the pipeline's inputs."""

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from recs import features as F
from recs.data.tables import ColumnMapping, import_tables, read_table, write_import
from recs_cli.main import main as cli

RATINGS = pd.DataFrame({
    "customer": ["a", "a", "b", "b", "c"],
    "sku": ["x1", "x2", "x1", "x3", "x2"],
    "stars": [5, 2, 4, 3.5, 1],
    "when": ["2024-01-02T10:00:00Z", "2024-01-01T09:00:00Z", "1704100000", "1704200000",
             "2024-01-03"],
})
MAPPING = ColumnMapping(user="customer", item="sku", rating="stars", timestamp="when",
                        age="years", segment="plan", genre="tags", release_year="year")


def _write(frame: pd.DataFrame, path) -> None:
    {".csv": lambda: frame.to_csv(path, index=False),
     ".parquet": lambda: frame.to_parquet(path, index=False),
     ".jsonl": lambda: frame.to_json(path, orient="records", lines=True)}[path.suffix]()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_each_table_format_imports_the_same_interactions(tmp_path, suffix):
    path = tmp_path / f"ratings{suffix}"
    _write(RATINGS, path)
    result = import_tables(path, MAPPING)
    data = result.data
    assert result.counts == {"rows_read": 5, "interactions_imported": 5, "dead_lettered": 0}
    # Time order: a's 2024-01-01 09:00 play (x2), b's 1704100000 (09:06:40), a's 2024-01-02
    # 10:00, b's 1704200000 (01-02 12:53), c's 2024-01-03.
    assert list(data.users) == ["a", "b", "a", "b", "c"]
    assert list(data.titles) == ["x2", "x1", "x1", "x3", "x2"]
    # positive_rating 4 -> 4 on the records' scale, 5 -> 5; below: 1 + 2 r / 4, rounded
    # (2 -> 2, 3.5 -> 2.75 -> 3, 1 -> 1.5 -> 2).
    assert list(data.ratings) == [2, 4, 5, 3, 2]
    assert data.timestamps[0] == 1704099600 and data.timestamps[1] == 1704100000
    assert set(data.catalogue) == {"x1", "x2", "x3"} and set(data.profiles) == {"a", "b", "c"}


def test_attribute_tables_fill_profiles_and_catalogue(tmp_path):
    _write(RATINGS, tmp_path / "r.csv")
    _write(pd.DataFrame({"customer": ["a", "b"], "years": [34, "n/a"], "plan": ["gold", ""]}),
           tmp_path / "u.csv")
    _write(pd.DataFrame({"sku": ["x1", "x2"], "tags": ["Drama|Comedy", ""],
                         "year": [1999, 2005]}), tmp_path / "i.parquet")
    data = import_tables(tmp_path / "r.csv", MAPPING, users=tmp_path / "u.csv",
                         items=tmp_path / "i.parquet").data
    assert data.profiles["a"] == {F.AGE: 34, F.COUNTRY: "", F.SUBSCRIPTION_TIER: "gold"}
    assert data.profiles["b"][F.AGE] == 0 and data.profiles["c"][F.SUBSCRIPTION_TIER] == ""
    assert data.catalogue["x1"][F.GENRE] == "Drama"
    assert data.catalogue["x1"]["genres"] == ["Drama", "Comedy"]
    assert data.catalogue["x2"][F.GENRE] == "unknown"
    # x3 has no row: the median of the known years (1999, 2005) -> 2002.
    assert data.catalogue["x3"][F.RELEASE_YEAR] == 2002


@pytest.mark.parametrize("mapping, message", [
    (ColumnMapping(user="client", item="sku"),
     r"user='client', but r.csv has no column 'client'; its columns are "
     r"\['customer', 'sku', 'stars', 'when'\]"),
    (ColumnMapping(user="customer", item="sku", rating="customer"),
     r"rating='customer' must hold numbers; .* values such as \['a', 'a', 'b'\]"),
    (ColumnMapping(user="customer", item="sku", weight="sku"), r"weight='sku' must hold numbers"),
    (ColumnMapping(user="customer", item="sku", timestamp="sku"),
     r"timestamp='sku' must hold Unix seconds or ISO-8601 date-times"),
])
def test_a_mapping_that_does_not_fit_names_the_column_and_the_expected_type(tmp_path, mapping,
                                                                           message):
    _write(RATINGS, tmp_path / "r.csv")
    with pytest.raises(ValueError, match=message):
        import_tables(tmp_path / "r.csv", mapping)


def test_attribute_columns_that_are_not_there_are_named(tmp_path):
    _write(RATINGS, tmp_path / "r.csv")
    _write(pd.DataFrame({"customer": ["a"], "age": [3]}), tmp_path / "u.csv")
    with pytest.raises(ValueError, match=r"age='years', but u.csv has no column 'years'"):
        import_tables(tmp_path / "r.csv", MAPPING, users=tmp_path / "u.csv")


@pytest.mark.parametrize("values, message", [
    ({"rating": "stars", "weight": "plays"}, "at most one of the two"),
    ({"positive_rating": 6.0}, r"positive_rating must be in \(0, max_rating = 5.0\]"),
    ({"max_rating": float("inf")}, "max_rating must be a finite number"),
    ({"user": 3}, "user must be a column name"),
    ({"positive_rating": "high"}, "positive_rating must be a number"),
    ({"item": ""}, "item must be the item id column's name"),
])
def test_mapping_rejects_bad_fields(values, message):
    with pytest.raises(ValueError, match=message):
        ColumnMapping(**values)


def test_hostile_rows_go_to_counted_dead_letters_and_the_rest_imports(tmp_path):
    frame = pd.DataFrame({
        "customer": ["a", "", "b", "c", "d", "e", "f", "g" * 600, "h"],
        "sku": ["x1", "x2", "x3", None, "x5", "x6", "x7", "x8", "x9"],
        "stars": ["5", "4", "NaN", "4", "inf", "-1", "1e308", "4", "three"],
        "when": ["1", "2", "3", "4", "5", "6", "7", "8", "yesterday-ish"],
    })
    _write(frame, tmp_path / "r.csv")
    result = import_tables(tmp_path / "r.csv", MAPPING)
    assert list(result.data.users) == ["a"]
    assert result.counts["rows_read"] == 9 and result.counts["dead_lettered"] == 8
    assert result.counts["dead_letter: user id empty or not a scalar"] == 2  # "" and 600 g's
    assert result.counts["dead_letter: item id empty or not a scalar"] == 1
    assert result.counts["dead_letter: rating not a finite number"] == 3  # NaN, inf, three
    assert result.counts["dead_letter: rating outside [0, 5]"] == 2  # -1, 1e308
    letter = next(d for d in result.dead_letters if d["row"] == 8)
    assert letter["source"] == "r.csv" and letter["values"]["stars"] == "three"


def test_nested_values_and_undecodable_bytes_are_rows_not_crashes(tmp_path):
    path = tmp_path / "r.jsonl"
    lines = [{"user": "a", "item": "x", "w": 3}, {"user": {"deep": [[[1]]]}, "item": "y", "w": 1},
             {"user": "b", "item": ["x"], "w": 1}, {"user": "c", "item": "z", "w": [1]},
             {"user": "d", "item": "z", "w": 0}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = import_tables(path, ColumnMapping(weight="w"))
    assert list(result.data.users) == ["a", "d"]
    assert list(result.data.ratings) == [5, 1]  # weight > 0 engaged, 0 an exposure
    assert result.counts["dead_lettered"] == 3
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"user,item\n\xff\xfe,\x00\x81\n")
    with pytest.raises(ValueError, match="does not parse as csv"):
        read_table(binary)
    with pytest.raises(ValueError, match=r"unknown table type '.xlsx'"):
        read_table(tmp_path / "r.xlsx")


def test_no_row_that_fits_is_a_clear_error(tmp_path):
    _write(pd.DataFrame({"user": [""], "item": ["x"]}), tmp_path / "r.csv")
    with pytest.raises(ValueError, match="none of its 1 rows fit the mapping"):
        import_tables(tmp_path / "r.csv", ColumnMapping())


def test_recs_import_writes_the_pipelines_inputs_and_dead_letters(tmp_path, capsys):
    _write(pd.concat([RATINGS, pd.DataFrame({"customer": [""], "sku": ["x9"], "stars": [4],
                                             "when": ["7"]})]), tmp_path / "r.csv")
    workdir = tmp_path / "work"
    assert cli(["import", "--interactions", str(tmp_path / "r.csv"), "--workdir", str(workdir),
                "--mapping", MAPPING.to_json()]) == 0
    counts = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    assert counts["records_written"] == 5 and counts["dead_lettered"] == 1
    letters = (workdir / "raw" / "import_dead_letters.jsonl").read_text().splitlines()
    assert len(letters) == 1 and json.loads(letters[0])["reason"].startswith("user id")
    examples = list(workdir.rglob("*.tfrecord.gz"))
    parsed = [tf.train.Example.FromString(raw.numpy()) for raw in
              tf.data.TFRecordDataset([str(p) for p in examples], compression_type="GZIP")]
    assert len(parsed) == 5
    # Every raw feature of the contract, with the mapping's values.
    assert set(F.RAW_FEATURE_DTYPES) <= set(parsed[0].features.feature)
    labels = [e.features.feature[F.LABEL].int64_list.value[0] for e in parsed]
    assert labels == [0, 1, 1, 0, 0]  # stars 2, 4, 5, 3.5, 1 in time order
    users = [json.loads(line) for line in (workdir / "raw" / "users.jsonl").read_text()
             .splitlines()]
    assert {u[F.USER_ID] for u in users} == {"a", "b", "c"}


def test_recs_import_reports_a_bad_mapping_without_a_traceback(tmp_path, capsys):
    _write(RATINGS, tmp_path / "r.csv")
    assert cli(["import", "--interactions", str(tmp_path / "r.csv"),
                "--workdir", str(tmp_path / "w"), "--mapping", '{"user": "nobody"}']) == 2
    assert "user='nobody', but r.csv has no column 'nobody'" in capsys.readouterr().err
    assert cli(["import", "--interactions", str(tmp_path / "r.csv"),
                "--workdir", str(tmp_path / "w"), "--mapping", "[1, 2]"]) == 2
    assert "must be a JSON object" in capsys.readouterr().err
    assert not np.any([(tmp_path / "w").exists()])
