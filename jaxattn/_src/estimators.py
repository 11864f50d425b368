"""Estimators of d from per-trial verdicts over a d grid (docs/definitions.md §2, §5).

d_min = min{d : successes(d)/T ≥ 1 − δ} with Clopper–Pearson intervals on the
rates; per trial t its threshold d*_t (the smallest grid d from which it
verifies at every larger grid d) and first success (the paper's scan); d_50
and d_{1−δ}, order statistics of the T thresholds with distribution-free
intervals. Host-side NumPy only: no JAX.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from jaxattn._src.stats import clopper_pearson, quantile_interval


class MinDResult(NamedTuple):
  """Outcome of ``min_d``: per-trial verdicts over the d grid, success counts and estimators of d.

  ``d_min`` = min{d : successes(d)/T ≥ 1 − δ} (§2), None when no grid d
  reaches it; ``ci_low``/``ci_high`` are Clopper–Pearson intervals on the
  success rates at ``confidence``.

  Per trial t (None when built by ``from_counts``, which has counts only):
  ``verdicts[t, g]`` whether the trial verifies at ``d_grid[g]``;
  ``evaluated[t, g]`` whether that verdict was computed (None: every one
  was). An adaptive search (``min_d``'s ``schedule``) leaves (t, g) not
  evaluated and imputes them by monotonicity (``impute_verdicts``): failing
  at or below the trial's highest failure, verifying above it. Counts,
  rates, d_min and the estimators below are those of the imputed verdicts;
  ``non_monotone`` counts the trials with a verdict of 1 below a 0 among
  the evaluated ones. ``thresholds[t]`` = d*_t, the smallest grid d from which the trial
  verifies at every larger grid d; ``first_success[t]`` the first grid d at
  which it verifies (the paper's ascending scan). Both are +inf where the
  trial never qualifies on the grid (``not reached``: d*_t lies above the
  grid; it fails at the top), and both equal ``d_grid[0]`` for a trial that
  verifies everywhere (d*_t ≤ d_grid[0]: the bottom of the grid is a bound).

  Estimators over the T thresholds (``ja.stats.quantile_interval``):
  ``d_median`` = X_(⌈T/2⌉) and ``d_quantile`` = X_(⌈(1−δ)T⌉) of the sorted
  thresholds, each with a distribution-free interval [X_(r), X_(s)] at
  ``confidence`` (``*_low``, ``*_high``), at grid resolution. +inf: the order
  statistic is a trial that was not reached; −inf/+inf bounds: too few trials
  for a rank on that side. With δ = 0, d_quantile is the largest threshold
  and its interval is unbounded. Since a trial that verifies from d*_t on verifies
  at d*_t, d_quantile ≥ d_min, with equality when every trial's verdicts are
  monotone in d.
  """

  d_min: int | None
  d_grid: np.ndarray  # int [G]
  successes: np.ndarray  # int [G]
  trials: int
  success_rate: np.ndarray  # float [G]
  ci_low: np.ndarray  # float [G]
  ci_high: np.ndarray  # float [G]
  verdicts: np.ndarray | None = None  # bool [T, G]
  thresholds: np.ndarray | None = None  # float [T]: grid d, +inf = not reached
  first_success: np.ndarray | None = None  # float [T]: grid d, +inf = never verified
  d_median: float | None = None
  d_median_low: float | None = None
  d_median_high: float | None = None
  d_quantile: float | None = None
  d_quantile_low: float | None = None
  d_quantile_high: float | None = None
  certified: bool | None = None  # every verdict that of exact arithmetic (``verify``)
  levels_on_host: int = 0  # (trial, grid d) verdicts settled by ``exact_level``
  evaluated: np.ndarray | None = None  # bool [T, G]; None: every verdict was computed
  non_monotone: int = 0  # trials with an evaluated success below an evaluated failure

  def verdict_states(self) -> np.ndarray:
    """The verdicts as int8 [T, G]: 1 verifies, 0 fails, ``NOT_EVALUATED`` (−1) not computed;
    ``from_verdicts`` reads them back."""
    states = np.asarray(self.verdicts, np.int8)
    return states if self.evaluated is None else np.where(self.evaluated, states, NOT_EVALUATED)

  @classmethod
  def from_counts(
    cls,
    d_grid: Sequence[int],
    successes: np.ndarray,
    trials: int,
    delta: float,
    confidence: float = 0.95,
  ) -> MinDResult:
    """The result for ``successes[g]`` of T = ``trials`` at each ``d_grid[g]``:
    d_min = min{d : successes/T ≥ 1 − δ}, rates and Clopper–Pearson intervals."""
    successes = np.asarray(successes)
    needed = math.ceil((1.0 - delta) * trials - 1e-9)  # successes/T ≥ 1 − δ, free of rounding
    passing = np.flatnonzero(successes >= needed)
    low, high = clopper_pearson(successes, trials, confidence)
    return cls(
      d_min=int(d_grid[passing[0]]) if passing.size else None,
      d_grid=np.asarray(d_grid),
      successes=successes,
      trials=trials,
      success_rate=successes / trials,
      ci_low=low,
      ci_high=high,
    )

  @classmethod
  def from_verdicts(
    cls, d_grid: Sequence[int], verdicts: np.ndarray, delta: float, confidence: float = 0.95
  ) -> MinDResult:
    """The result for per-trial ``verdicts`` [T, G]: bool (every one computed), or int8 states
    with ``NOT_EVALUATED`` (−1) where not computed, imputed by ``impute_verdicts``.
    ``from_counts`` of the column sums, the thresholds and first successes of
    ``trial_thresholds`` and the quantile estimators."""
    states = np.asarray(verdicts)
    evaluated = None if states.dtype == bool else states != NOT_EVALUATED
    verdicts = impute_verdicts(states)
    trials = verdicts.shape[0]
    thresholds, first = trial_thresholds(d_grid, verdicts)
    median = quantile_interval(thresholds, 0.5, confidence)
    quantile = (
      quantile_interval(thresholds, 1.0 - delta, confidence)
      if delta > 0
      else (float(thresholds.max()), -math.inf, math.inf)
    )
    return cls.from_counts(d_grid, verdicts.sum(axis=0), trials, delta, confidence)._replace(
      verdicts=verdicts,
      thresholds=thresholds,
      first_success=first,
      evaluated=None if evaluated is None or evaluated.all() else evaluated,
      non_monotone=int(np.sum(non_monotone(states))),
      d_median=median[0],
      d_median_low=median[1],
      d_median_high=median[2],
      d_quantile=quantile[0],
      d_quantile_low=quantile[1],
      d_quantile_high=quantile[2],
    )


def trial_thresholds(d_grid: Sequence[int], verdicts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(d*_t, first success_t) of every trial t from its verdicts bool [T, G] over ``d_grid``.

  d*_t = d_grid[min{g : verdicts[t, g'] for all g' ≥ g}] and
  first_t = d_grid[min{g : verdicts[t, g]}]; +inf where the set is empty
  (d*_t: the trial fails at the top of the grid). float [T] each.
  """
  grid = np.asarray(d_grid, float)
  verdicts = np.asarray(verdicts, bool)
  from_here = np.logical_and.accumulate(verdicts[:, ::-1], axis=1)[:, ::-1]  # all of g.. pass
  thresholds = np.where(from_here[:, -1], grid[np.argmax(from_here, axis=1)], np.inf)
  first = np.where(verdicts.any(axis=1), grid[np.argmax(verdicts, axis=1)], np.inf)
  return thresholds, first


# A (trial, grid d) an adaptive search did not evaluate (``MinDResult.verdict_states``).
NOT_EVALUATED = -1


def highest_failure(states: np.ndarray) -> np.ndarray:
  """The index of each trial's highest failing level, −1 where none: int [T]."""
  failed = np.asarray(states) == 0
  return np.where(failed.any(-1), failed.shape[-1] - 1 - np.argmax(failed[:, ::-1], -1), -1)


def non_monotone(states: np.ndarray) -> np.ndarray:
  """Whether each trial verifies (1) at some level below its highest failure: bool [T]."""
  states = np.atleast_2d(states)
  below = np.arange(states.shape[-1]) < highest_failure(states)[:, None]
  return np.any((states == 1) & below, -1)


def impute_verdicts(states: np.ndarray) -> np.ndarray:
  """Verdicts bool [T, G] from states int8 (1, 0, ``NOT_EVALUATED``) or bool [T, G]: a level not
  evaluated fails at or below the trial's highest failure and verifies above it.

  This is the monotonicity an adaptive search assumes (``next_level``): its
  evaluated levels decide d*_t exactly under it.
  """
  states = np.asarray(states)
  if states.dtype == bool:
    return states
  above = np.arange(states.shape[-1]) > highest_failure(states)[:, None]
  return np.where(states == NOT_EVALUATED, above, states == 1)
