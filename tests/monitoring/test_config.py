"""The monitor's config: thresholds out of range and overlapping feature lists refused."""

import pytest

from monitoring import MonitorConfig


@pytest.mark.parametrize("kwargs, message", [
    ({"linf_threshold": 0.0}, "linf_threshold must be in"),
    ({"alert_drifted_features": 3, "retrain_drifted_features": 2},
     "alert_drifted_features must be positive"),
    ({"categorical_features": ("age",)}, "disjoint from numeric_features"),
])
def test_monitor_config_refuses_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MonitorConfig(**kwargs)
