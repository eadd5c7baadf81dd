"""`recs abtest`'s sequential design: a config that round-trips and refuses bad values."""

import pytest

from monitoring.abtest import SequentialDesign
from monitoring.sequential import OBRIEN_FLEMING, POCOCK


def test_the_design_round_trips_and_defaults_to_obrien_fleming():
    assert SequentialDesign(14).spending == OBRIEN_FLEMING
    design = SequentialDesign(14, POCOCK, aa_splits=200, seed=3)
    assert SequentialDesign.from_json(design.to_json()) == design


@pytest.mark.parametrize("values, message", [
    ({"looks": 0}, "looks must be a whole number of daily looks >= 1, e.g. 14; received 0"),
    ({"looks": 2.0}, "looks must be a whole number"),
    ({"looks": 5, "spending": "linear"},
     r"spending must be one of \('obrien_fleming', 'pocock'\); received 'linear'"),
    ({"looks": 5, "aa_splits": -1}, "aa_splits must be a whole number >= 0"),
])
def test_bad_designs_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        SequentialDesign(**values)
