"""The feature encoder: outcome features refused, bags mean-pooled over their non-padding ids."""

import numpy as np
import pytest

from recs import features as F
from recs.models.encoders import FeatureEncoder
from tests.recs._helpers import SIZES


def test_encoder_rejects_outcome_features():
    with pytest.raises(ValueError, match=r"keys \['watch_seconds'\] are not model input"):
        FeatureEncoder((F.USER_ID, F.WATCH_SECONDS), SIZES, 4)


def test_encoder_mean_pools_bags_ignoring_padding():
    encoder = FeatureEncoder((F.PREFERRED_GENRES,), SIZES, 2)
    ids = np.array([[1, 2, 0], [0, 0, 0]])
    out = encoder({F.transformed_name(F.PREFERRED_GENRES): ids}).numpy()
    table = encoder.embeddings[F.PREFERRED_GENRES].get_weights()[0]
    np.testing.assert_allclose(out[0], (table[1] + table[2]) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[1], [0.0, 0.0])  # All padding -> zeros, not NaN.
