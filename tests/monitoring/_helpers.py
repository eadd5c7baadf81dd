"""Interaction records for the monitoring tests, built by hand."""

import numpy as np

from monitoring.outcomes import Records
from recs import features as F


def make_records(users, titles, labels, watch=None) -> Records:
    n = len(users)
    return Records({F.USER_ID: np.array(users, dtype=object),
                    F.TITLE_ID: np.array(titles, dtype=object), F.LABEL: np.array(labels),
                    F.WATCH_SECONDS: np.array(watch or [600.0] * n),
                    F.COMPLETED: np.zeros(n), F.LIKED: np.zeros(n)})
