"""`recs evaluate`'s command line: bad input refused in one line, exit status 2, before
anything is read or written (the protocols themselves: tests/tfx_pipeline/
test_evaluate_tables.py)."""

import pandas as pd
import pytest

from recs.data.tables import ColumnMapping
from recs_cli.main import main as cli
from tfx_pipeline.evaluate_tables import RESULT_FILE


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "ratings.csv"
    pd.DataFrame({"customer": ["c000", "c000", "c001"], "sku": ["i1", "i2", "i1"],
                  "stars": [5, 4, 2], "when": [1_700_000_000, 1_700_000_060,
                                               1_700_001_000]}).to_csv(path, index=False)
    return path


def test_recs_evaluate_reports_errors_without_a_traceback(table, tmp_path, capsys):
    out = tmp_path / "out"
    # A mapping that does not fit the table: import's error, word for word.
    assert cli(["evaluate", "--interactions", str(table), "--out", str(out),
                "--mapping", '{"user": "nobody"}']) == 2
    assert "user='nobody', but ratings.csv has no column 'nobody'" in capsys.readouterr().err
    assert not (out / RESULT_FILE).exists()
    (tmp_path / "mapping.json").write_text(
        ColumnMapping(user="customer", item="sku", rating="customer").to_json())
    assert cli(["evaluate", "--interactions", str(table), "--out", str(out),
                "--mapping", str(tmp_path / "mapping.json")]) == 2
    assert "rating='customer' must hold numbers" in capsys.readouterr().err
    assert cli(["evaluate", "--interactions", str(table), "--out", str(out),
                "--mapping", "[1, 2]"]) == 2
    assert "must be a JSON object" in capsys.readouterr().err
    assert cli(["evaluate", "--interactions", str(table), "--out", str(out),
                "--mapping", '{"user": "customer", "item": "sku"}',
                "--protocol", "leave-last-out"]) == 2
    assert "protocol 'leave-last-out' needs" in capsys.readouterr().err
