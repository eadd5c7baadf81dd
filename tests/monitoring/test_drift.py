"""Drift and skew: TFDV's comparators (L-infinity, Jensen-Shannon) on hand-made
distributions, at and around their thresholds."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

from monitoring import MonitorConfig, compare


CONFIG = MonitorConfig(categorical_features=("device",), numeric_features=("watch",),
                       linf_threshold=0.3, js_threshold=0.1)


def _stats(devices: dict[str, int], watch: np.ndarray):
    column = [name for name, count in devices.items() for _ in range(count)]
    return tfdv.generate_statistics_from_dataframe(
        pd.DataFrame({"device": column, "watch": watch[:len(column)]}))


@pytest.fixture(scope="module")
def reference():
    return _stats({"tv": 50, "mobile": 50}, np.linspace(0, 1, 100))


def _by_feature(measurements):
    return {m.feature: m for m in measurements}


def test_identical_spans_do_not_drift(reference):
    found = _by_feature(compare(_stats({"tv": 50, "mobile": 50}, np.linspace(0, 1, 100)),
                                reference, CONFIG))
    assert (found["device"].value, found["watch"].value) == (0.0, 0.0)
    assert not any(m.exceeded for m in found.values())


def test_linf_is_the_largest_change_of_a_value_share(reference):
    # tv 50% -> 90%, mobile 50% -> 10%: L-infinity = 0.4 > 0.3.
    moved = _by_feature(compare(_stats({"tv": 90, "mobile": 10}, np.linspace(0, 1, 100)),
                                reference, CONFIG))["device"]
    assert (moved.comparator, moved.value, moved.exceeded) == ("L_INFTY", pytest.approx(0.4),
                                                              True)
    # tv 50% -> 70%: 0.2, under the 0.3 threshold.
    small = _by_feature(compare(_stats({"tv": 70, "mobile": 30}, np.linspace(0, 1, 100)),
                                reference, CONFIG))["device"]
    assert (small.value, small.exceeded) == (pytest.approx(0.2), False)


def test_jensen_shannon_of_disjoint_and_half_overlapping_histograms(reference):
    disjoint = _by_feature(compare(_stats({"tv": 50, "mobile": 50}, np.linspace(5, 6, 100)),
                                   reference, CONFIG))["watch"]
    assert (disjoint.comparator, disjoint.value) == ("JENSEN_SHANNON_DIVERGENCE",
                                                     pytest.approx(1.0))
    # Half the mass moved away: the exact divergence is 0.311 bits; TFDV's histogram
    # approximation lands near it.
    half = np.concatenate([np.linspace(0, 1, 50), np.linspace(5, 6, 50)])
    moved = _by_feature(compare(_stats({"tv": 50, "mobile": 50}, half), reference,
                                CONFIG))["watch"]
    assert 0.25 < moved.value < 0.45 and moved.exceeded
    lenient = dataclasses.replace(CONFIG, js_threshold=0.5)
    assert not _by_feature(compare(_stats({"tv": 50, "mobile": 50}, half), reference,
                                   lenient))["watch"].exceeded


def test_serving_skew_is_measured_beside_drift(reference):
    serving = _stats({"tv": 100}, np.linspace(0, 1, 100))
    found = compare(reference, reference, CONFIG, serving=serving)
    skew = {m.feature: m for m in found if m.kind == "skew"}
    assert skew["device"].value == pytest.approx(0.5) and skew["device"].exceeded


def test_unknown_feature_in_config_is_a_clear_error(reference):
    with pytest.raises(ValueError, match=r"features \['age'\] are not in the reference"):
        compare(reference, reference, dataclasses.replace(CONFIG, numeric_features=("age",)))
