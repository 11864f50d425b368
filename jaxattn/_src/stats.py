"""Statistics over trials: binomial intervals of success rates, order-statistic quantile
intervals."""

from __future__ import annotations

import math

import numpy as np


def _scipy_stats():
  """scipy.stats, imported on first use: it takes a second, and ``import jaxattn`` need not."""
  import scipy.stats

  return scipy.stats


def clopper_pearson(
  successes: np.ndarray, trials: int, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
  """Exact binomial interval: Beta(α/2; k, n−k+1) ≤ p ≤ Beta(1−α/2; k+1, n−k)."""
  k = np.asarray(successes, float)
  alpha = 1.0 - confidence
  with np.errstate(invalid="ignore"):
    low = np.where(k > 0, _scipy_stats().beta.ppf(alpha / 2, k, trials - k + 1), 0.0)
    high = np.where(k < trials, _scipy_stats().beta.ppf(1 - alpha / 2, k + 1, trials - k), 1.0)
  return low, high


def quantile_ranks(n: int, p: float, confidence: float = 0.95) -> tuple[int, int, int]:
  """(k, r, s): 1-based ranks of the p-quantile's estimate X_(k) and interval [X_(r), X_(s)].

  k = ⌈p·n⌉ (the smallest x with empirical CDF ≥ p). With B ~ Binomial(n, p)
  and α = 1 − confidence, equal tails:

    r = max{r ≥ 1 : P(B ≤ r − 1) ≤ α/2},   s = min{s ≤ n : P(B ≤ s − 1) ≥ 1 − α/2},

  so that P(X_(r) ≤ q_p ≤ X_(s)) ≥ P(r ≤ B ≤ s − 1) ≥ 1 − α for any
  distribution of the X (distribution-free; ties only add coverage). r = 0
  (s = n + 1) when no rank qualifies: that side of the interval is unbounded.
  """
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"n must be a positive integer, got {n!r}")
  if not 0.0 < p < 1.0:
    raise ValueError(f"p must be in (0, 1), got {p}")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  alpha = 1.0 - confidence
  cdf = _scipy_stats().binom.cdf(np.arange(n + 1), n, p)  # cdf[j] = P(B ≤ j)
  low = np.flatnonzero(cdf[:n] <= alpha / 2)  # candidates r − 1 = j, r ≤ n
  high = np.flatnonzero(cdf[:n] >= 1 - alpha / 2)  # candidates s − 1 = j, s ≤ n
  r = int(low[-1]) + 1 if low.size else 0
  s = int(high[0]) + 1 if high.size else n + 1
  k = min(n, max(1, math.ceil(p * n - 1e-9)))
  return k, r, s


def quantile_interval(
  values: np.ndarray, p: float, confidence: float = 0.95
) -> tuple[float, float, float]:
  """(estimate, low, high) of the p-quantile of the values' distribution, from order statistics.

  estimate = X_(k), interval [X_(r), X_(s)] with the ranks of
  ``quantile_ranks(n, p, confidence)`` over the sorted values
  X_(1) ≤ … ≤ X_(n); a side with no qualifying rank is −inf / +inf.
  Values may be +inf (a censored observation above every finite one: a
  trial whose threshold lies above the d grid), which then sorts last.
  """
  x = np.sort(np.asarray(values, float).ravel())
  if x.size == 0 or np.isnan(x).any():
    raise ValueError("values must be a non-empty array without NaN")
  k, r, s = quantile_ranks(x.size, p, confidence)
  low = float(x[r - 1]) if r >= 1 else -math.inf
  high = float(x[s - 1]) if s <= x.size else math.inf
  return float(x[k - 1]), low, high
