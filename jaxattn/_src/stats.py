"""Statistics of success counts: exact binomial confidence intervals."""

from __future__ import annotations

import numpy as np
import scipy.stats


def clopper_pearson(successes: np.ndarray, trials: int, confidence: float = 0.95
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Exact binomial interval: Beta(α/2; k, n−k+1) ≤ p ≤ Beta(1−α/2; k+1, n−k)."""
  k = np.asarray(successes, float)
  alpha = 1.0 - confidence
  with np.errstate(invalid="ignore"):
    low = np.where(k > 0, scipy.stats.beta.ppf(alpha / 2, k, trials - k + 1), 0.0)
    high = np.where(k < trials, scipy.stats.beta.ppf(1 - alpha / 2, k + 1, trials - k), 1.0)
  return low, high
