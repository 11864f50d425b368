"""Minimal d: the smallest grid d at which a method succeeds on ≥ 1 − δ of T trials, and
per-trial thresholds with their quantiles."""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, PRNGKeyArray

from jaxattn._src.base import (cast_pattern, check_d_grid, check_eps, check_outside_mass,
                               resolve_dtype)
from jaxattn._src.construct import METHODS, NESTED, method_factors
from jaxattn._src.pattern import SparsePattern
from jaxattn._src.stats import clopper_pearson, quantile_interval
from jaxattn._src.tiles import default_tiles, local_mesh, shard_leading
from jaxattn._src.verify import check_block_size, row_ok, row_stats

Sampler = Callable[[PRNGKeyArray], SparsePattern]

# Bytes of [G, rows, block] logit tiles one vmapped batch of trials may hold.
_TILE_BUDGET = 1 << 28


class MinDResult(NamedTuple):
  """Outcome of ``min_d``: per-trial verdicts over the d grid, success counts and estimators of d.

  ``d_min`` = min{d : successes(d)/T ≥ 1 − δ} (§2), None when no grid d
  reaches it; ``ci_low``/``ci_high`` are Clopper–Pearson intervals on the
  success rates at ``confidence``.

  Per trial t (None when built by ``from_counts``, which has counts only):
  ``verdicts[t, g]`` whether the trial verifies at ``d_grid[g]``;
  ``thresholds[t]`` = d*_t, the smallest grid d from which the trial
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
  d_grid: np.ndarray        # int [G]
  successes: np.ndarray     # int [G]
  trials: int
  success_rate: np.ndarray  # float [G]
  ci_low: np.ndarray        # float [G]
  ci_high: np.ndarray       # float [G]
  verdicts: np.ndarray | None = None       # bool [T, G]
  thresholds: np.ndarray | None = None     # float [T]: grid d, +inf = not reached
  first_success: np.ndarray | None = None  # float [T]: grid d, +inf = never verified
  d_median: float | None = None
  d_median_low: float | None = None
  d_median_high: float | None = None
  d_quantile: float | None = None
  d_quantile_low: float | None = None
  d_quantile_high: float | None = None

  @classmethod
  def from_counts(cls, d_grid: Sequence[int], successes: np.ndarray, trials: int, delta: float,
                  confidence: float = 0.95) -> MinDResult:
    """The result for ``successes[g]`` of T = ``trials`` at each ``d_grid[g]``:
    d_min = min{d : successes/T ≥ 1 − δ}, rates and Clopper–Pearson intervals."""
    successes = np.asarray(successes)
    needed = math.ceil((1.0 - delta) * trials - 1e-9)  # successes/T ≥ 1 − δ, free of rounding
    passing = np.flatnonzero(successes >= needed)
    low, high = clopper_pearson(successes, trials, confidence)
    return cls(d_min=int(d_grid[passing[0]]) if passing.size else None,
               d_grid=np.asarray(d_grid), successes=successes, trials=trials,
               success_rate=successes / trials, ci_low=low, ci_high=high)

  @classmethod
  def from_verdicts(cls, d_grid: Sequence[int], verdicts: np.ndarray, delta: float,
                    confidence: float = 0.95) -> MinDResult:
    """The result for per-trial ``verdicts`` bool [T, G]: ``from_counts`` of their column sums,
    the thresholds and first successes of ``trial_thresholds`` and the quantile estimators."""
    verdicts = np.asarray(verdicts, bool)
    trials = verdicts.shape[0]
    thresholds, first = trial_thresholds(d_grid, verdicts)
    median = quantile_interval(thresholds, 0.5, confidence)
    quantile = quantile_interval(thresholds, 1.0 - delta, confidence) if delta > 0 else (
        float(thresholds.max()), -math.inf, math.inf)
    return cls.from_counts(d_grid, verdicts.sum(axis=0), trials, delta, confidence)._replace(
        verdicts=verdicts, thresholds=thresholds, first_success=first,
        d_median=median[0], d_median_low=median[1], d_median_high=median[2],
        d_quantile=quantile[0], d_quantile_low=quantile[1], d_quantile_high=quantile[2])


def trial_thresholds(d_grid: Sequence[int], verdicts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(d*_t, first success_t) of every trial t from its verdicts bool [T, G] over ``d_grid``.

  d*_t = d_grid[min{g : verdicts[t, g'] for all g' ≥ g}] and
  first_t = d_grid[min{g : verdicts[t, g]}]; +inf where the set is empty
  (d*_t: the trial fails at the top of the grid). float [T] each.
  """
  d_grid = np.asarray(d_grid, float)
  verdicts = np.asarray(verdicts, bool)
  from_here = np.logical_and.accumulate(verdicts[:, ::-1], axis=1)[:, ::-1]  # all of g.. pass
  thresholds = np.where(from_here[:, -1], d_grid[np.argmax(from_here, axis=1)], np.inf)
  first = np.where(verdicts.any(axis=1), d_grid[np.argmax(verdicts, axis=1)], np.inf)
  return thresholds, first


def grid_success(key: PRNGKeyArray, pattern: SparsePattern, *, method: str,
                 d_grid: tuple[int, ...], eps1, eps2, block_size: int | None = None,
                 row_block: int | None = None, matmul_dtype=None, mesh=None,
                 dtype=None, max_outside_mass=None) -> Bool[Array, "G"]:
  """Whether ``method`` verifies at every d of ``d_grid`` for one pattern and key.

  With η = ``max_outside_mass`` under the mass criterion (``row_ok``): the
  pass then also streams each row's outside log-sum-exp (``row_stats``'s
  ``full``), and methods in ``MASS_AWARE`` build for η.

  Methods in ``NESTED`` are drawn once at d_max and every d is read
  off nested prefixes in one streamed pass, logits ℓ^(d) = (d_max/d) Q_{:, :d} K_{:, :d}ᵀ;
  other methods are built at each d inside one compiled loop, padded to d_max.
  Either way the shapes, and so the compiled program, depend on d_max only.
  The tile sizes ``block_size`` and ``row_block``, ``matmul_dtype`` and
  ``mesh`` (query row blocks split over its devices) are passed to ``row_stats``.
  Factors are computed in float32 (float64 for ``dtype`` float64) and
  verified in ``dtype`` (``construct.resolve_dtype``).
  """
  evaluate, compute = resolve_dtype(dtype)
  pattern = cast_pattern(pattern, compute)
  factors = lambda d, width: jax.tree.map(lambda x: x.astype(evaluate), method_factors(
      method, key, pattern, d, width, eps1, eps2, dtype=evaluate,
      max_outside_mass=max_outside_mass))
  d_max = d_grid[-1]
  full = max_outside_mass is not None  # the outside mass is only streamed when it is judged
  if method in NESTED:
    queries, keys = factors(d_max, d_max)
    scales = d_max / jnp.asarray(d_grid, queries.dtype)
    stats = row_stats(queries, keys, pattern, d_grid, scales, block_size=block_size,
                      row_block=row_block, full=full, matmul_dtype=matmul_dtype, mesh=mesh)
    return jnp.all(row_ok(stats, eps1, eps2, max_outside_mass), axis=-1)

  def at_d(d):
    queries, keys = factors(d, d_max)
    stats = row_stats(queries, keys, pattern, (d_max,), jnp.ones((1,), queries.dtype),
                      block_size=block_size, row_block=row_block, full=full,
                      matmul_dtype=matmul_dtype, mesh=mesh)
    return jnp.all(row_ok(stats, eps1, eps2, max_outside_mass))

  return jax.lax.map(at_d, jnp.asarray(d_grid))


def _checked_grid(d_grid: Sequence[int], method: str) -> tuple[int, ...]:
  """``check_d_grid(d_grid)``; ValueError also if ``method`` is not registered."""
  d_grid = check_d_grid(d_grid)
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
  return d_grid


def geometric_grid(stop: int, per_octave: int = 4, start: int = 1) -> tuple[int, ...]:
  """The integers round(2^(k/per_octave)), k = 0, 1, ..., that lie in [start, stop], and stop itself.

  Deduplicated and increasing: ``geometric_grid(256, 2)`` = (1, 2, 3, 4, 6,
  8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256). ValueError unless
  1 ≤ start ≤ stop and per_octave ≥ 1.
  """
  if not (1 <= start <= stop and per_octave >= 1):
    raise ValueError(f"need 1 <= start <= stop and per_octave >= 1, got start={start}, "
                     f"stop={stop}, per_octave={per_octave}")
  steps = int(np.floor(np.log2(stop) * per_octave + 1e-9))
  grid = {int(round(2 ** (k / per_octave))) for k in range(steps + 1)} | {stop}
  return tuple(sorted(d for d in grid if d >= start))


def trial_keys(key: PRNGKeyArray, trials: int) -> tuple[PRNGKeyArray, PRNGKeyArray]:
  """(pattern keys [T], method keys [T]) of the T trials of ``min_d``: split(split(key, T)[t]).

  Trial t samples its pattern from ``pattern_keys[t]`` and its construction
  from ``method_keys[t]``: independent keys, so pattern and projection are
  independent draws. Re-running a trial of a search (its solution, its
  logit range) starts from these keys. Trial t's keys do not depend on T
  (``split`` is counter-based), so the T trials of a search are the first T
  of any larger search with the same key.
  """
  pattern_keys, method_keys = jnp.moveaxis(
      jax.vmap(jax.random.split)(jax.random.split(key, trials)), 1, 0)
  return pattern_keys, method_keys


_grid_success = jax.jit(grid_success,
                        static_argnames=("method", "d_grid", "block_size", "row_block"))


def verify_grid(key: PRNGKeyArray, pattern: SparsePattern, d_grid: Sequence[int], *,
                eps1: float, eps2: float, method: str = "jl",
                block_size: int | None = None, row_block: int | None = None,
                max_outside_mass: float | None = None) -> np.ndarray:
  """ok(d) = ``verify(build(method, key, pattern, d, ...), pattern, eps1, eps2, ...).ok`` for
  every grid d, under the mass criterion when ``max_outside_mass`` = η is given.

  For one fixed pattern and key, in one compiled pass (``grid_success``):
  nested prefixes of one d_max draw for methods in ``NESTED``,
  one loop padded to d_max otherwise. Compiles once per (L, N, d_grid),
  never per d. The smallest d with ok(d) is the pattern's own minimal d
  for this key.

  Returns:
    bool [G], host array.
  """
  d_grid = _checked_grid(d_grid, method)
  check_eps(eps1, eps2)
  check_outside_mass(max_outside_mass)
  check_block_size(block_size)
  check_block_size(row_block, "row_block")
  return np.asarray(_grid_success(key, pattern, method=method, d_grid=d_grid, eps1=eps1,
                                  eps2=eps2, block_size=block_size, row_block=row_block,
                                  max_outside_mass=max_outside_mass))


@functools.partial(jax.jit, static_argnames=(
    "sampler", "method", "d_grid", "trials", "trial_batch", "block_size", "row_block",
    "matmul_dtype", "mesh", "dtype"))
def _trial_verdicts(key, eps1, eps2, max_outside_mass, *, sampler, method, d_grid, trials,
                    trial_batch, block_size, row_block, matmul_dtype, mesh, dtype):
  """success_t(d), bool [T, G], of every trial t, split over ``mesh`` (row blocks if fewer trials
  than devices)."""
  shard_trials = trials >= mesh.size

  def trial(keys):
    pattern_key, method_key = keys
    return grid_success(method_key, sampler(pattern_key), method=method, d_grid=d_grid,
                        eps1=eps1, eps2=eps2, block_size=block_size, row_block=row_block,
                        matmul_dtype=matmul_dtype, mesh=None if shard_trials else mesh,
                        dtype=dtype, max_outside_mass=max_outside_mass)

  devices = mesh.size if shard_trials else 1
  # Every device runs whole batches of trial_batch trials, aligned as on one device;
  # padding trials repeat trial 0 and are dropped.
  padded = math.ceil(trials / (devices * trial_batch)) * devices * trial_batch
  keys = jax.tree.map(lambda k: jnp.concatenate(
      [k, jnp.broadcast_to(k[:1], (padded - trials, *k.shape[1:]))]), trial_keys(key, trials))
  success = shard_leading(lambda *k: jax.lax.map(trial, k, batch_size=trial_batch),
                          mesh if shard_trials else None, *keys)
  return success[:trials]


def _trial_batch(length: int, grid_size: int, block_size: int | None, row_block: int | None,
                 trials: int) -> int:
  """Trials per vmapped batch: ≈ one row block of work per step, tiles within _TILE_BUDGET."""
  default_rows, default_keys = default_tiles()
  rows = row_block or default_rows
  tile = 4 * grid_size * min(rows, length) * min(block_size or default_keys, length)
  return int(max(1, min(trials, rows // length, _TILE_BUDGET // tile)))


def min_d(key: PRNGKeyArray, sampler: Sampler, d_grid: Sequence[int], *, eps1: float,
          eps2: float, method: str = "jl", trials: int = 16, delta: float = 0.1,
          confidence: float = 0.95, block_size: int | None = None,
          matmul_dtype=None, dtype=None, row_block: int | None = None,
          max_trial_batch: int | None = None,
          max_outside_mass: float | None = None) -> MinDResult:
  """d_min = min{d ∈ grid : #successes(d)/T ≥ 1 − δ} over T independent trials, and per trial
  its verdicts, threshold d*_t and first success, with the quantiles d_50 and d_{1−δ}.

  Trial t draws a fresh pattern ``sampler(k_A)`` and a fresh construction
  ``method(k_X, A, d)`` from split keys, and succeeds at d iff ``verify``
  passes. Trials are split over this process's devices and vmapped in
  batches (for small L); with fewer trials than devices, query row blocks
  are split instead. The whole search is one compiled program per
  (L, N, d_max, grid), never one per d, with no host round trip inside; its
  result does not depend on the number of devices.

  Args:
    key: PRNG key; the same key gives the same result on the same device.
    sampler: key -> SparsePattern, hashable; best ``ja.patterns.Sampler("random_regular",
      length=256, nnz=2, a_min=0.2)``, which compiles once for equal arguments (a
      ``functools.partial`` works too but compiles per new object).
    d_grid: increasing positive dimensions to test.
    eps1: ratio tolerance ε1 > 0.
    eps2: zero tolerance ε2 ∈ (0, 1).
    method: a construction name (``ja.METHODS``).
    trials: T ≥ 1.
    delta: allowed failure fraction δ ∈ [0, 1).
    confidence: level of the Clopper–Pearson intervals.
    block_size: keys per streamed block in verification.
    matmul_dtype: e.g. ``jnp.bfloat16``: logits from Q, K rounded to it,
      accumulated in float32 (see ``verify``).
    dtype: precision of solutions and verification: "bfloat16", "float32"
      (default) or "float64" (needs jax_enable_x64).
    row_block: query rows per block in verification (default: ``verify``'s).
    max_trial_batch: at most this many trials per vmapped batch (a memory
      budget, ``jaxattn_bench.resources``).
    max_outside_mass: η ∈ (0, 1): success under the mass criterion, every
      row's outside softmax mass ≤ η as well (``verify``); methods in
      ``ja.construct.MASS_AWARE`` build for it. None (default): the ratio criterion.

  Returns:
    ``MinDResult`` with d_min, success counts and rates with intervals, the [T, G]
    verdicts (from the same single pass), thresholds, first successes, and
    d_median, d_quantile with order-statistic intervals.
  """
  d_grid = _checked_grid(d_grid, method)
  if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
    raise ValueError(f"trials must be a positive integer, got {trials!r}")
  if not 0.0 <= delta < 1.0:
    raise ValueError(f"delta must be in [0, 1), got {delta}")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  check_eps(eps1, eps2)
  check_outside_mass(max_outside_mass)
  check_block_size(block_size)
  check_block_size(row_block, "row_block")
  check_block_size(max_trial_batch, "max_trial_batch")
  evaluate, _ = resolve_dtype(dtype)
  length = jax.eval_shape(sampler, key).length
  grid_levels = len(d_grid) if method in NESTED else 1
  verdicts = np.asarray(_trial_verdicts(
      key, eps1, eps2, max_outside_mass, sampler=sampler, method=method, d_grid=d_grid, trials=trials,
      trial_batch=min(_trial_batch(length, grid_levels, block_size, row_block, trials),
                      max_trial_batch or trials),
      block_size=block_size, row_block=row_block,
      matmul_dtype=None if matmul_dtype is None else jnp.dtype(matmul_dtype), mesh=local_mesh(),
      dtype=evaluate.name))
  return MinDResult.from_verdicts(d_grid, verdicts, delta, confidence)
