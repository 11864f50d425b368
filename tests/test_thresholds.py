"""Per-trial verdicts and thresholds of min_d; order-statistic quantile intervals (ja.stats)."""

import math

import jax
import numpy as np
import pytest
import scipy.stats

import jaxattn as ja
from jaxattn._src.estimators import trial_thresholds

EPS1, EPS2 = 1.0, 0.5
GRID = (8, 16, 32, 64, 128)


def test_verdicts_and_thresholds_match_brute_force():
  """Every trial's verdict row is ja.verify on its own solution (keys from ja.trial_keys)."""
  sampler = ja.patterns.Sampler("random_regular", length=32, nnz=1, a_min=0.2)
  key, trials = jax.random.PRNGKey(5), 3
  res = ja.min_d(key, sampler, GRID, eps1=EPS1, eps2=EPS2, trials=trials, delta=0.5)
  assert res.verdicts.shape == (trials, len(GRID)) and res.verdicts.dtype == bool
  np.testing.assert_array_equal(res.successes, res.verdicts.sum(axis=0))
  pattern_keys, method_keys = ja.trial_keys(key, trials)
  for t in range(trials):
    pattern = sampler(pattern_keys[t])
    reports = [
      ja.verify(
        ja.construct.jl(method_keys[t], pattern, d, eps1=EPS1, eps2=EPS2),
        pattern,
        eps1=EPS1,
        eps2=EPS2,
      )
      for d in GRID
    ]
    row = np.array([bool(r.ok) for r in reports])
    near = np.array(
      [min(abs(float(r.ratio_error) - EPS1), abs(float(r.leak) - EPS2)) < 1e-4 for r in reports]
    )  # float32 ties at the tolerance may go either way
    assert np.all((row == res.verdicts[t]) | near), t
    passing_from = [g for g in range(len(GRID)) if row[g:].all()]
    expected = GRID[passing_from[0]] if passing_from else math.inf
    assert res.thresholds[t] == expected and res.first_success[t] == GRID[np.argmax(row)]
  assert np.isfinite(res.thresholds).all() and res.thresholds.min() > GRID[0]
  assert res.d_quantile >= res.d_min and res.d_median <= res.d_quantile


def test_thresholds_of_non_monotone_and_unreached_trials():
  verdicts = np.array(
    [
      [0, 1, 0, 1, 1],  # first success 2, threshold 4
      [1, 1, 1, 1, 1],  # everywhere: the bottom of the grid
      [0, 1, 1, 1, 0],  # fails at the top: not reached
      [0, 0, 0, 0, 0],
    ],
    bool,
  )
  thresholds, first = trial_thresholds((1, 2, 3, 4, 5), verdicts)
  np.testing.assert_array_equal(thresholds, [4, 1, np.inf, np.inf])
  np.testing.assert_array_equal(first, [2, 1, 2, np.inf])
  res = ja.MinDResult.from_verdicts((1, 2, 3, 4, 5), verdicts, delta=0.5)
  np.testing.assert_array_equal(res.successes, [1, 3, 2, 3, 2])
  assert res.d_min == 2 and res.d_median == 4 and res.d_quantile == 4
  assert res.d_median_low == -math.inf and res.d_median_high == math.inf  # T = 4: too few


@pytest.mark.parametrize("n, p", [(16, 0.5), (16, 0.9), (48, 0.5), (48, 0.9), (200, 0.9)])
def test_quantile_ranks_follow_their_definition(n, p):
  k, r, s = ja.stats.quantile_ranks(n, p)
  cdf = lambda j: scipy.stats.binom.cdf(j, n, p)  # P(B ≤ j)
  assert k == math.ceil(p * n)
  if r >= 1:
    assert cdf(r - 1) <= 0.025 and (r == n or cdf(r) > 0.025)  # the largest such r
  else:
    assert cdf(0) > 0.025
  if s <= n:
    assert cdf(s - 1) >= 0.975 and (s == 1 or cdf(s - 2) < 0.975)  # the smallest such s
  else:
    assert cdf(n - 1) < 0.975
  if 1 <= r and s <= n:
    assert cdf(s - 1) - cdf(r - 1) >= 0.95


def test_quantile_interval_coverage_by_simulation():
  """On thresholds drawn from a coarse grid (ties) the interval covers the true quantile ≥ 95%."""
  rng = np.random.default_rng(0)
  grid = np.array([64, 72, 80, 88, 96, 104, 112, 128])
  weights = np.array([1, 3, 6, 8, 6, 4, 2, 1], float)
  cdf = np.cumsum(weights) / weights.sum()
  for p, n in ((0.5, 24), (0.9, 48)):
    truth = grid[np.searchsorted(cdf, p)]  # the smallest x with F(x) ≥ p
    draws = rng.choice(grid, size=(2000, n), p=weights / weights.sum())
    intervals = np.array([ja.stats.quantile_interval(x, p)[1:] for x in draws])
    covered = np.mean((intervals[:, 0] <= truth) & (truth <= intervals[:, 1]))
    assert covered >= 0.95, (p, covered)
    estimate, low, high = ja.stats.quantile_interval(draws[0], p)
    assert low <= estimate <= high and estimate == np.sort(draws[0])[math.ceil(p * n) - 1]


def test_quantile_interval_censored_and_bad_input():
  estimate, low, high = ja.stats.quantile_interval([5.0] * 10 + [math.inf] * 10, 0.5)
  assert estimate == 5.0 and low == 5.0 and high == math.inf
  with pytest.raises(ValueError, match="p must be"):
    ja.stats.quantile_ranks(10, 1.0)
  with pytest.raises(ValueError, match="non-empty"):
    ja.stats.quantile_interval([], 0.5)


def test_trial_keys_do_not_depend_on_the_number_of_trials():
  """What lets ``distinct`` treat a T = 1 scan as the first trial of a larger point."""
  key = jax.random.PRNGKey(3)
  for few, many in zip(ja.trial_keys(key, 1), ja.trial_keys(key, 16)):
    np.testing.assert_array_equal(few[0], many[0])
