"""Minimal d: the smallest grid d at which a method succeeds on ≥ 1 − δ of T trials, and
per-trial thresholds with their quantiles."""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Shaped

from jaxattn._src import certify
from jaxattn._src.base import (cast_pattern, check_d_grid, check_eps, check_outside_mass,
                               resolve_dtype)
from jaxattn._src.construct import METHODS, NESTED, method_factors
from jaxattn._src.exact import Fraction, rows_ok_exact
from jaxattn._src.pattern import SparsePattern
from jaxattn._src.stats import clopper_pearson, quantile_interval
from jaxattn._src.tiles import default_tiles, local_mesh, shard_leading
from jaxattn._src.verify import (check_block_size, check_matmul, row_ok, row_states, row_stats,
                                 settle_rows)

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
  certified: bool | None = None  # every verdict that of exact arithmetic (``verify``)
  levels_on_host: int = 0        # (trial, grid d) verdicts settled by ``exact_level``
  evaluated: np.ndarray | None = None  # bool [T, G]; None: every verdict was computed
  non_monotone: int = 0          # trials with an evaluated success below an evaluated failure

  def verdict_states(self) -> np.ndarray:
    """The verdicts as int8 [T, G]: 1 verifies, 0 fails, ``NOT_EVALUATED`` (−1) not computed;
    ``from_verdicts`` reads them back."""
    states = np.asarray(self.verdicts, np.int8)
    return states if self.evaluated is None else np.where(self.evaluated, states, NOT_EVALUATED)

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
    quantile = quantile_interval(thresholds, 1.0 - delta, confidence) if delta > 0 else (
        float(thresholds.max()), -math.inf, math.inf)
    return cls.from_counts(d_grid, verdicts.sum(axis=0), trials, delta, confidence)._replace(
        verdicts=verdicts, thresholds=thresholds, first_success=first,
        evaluated=None if evaluated is None or evaluated.all() else evaluated,
        non_monotone=int(np.sum(_non_monotone(states))),
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


# A (trial, grid d) an adaptive search did not evaluate (``MinDResult.verdict_states``).
NOT_EVALUATED = -1


def _floor(states: np.ndarray) -> np.ndarray:
  """The index of each trial's highest failing level, −1 where none: int [T]."""
  failed = np.asarray(states) == 0
  return np.where(failed.any(-1), failed.shape[-1] - 1 - np.argmax(failed[:, ::-1], -1), -1)


def _non_monotone(states: np.ndarray) -> np.ndarray:
  """Whether each trial verifies (1) at some level below its highest failure: bool [T]."""
  states = np.atleast_2d(states)
  below = np.arange(states.shape[-1]) < _floor(states)[:, None]
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
  above = np.arange(states.shape[-1]) > _floor(states)[:, None]
  return np.where(states == NOT_EVALUATED, above, states == 1)


def next_level(d_grid: Sequence[int], states: np.ndarray, check_above: int = 1) -> int | None:
  """The grid level an adaptive search evaluates next for one trial, from its states int8 [G]
  (1, 0, ``NOT_EVALUATED``); None when its d*_t is settled.

  With floor = its highest failing level and top = its lowest verifying level
  above the floor: (1) no top yet: bracket upward in d, the first grid d ≥
  twice the highest evaluated d (None if that was the top of the grid:
  not reached); (2) the ``check_above`` levels above the top (a failure
  there raises the floor and the bracket resumes); (3) down from the top to
  the floor. The top is at most the first grid d ≥ 2·d*_t, and only
  ``check_above`` levels above it are built. d*_t = the grid d above the
  floor is exact when the trial verifies at every grid d above its top that
  was not evaluated.
  """
  states = np.asarray(states)
  levels, floor = len(d_grid), int(_floor(states[None])[0])
  passed = np.flatnonzero(states[floor + 1:] == 1) + floor + 1
  if not passed.size:
    known = np.flatnonzero(states != NOT_EVALUATED)
    if not known.size:
      return 0
    last = int(known.max())
    if last == levels - 1:
      return None
    return int(max(last + 1, min(np.searchsorted(d_grid, 2 * d_grid[last]), levels - 1)))
  top = int(passed.min())
  above = range(top + 1, min(top + 1 + check_above, levels))
  for level in [*above, *range(top - 1, floor, -1)]:
    if states[level] == NOT_EVALUATED:
      return level
  return None


def grid_states(key: PRNGKeyArray, pattern: SparsePattern, *, method: str,
                d_grid: tuple[int, ...], eps1, eps2, limits: certify.Thresholds,
                block_size: int | None = None, row_block: int | None = None, matmul_dtype=None,
                mesh=None, dtype=None, max_outside_mass=None, matmul: str = "float32",
                d: Int[Array, ""] | None = None, width: int | None = None
                ) -> tuple[Int[Array, " G"], HostRows]:
  """Whether ``method`` verifies at every d of ``d_grid`` for one pattern and key: per grid d
  ``certify.CERTAIN_OK``, ``CERTAIN_FAIL`` or ``UNDECIDED`` (int8; the host settles the last),
  with each level's undecided rows (``HostRows``). Given ``d`` (not nested): that d only,
  padded to ``width`` (G = 1, an adaptive probe).

  Certified (``certify.certifiable`` and no ``matmul_dtype``): a level fails if a row
  certainly fails, passes if every row certainly passes, and is undecided
  otherwise; after a pass with ``matmul="bfloat16"`` products, up to
  ``RECHECK_SHARE``·L undecided rows are re-done with float32 products
  (``recheck_rows``). Uncertified (the mass criterion, a ``matmul_dtype``, a
  bfloat16 evaluation ``dtype``): the computed verdict, never undecided.

  With η = ``max_outside_mass`` under the mass criterion (``row_ok``): the
  pass then also streams each row's outside log-sum-exp (``row_stats``'s
  ``full``), and methods in ``MASS_AWARE`` build for η.

  Methods in ``NESTED`` are drawn once at d_max and every d is read
  off nested prefixes in one streamed pass, logits ℓ^(d) = (d_max/d) Q_{:, :d} K_{:, :d}ᵀ;
  other methods are built at each d inside one compiled loop, padded to d_max.
  Either way the shapes, and so the compiled program, depend on d_max only.
  Tiles, ``matmul_dtype`` and ``mesh`` go to ``row_stats``. Factors are computed in float32
  (float64 for ``dtype`` float64), verified in ``dtype`` (``construct.resolve_dtype``).
  """
  evaluate, compute = resolve_dtype(dtype)
  pattern = cast_pattern(pattern, compute)
  factors = lambda d, width: jax.tree.map(lambda x: x.astype(evaluate), method_factors(
      method, key, pattern, d, width, eps1, eps2, dtype=evaluate,
      max_outside_mass=max_outside_mass))
  d_max = d_grid[-1]
  full = max_outside_mass is not None  # the outside mass is only streamed when it is judged
  certified = matmul_dtype is None and certify.certifiable(evaluate, max_outside_mass)
  first = certify.MATMUL_FORMATS[matmul] if matmul_dtype is None else matmul_dtype

  def level_states(queries, keys, splits, scales):
    stats = row_stats(queries, keys, pattern, splits, scales, block_size=block_size,
                      row_block=row_block, full=full, matmul_dtype=first, mesh=mesh)
    if not certified:
      verdicts = jnp.all(row_ok(stats, limits, max_outside_mass), -1).astype(jnp.int8)
      return verdicts, undecided_rows(jnp.ones_like(stats.gap, jnp.int8))
    states = row_states(stats, limits)
    if first is not None and jnp.finfo(first).bits < jnp.finfo(evaluate).bits:
      states = recheck_rows(queries, keys, pattern, states, splits, scales, limits,
                            block_size=block_size, row_block=row_block)
    return certify.level_states(states), undecided_rows(states)

  if method in NESTED:
    queries, keys = factors(d_max, d_max)
    return level_states(queries, keys, d_grid, d_max / jnp.asarray(d_grid, queries.dtype))
  ones = jnp.ones((1,), evaluate)
  if d is not None:
    return level_states(*factors(d, width), (width,), ones)
  return jax.tree.map(lambda x: x[:, 0], jax.lax.map(
      lambda d: level_states(*factors(d, d_max), (d_max,), ones), jnp.asarray(d_grid)))


# Undecided rows per level handed to the host by index (more: the host re-does the level's pass).
HOST_ROWS = 64


class HostRows(NamedTuple):
  """Each level's undecided rows, for the host stage: up to ``HOST_ROWS`` indices (L: an empty
  slot) and how many there are."""

  rows: Int[Array, "G C"]
  count: Int[Array, " G"]


def undecided_rows(states: Int[Array, "G L"]) -> HostRows:
  """``HostRows`` of the row states of every level."""
  undecided = states == certify.UNDECIDED
  rows = jax.vmap(lambda u: jnp.nonzero(u, size=HOST_ROWS, fill_value=u.shape[0])[0])(undecided)
  return HostRows(rows.astype(jnp.int32), jnp.sum(undecided, -1, dtype=jnp.int32))


# The share of rows a bfloat16 pass may leave to the in-program float32 re-check.
RECHECK_SHARE = 1 / 16


def recheck_rows(queries: Float[Array, "L w"], keys: Float[Array, "L w"], pattern: SparsePattern,
                 states: Int[Array, "G L"], splits: tuple[int, ...], scales: Float[Array, " G"],
                 limits: certify.Thresholds, *, block_size=None, row_block=None
                 ) -> Int[Array, "G L"]:
  """``states`` with the undecided rows of levels not already failing re-done with float32
  products, up to ⌈``RECHECK_SHARE``·L⌉ rows (a fixed buffer: the rest stay undecided)."""
  length = pattern.length
  capacity = max(1, math.ceil(RECHECK_SHARE * length))
  failing = jnp.any(states == certify.CERTAIN_FAIL, -1)
  needed = jnp.any((states == certify.UNDECIDED) & ~failing[:, None], 0)

  def recheck(states):
    rows = jnp.nonzero(needed, size=capacity, fill_value=length)[0]  # L: an empty slot
    redone = row_states(row_stats(queries, keys, pattern, splits, scales, block_size=block_size,
                                  row_block=row_block, full=False, rows=rows), limits)
    return states.at[:, rows].set(redone, mode="drop")

  # skipped at run time when no row needs it (outside vmap: under vmap both branches run)
  return jax.lax.cond(jnp.any(needed), recheck, lambda states: states, states)


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


def trial_keys(key: PRNGKeyArray, trials: int
               ) -> tuple[Shaped[Array, "T ..."], Shaped[Array, "T ..."]]:
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


_grid_states = jax.jit(grid_states, static_argnames=("method", "d_grid", "block_size", "row_block",
                                                     "matmul", "width"))


@functools.partial(jax.jit, static_argnames=("method", "width", "dtype"))
def _trial_factors(key, pattern, d, eps1, eps2, *, method, width, dtype):
  """A trial's factors at d (width ``width``), as ``grid_states`` builds them."""
  evaluate, compute = resolve_dtype(dtype)
  factors = method_factors(method, key, cast_pattern(pattern, compute), d, width, eps1, eps2,
                           dtype=evaluate)
  return jax.tree.map(lambda x: x.astype(evaluate), factors)


def exact_level(key: PRNGKeyArray, pattern: SparsePattern, *, method: str,
                d_grid: tuple[int, ...], level: int, eps1: float, eps2: float, dtype=None,
                rows: np.ndarray | None = None, block_size: int | None = None,
                row_block: int | None = None, width: int | None = None) -> bool:
  """The exact verdict of one trial at ``d_grid[level]``, for a level the search left undecided.

  The factors are rebuilt from the trial's key (d_max for nested methods,
  whose level is ℓ = (d_max/d) Q_{:, :d} K_{:, :d}ᵀ; d padded to ``width``,
  default d_max, otherwise). ``rows``: the level's undecided rows (every
  other row is certainly ok), decided in exact arithmetic on the host; None
  (more than ``HOST_ROWS``): ``settle_rows`` decides every row, a float32
  pass first.
  """
  d_max, d = d_grid[-1], d_grid[level]
  nested, width = method in NESTED, width or d_max
  queries, keys = _trial_factors(key, pattern, d_max if nested else d, eps1, eps2, method=method,
                                 width=width, dtype=resolve_dtype(dtype)[0].name)
  split, scale = (d, (d_max, d)) if nested else (width, (1, 1))
  if rows is None:
    ok, _ = settle_rows(queries, keys, pattern, None, eps1, eps2, split=split, scale=scale,
                        block_size=block_size, row_block=row_block)
  else:
    ok = rows_ok_exact(np.asarray(queries)[:, :split], np.asarray(keys)[:, :split],
                       *(np.asarray(x) for x in pattern[:3]), rows, eps1, eps2, Fraction(*scale),
                       dense=pattern.dense_host)
  return bool(ok.all())


def settle_levels(states: Int[ArrayLike, "T G"], host_rows: HostRows,
                  exact: Callable[[int, int, np.ndarray | None], bool]) -> tuple[np.ndarray, int]:
  """Verdicts bool [T, G] from level states [T, G] and their ``HostRows`` [T, G, ...],
  ``exact(t, g, rows)`` deciding the undecided levels (rows None: more than ``HOST_ROWS``);
  and how many levels that took."""
  states, rows, count = (np.asarray(x) for x in (states, *host_rows))
  verdicts = states == certify.CERTAIN_OK
  undecided = np.argwhere(states == certify.UNDECIDED)
  for t, g in undecided:
    listed = rows[t, g, :count[t, g]] if count[t, g] <= rows.shape[-1] else None
    verdicts[t, g] = exact(int(t), int(g), listed)
  return verdicts, len(undecided)


def verify_grid(key: PRNGKeyArray, pattern: SparsePattern, d_grid: Sequence[int], *,
                eps1: float, eps2: float, method: str = "jl",
                block_size: int | None = None, row_block: int | None = None,
                max_outside_mass: float | None = None, matmul: str = "float32",
                schedule: str = "full", check_above: int = 1) -> np.ndarray:
  """ok(d) = ``verify(build(method, key, pattern, d, ...), pattern, eps1, eps2, ...).ok`` for
  every grid d, under the mass criterion when ``max_outside_mass`` = η is given.

  For one fixed pattern and key, in one compiled pass (``grid_states``):
  nested prefixes of one d_max draw for methods in ``NESTED``,
  one loop padded to d_max otherwise. Compiles once per (L, N, d_grid),
  never per d. The smallest d with ok(d) is the pattern's own minimal d
  for this key. Verdicts are certified as ``ja.verify``'s are
  (``matmul``: the products' format of the pass, "float32" or "bfloat16"):
  levels the pass leaves undecided are settled by ``exact_level``.
  ``schedule="adaptive"`` (methods not in ``NESTED``): only the levels
  ``next_level`` asks for are built, as in ``min_d``'s adaptive search.

  Returns:
    bool [G], host array; with ``schedule="adaptive"``, int8 [G] states (1 verifies, 0 fails,
    ``NOT_EVALUATED``).
  """
  d_grid = _checked_grid(d_grid, method)
  check_eps(eps1, eps2)
  check_outside_mass(max_outside_mass)
  check_block_size(block_size)
  check_block_size(row_block, "row_block")
  check_matmul(matmul)
  adaptive = _check_schedule(schedule, method, check_above)
  limits = certify.thresholds(eps1, eps2, resolve_dtype(None)[0])
  states = functools.partial(_grid_states, key, pattern, method=method, d_grid=d_grid, eps1=eps1,
                             eps2=eps2, limits=limits, block_size=block_size, row_block=row_block,
                             max_outside_mass=max_outside_mass, matmul=matmul)
  exact = lambda t, g, rows, width=None: exact_level(
      key, pattern, method=method, d_grid=d_grid, level=g, eps1=eps1, eps2=eps2, rows=rows,
      block_size=block_size, row_block=row_block, width=width)
  one = lambda tree: jax.tree.map(lambda x: x[None], tree)
  if adaptive:
    run = lambda probes, width: one(states(d=probes[0][0], width=width))
    return _adaptive_states(run, exact, d_grid, 1, check_above)[0][0]
  return settle_levels(*one(states()), exact)[0][0]


@functools.partial(jax.jit, static_argnames=(
    "sampler", "method", "d_grid", "trials", "trial_batch", "block_size", "row_block",
    "matmul_dtype", "mesh", "dtype", "matmul", "width"))
def _trial_states(key, eps1, eps2, max_outside_mass, limits, probes=None, *, sampler, method,
                  d_grid, trials, trial_batch, block_size, row_block, matmul_dtype, mesh, dtype,
                  matmul, width=None):
  """The level states int8 [T, G] and ``HostRows`` (``grid_states``) of every trial t, split over
  ``mesh`` (row blocks if fewer trials than devices).

  With ``probes`` = (d int [T], active bool [T]) and ``width``: trial t's state
  at its own d only (G = 1), built padded to ``width``; inactive trials are
  skipped (``lax.cond``; under vmap, with more than one trial per batch,
  computed and discarded).
  """
  shard_trials = trials >= mesh.size
  probes = probes or (jnp.zeros(trials, jnp.int32), jnp.ones(trials, bool))

  def trial(inputs):
    pattern_key, method_key, d, active = inputs
    run = lambda: grid_states(
        method_key, sampler(pattern_key), method=method, d_grid=d_grid, eps1=eps1, eps2=eps2,
        limits=limits, block_size=block_size, row_block=row_block, matmul_dtype=matmul_dtype,
        mesh=None if shard_trials else mesh, dtype=dtype, max_outside_mass=max_outside_mass,
        matmul=matmul, d=None if width is None else d, width=width)
    if width is None:
      return run()
    skip = lambda: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), jax.eval_shape(run))
    return jax.lax.cond(active, run, skip)

  devices = mesh.size if shard_trials else 1
  # Every device runs whole batches of trial_batch trials, aligned as on one device;
  # padding trials repeat trial 0, are inactive and are dropped.
  padded = math.ceil(trials / (devices * trial_batch)) * devices * trial_batch
  inputs = (*trial_keys(key, trials), probes[0], probes[1])
  inputs = jax.tree.map(lambda k: jnp.concatenate(
      [k, jnp.broadcast_to(k[:1], (padded - trials, *k.shape[1:]))]), inputs)
  inputs = (*inputs[:3], inputs[3].at[trials:].set(False))
  batch = trial_batch if trial_batch > 1 else None  # one at a time: no vmap, so conds branch
  states = shard_leading(lambda *k: jax.lax.map(trial, k, batch_size=batch),
                         mesh if shard_trials else None, *inputs)
  return jax.tree.map(lambda x: x[:trials], states)


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
          max_outside_mass: float | None = None, matmul: str = "float32",
          schedule: str | None = None, check_above: int = 1) -> MinDResult:
  """d_min = min{d ∈ grid : #successes(d)/T ≥ 1 − δ} over T independent trials, and per trial
  its verdicts, threshold d*_t and first success, with the quantiles d_50 and d_{1−δ}.

  Trial t draws a fresh pattern ``sampler(k_A)`` and a fresh construction
  ``method(k_X, A, d)`` from split keys, and succeeds at d iff ``verify`` passes. Trials are
  split over this process's devices (or, if fewer, row blocks) and vmapped in batches; the
  result does not depend on the number of devices. Never one compile per d. Verdicts are
  certified (docs/certified.md): the host settles what the program cannot (``exact_level``).
  ``schedule="adaptive"`` (the default for methods not in ``NESTED``) builds,
  per trial, only the levels ``next_level`` asks for, each at ``probe_width``
  (docs/practice.md); the rest are ``NOT_EVALUATED``, imputed by
  monotonicity (``impute_verdicts``). ``"full"``: every (trial, grid d).

  Args:
    key: PRNG key; the same key gives the same result on the same device.
    sampler: key -> SparsePattern, hashable; best a ``ja.patterns.Sampler``, which compiles
      once for equal arguments (a ``functools.partial`` compiles per new object).
    d_grid: increasing positive dimensions to test.
    eps1, eps2: tolerances ε1 > 0 and ε2 ∈ (0, 1).
    method: a construction name (``ja.METHODS``).
    trials, delta: T ≥ 1 trials; allowed failure fraction δ ∈ [0, 1).
    confidence: level of the Clopper–Pearson intervals.
    block_size, row_block: keys and query rows per tile (default: ``verify``'s).
    matmul_dtype: e.g. ``jnp.bfloat16``: a layer with Q, K rounded to it (``verify``).
    dtype: "bfloat16", "float32" (default) or "float64" (needs jax_enable_x64).
    max_trial_batch: at most this many trials per vmapped batch (a memory budget).
    max_outside_mass: η ∈ (0, 1) of the mass criterion (``verify``); None: the ratio criterion.
    matmul: the certified pass's products, "float32" (default) or "bfloat16" (``verify``).
    schedule, check_above: "full", "adaptive" or None; levels checked above a trial's top.

  Returns:
    ``MinDResult``: d_min, rates, [T, G] verdicts, thresholds and quantiles (docstring there).
  """
  d_grid = _checked_grid(d_grid, method)
  adaptive = _check_search(trials, delta, confidence, eps1, eps2, max_outside_mass, block_size,
                           row_block, max_trial_batch, matmul, schedule, method, check_above)
  evaluate, _ = resolve_dtype(dtype)
  levels = len(d_grid) if method in NESTED else 1
  matmul_dtype = None if matmul_dtype is None else jnp.dtype(matmul_dtype)
  run = functools.partial(
      _trial_states, key, eps1, eps2, max_outside_mass, certify.thresholds(eps1, eps2, evaluate),
      sampler=sampler, method=method, d_grid=d_grid, trials=trials, mesh=local_mesh(),
      trial_batch=min(_trial_batch(jax.eval_shape(sampler, key).length, levels, block_size,
                                   row_block, trials), max_trial_batch or trials),
      block_size=block_size, row_block=row_block, matmul_dtype=matmul_dtype,
      dtype=evaluate.name, matmul=matmul)
  exact = _trial_level(key, sampler, trials, method=method, d_grid=d_grid, eps1=eps1, eps2=eps2,
                       dtype=evaluate.name, block_size=block_size, row_block=row_block)
  verdicts, host_levels = (_adaptive_states(run, exact, d_grid, trials, check_above) if adaptive
                           else settle_levels(*run(), exact))
  return MinDResult.from_verdicts(d_grid, verdicts, delta, confidence)._replace(
      certified=matmul_dtype is None and certify.certifiable(evaluate, max_outside_mass),
      levels_on_host=host_levels)


# The narrowest padded width of an adaptive search's probes: fewer compiled programs, and a
# build's fixed cost (``bench perf``'s c ≈ 34 in units of d) dominates below it.
MIN_PROBE_WIDTH = 32


def probe_width(d: int, d_max: int) -> int:
  """The padded width of an adaptive probe at d: min(d_max, max(``MIN_PROBE_WIDTH``, 2^⌈log2 d⌉))."""
  return min(d_max, max(MIN_PROBE_WIDTH, 1 << (int(d) - 1).bit_length()))


def adaptive_probes(d_grid: Sequence[int], threshold: float, check_above: int = 1
                    ) -> list[tuple[int, int]]:
  """(d, padded width) of each probe, in order, of ``min_d``'s adaptive search for a trial whose
  verdicts are monotone with d*_t = the first grid d ≥ ``threshold`` (+inf: never verifies).

  The cost model of a plan: each probe builds the method once at its width.
  """
  d_grid = check_d_grid(d_grid)
  states = np.full(len(d_grid), NOT_EVALUATED, np.int8)
  probes = []
  while (level := next_level(d_grid, states, check_above)) is not None:
    states[level] = d_grid[level] >= threshold
    probes.append((d_grid[level], probe_width(d_grid[level], d_grid[-1])))
  return probes


def _adaptive_states(run, exact, d_grid: tuple[int, ...], trials: int, check_above: int
                     ) -> tuple[np.ndarray, int]:
  """(states int8 [T, G] with ``NOT_EVALUATED``, levels settled on the host) of an adaptive
  search: each round, every unsettled trial's ``next_level``, one ``run`` per probe width."""
  states = np.full((trials, len(d_grid)), NOT_EVALUATED, np.int8)
  host_levels = 0
  while True:
    wanted = np.array([_or(next_level(d_grid, row, check_above), -1) for row in states])
    if np.all(wanted < 0):
      return states, host_levels
    widths = np.array([probe_width(d_grid[g], d_grid[-1]) if g >= 0 else 0 for g in wanted])
    for width in np.unique(widths[wanted >= 0]).tolist():
      host_levels += _probe(run, exact, states, wanted, widths == width, width, d_grid)


def _probe(run, exact, states: np.ndarray, levels: np.ndarray, active: np.ndarray, width: int,
           d_grid: tuple[int, ...]) -> int:
  """Writes into ``states`` every active trial t's verdict at ``d_grid[levels[t]]``, built
  padded to ``width``; returns how many needed the host stage."""
  d = np.where(active, np.asarray(d_grid)[np.maximum(levels, 0)], 0)
  level_states, host_rows = run((jnp.asarray(d, jnp.int32), jnp.asarray(active)), width=width)
  verdicts, settled = settle_levels(level_states, host_rows, lambda t, _, rows: exact(
      t, int(levels[t]), rows, width=width))
  states[active, levels[active]] = verdicts[active, 0]
  return settled


def _or(value, default):
  return default if value is None else value


def _trial_level(key: PRNGKeyArray, sampler: Sampler, trials: int, **settings
                 ) -> Callable[[int, int, np.ndarray | None], bool]:
  """(t, g, rows) -> ``exact_level`` of trial t of ``min_d`` at grid level g, its pattern and
  construction keys from ``trial_keys``."""
  pattern_keys, method_keys = trial_keys(key, trials)
  return lambda t, g, rows, width=None: exact_level(
      method_keys[t], jax.jit(sampler)(pattern_keys[t]), level=g, rows=rows, width=width,
      **settings)


def _check_search(trials, delta, confidence, eps1, eps2, max_outside_mass, block_size, row_block,
                  max_trial_batch, matmul, schedule, method, check_above) -> bool:
  """``min_d``'s argument checks: ValueError naming the first bad one; whether the search is
  adaptive (``_check_schedule``)."""
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
  check_matmul(matmul)
  return _check_schedule(schedule, method, check_above)


def _check_schedule(schedule: str | None, method: str, check_above: int) -> bool:
  """Whether ``min_d`` searches adaptively; ValueError for a bad ``schedule`` or ``check_above``."""
  if schedule not in (None, "full", "adaptive"):
    raise ValueError(f"schedule must be 'full', 'adaptive' or None, got {schedule!r}")
  if schedule == "adaptive" and method in NESTED:
    raise ValueError(f"schedule='adaptive' needs a method built per d; {method!r} is nested "
                     "(every d is read off one draw)")
  if isinstance(check_above, bool) or not isinstance(check_above, int) or check_above < 0:
    raise ValueError(f"check_above must be a non-negative integer, got {check_above!r}")
  return schedule == "adaptive" or (schedule is None and method not in NESTED)
