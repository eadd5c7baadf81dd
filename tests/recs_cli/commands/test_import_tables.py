"""`--mapping` of `recs import` and `recs evaluate`: a ColumnMapping as JSON or in a file (the
import itself: tests/recs/data/test_tables.py)."""

import pytest

from recs.data.tables import ColumnMapping
from recs_cli.commands.import_tables import column_mapping


def test_a_mapping_is_json_or_a_file_holding_it(tmp_path):
    expected = ColumnMapping(user="customer", item="sku", rating="stars")
    assert column_mapping(' {"user": "customer", "item": "sku", "rating": "stars"}') == expected
    (tmp_path / "mapping.json").write_text(expected.to_json())
    assert column_mapping(str(tmp_path / "mapping.json")) == expected
    assert column_mapping("{}") == ColumnMapping()


def test_a_mapping_that_is_not_an_object_or_not_there_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--mapping must be a JSON object of ColumnMapping "
                                         "fields; received list"):
        column_mapping("[1, 2]")
    with pytest.raises(FileNotFoundError):
        column_mapping(str(tmp_path / "missing.json"))
