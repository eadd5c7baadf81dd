"""`recs serve-models --label` refuses a label it cannot parse before loading any model."""

import pytest

from recs_cli.main import main


@pytest.mark.parametrize("label", ["ranker", "ranker:canary", "ranker:canary=two",
                                   ":canary=2", "ranker:=2", "ranker:canary=0"])
def test_a_malformed_label_is_refused_with_the_expected_form(label, tmp_path, capsys):
    assert main(["serve-models", "--base", str(tmp_path), "--label", label]) == 2
    error = capsys.readouterr().err
    assert "MODEL:LABEL=VERSION" in error and repr(label) in error
