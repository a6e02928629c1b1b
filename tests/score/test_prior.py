"""The prior shift of logits: Bayes' rule, ranking kept, no overflow."""

import numpy as np
import pytest

from skysift.config import validate
from skysift.errors import ConfigError
from skysift.score import prior


def test_shift_matches_bayes_rule():
    z = np.array([-3.0, 0.0, 2.5])
    p_bal = 1 / (1 + np.exp(-z))
    pi = 1e-3
    # Bayes: odds scale by pi/(1-pi) relative to the balanced prior 1/2
    odds = p_bal / (1 - p_bal) * pi / (1 - pi)
    np.testing.assert_allclose(prior.probability(z, pi), odds / (1 + odds), rtol=1e-12)
    assert prior.probability([0.0], 0.5)[0] == 0.5


def test_order_kept_and_extremes_finite():
    z = np.array([-800.0, -1.0, 0.0, 1.0, 800.0, np.nan])
    p = prior.probability(z, 0.01)
    assert np.isnan(p[-1])
    assert np.all(np.diff(p[:-1]) >= 0) and np.isfinite(p[:-1]).all()
    assert p[0] == 0.0 and p[-2] == 1.0


def test_bad_prior_and_missing_task():
    with pytest.raises(ValueError):
        prior.shift_logits([0.0], 0.0)
    with pytest.raises(ConfigError, match="evaluate.prevalence"):
        validate({"tasks": [{"name": "ring", "label": "is_ring"}]})
    cfg = validate({})
    assert prior.prevalence_of(cfg, "lens") == 0.001
    with pytest.raises(ConfigError, match="ring"):
        prior.prevalence_of(cfg, "ring")
