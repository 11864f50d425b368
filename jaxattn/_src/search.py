"""The searches over d: ``verify_grid`` (one pattern and key) and ``min_d`` (T trials), with
their grids. Minimal d: the smallest grid d at which a method succeeds on ≥ 1 − δ of T
trials, and per-trial thresholds with their quantiles (docs/definitions.md §2, §5).

The jobs live in their own modules: the compiled kernel (``grid_kernel``),
the certified host stage (``host_stage``), the adaptive schedule
(``schedule``) and the estimators (``estimators``).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from jaxattn._src import certify, grid_kernel, host_stage
from jaxattn._src.base import check_d_grid, check_eps, check_outside_mass, resolve_dtype
from jaxattn._src.construct import METHODS, NESTED
from jaxattn._src.cost import choose_schedule
from jaxattn._src.estimators import MinDResult, impute_verdicts
from jaxattn._src.grid_kernel import trial_keys
from jaxattn._src.pattern import SparsePattern, check_causal
from jaxattn._src.options import (
  Compute,
  Criterion,
  SearchSpec,
  check_compute,
  keyword_eps,
  legacy_options,
)
from jaxattn._src.schedule import adaptive_states, check_schedule
from jaxattn._src.tiles import local_mesh
from jaxattn._src.verify import check_matmul

Sampler = Callable[[PRNGKeyArray], SparsePattern]


def _checked_grid(d_grid: Sequence[int], method: str) -> tuple[int, ...]:
  """``check_d_grid(d_grid)``; ValueError also if ``method`` is not registered."""
  d_grid = check_d_grid(d_grid)
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
  return d_grid


def geometric_grid(stop: int, per_octave: int = 4, start: int = 1) -> tuple[int, ...]:
  """The integers round(2^(k/per_octave)), k = 0, 1, ..., in [start, stop], and stop itself.

  Deduplicated and increasing: ``geometric_grid(256, 2)`` = (1, 2, 3, 4, 6,
  8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256). ValueError unless
  1 ≤ start ≤ stop and per_octave ≥ 1.
  """
  if not (1 <= start <= stop and per_octave >= 1):
    raise ValueError(
      f"need 1 <= start <= stop and per_octave >= 1, got start={start}, "
      f"stop={stop}, per_octave={per_octave}"
    )
  steps = int(np.floor(np.log2(stop) * per_octave + 1e-9))
  grid = {int(round(2 ** (k / per_octave))) for k in range(steps + 1)} | {stop}
  return tuple(sorted(d for d in grid if d >= start))


@legacy_options
@keyword_eps
def verify_grid(
  key: PRNGKeyArray,
  pattern: SparsePattern,
  d_grid: Sequence[int],
  *,
  eps1: float,
  eps2: float,
  max_outside_mass: float | None = None,
  causal: bool = False,
  method: str = "jl",
  matmul: str = "float32",
  compute: Compute = Compute(),
) -> np.ndarray:
  """ok(d) = ``verify(build(method, key, pattern, d, ...), pattern, eps1=eps1, eps2=eps2, ...).ok``
  for every grid d, under the mass criterion when ``max_outside_mass`` = η is given.

  For one fixed pattern and key, on the schedule ``min_d`` uses (``compute.schedule``; None:
  the cheaper by ``ja.schedule.choose_schedule``): "full" computes every grid d in one compiled
  pass (``grid_states``: nested prefixes of one d_max draw for methods in ``NESTED``, one loop
  padded to d_max otherwise); "adaptive" builds only the levels ``next_level`` asks for and
  imputes the others by monotonicity (``impute_verdicts``: exact where the method is
  monotone, as ``min_d``'s thresholds). Never one compile per d.
  The smallest d with ok(d) is the pattern's own minimal d for this key. Verdicts are
  certified as ``ja.verify``'s are (``matmul``); levels the pass leaves undecided are settled
  by ``exact_level``. ``causal``: verdicts of a causal layer (the pattern must be causal).

  Returns:
    bool [G], host array.
  """
  d_grid = _checked_grid(d_grid, method)
  _check_options(eps1, eps2, max_outside_mass, matmul, compute, method)
  if causal:
    check_causal(pattern)
  adaptive = _adaptive(compute.schedule, method, pattern, d_grid)
  spec = SearchSpec(
    method,
    d_grid,
    causal=causal,
    matmul=matmul,
    block_size=compute.block_size,
    row_block=compute.row_block,
  )
  criterion = Criterion(
    eps1, eps2, max_outside_mass, certify.thresholds(eps1, eps2, resolve_dtype(None)[0])
  )
  states = functools.partial(grid_kernel.compiled_grid_states, key, pattern, spec, criterion)
  exact = lambda t, g, rows, width=None: host_stage.exact_level(
    key, pattern, spec, level=g, eps1=eps1, eps2=eps2, rows=rows, width=width
  )
  one = lambda tree: jax.tree.map(lambda x: x[None], tree)
  if adaptive:
    run = lambda probes, width: one(states(d=probes[0][0], width=width))
    return impute_verdicts(adaptive_states(run, exact, d_grid, 1, compute.check_above)[0])[0]
  return _settled(lambda: one(states()), exact)[0][0]


@legacy_options
@keyword_eps
def min_d(
  key: PRNGKeyArray,
  sampler: Sampler,
  d_grid: Sequence[int],
  *,
  eps1: float,
  eps2: float,
  max_outside_mass: float | None = None,
  causal: bool = False,
  dtype=None,
  layer_dtype=None,
  method: str = "jl",
  trials: int = 16,
  delta: float = 0.1,
  confidence: float = 0.95,
  matmul: str = "float32",
  compute: Compute = Compute(),
) -> MinDResult:
  """d_min = min{d ∈ grid : #successes(d)/T ≥ 1 − δ} over T independent trials, and per trial
  its verdicts, threshold d*_t and first success, with the quantiles d_50 and d_{1−δ}.

  Trial t draws a fresh pattern ``sampler(k_A)`` and construction ``method(k_X, A, d)`` from
  split keys; it succeeds at d iff ``verify`` passes. Trials are split over this process's
  devices (or row blocks) and vmapped in batches; never one compile per d. Verdicts are
  certified (docs/certified.md; the host settles what the program cannot, ``exact_level``).
  The schedule is ``verify_grid``'s: "adaptive" builds per trial only the levels
  ``next_level`` asks for and imputes the rest by monotonicity (docs/practice.md).

  Args:
    key: PRNG key; the same key gives the same result on the same device.
    sampler: key -> SparsePattern, hashable; best a ``ja.patterns.Sampler``, which compiles
      once for equal arguments (a ``functools.partial`` compiles per new object).
    d_grid: increasing positive dimensions to test.
    eps1, eps2: tolerances ε1 > 0 and ε2 ∈ (0, 1).
    max_outside_mass: η ∈ (0, 1) of the mass criterion (``verify``); None: the ratio criterion.
    causal: a causal layer (``verify``'s); every trial's pattern is checked causal first.
      Same key, same draws: d*_t(causal) ≤ d*_t(bidirectional) unless CAUSAL_AWARE.
    dtype, layer_dtype: the layer's precision and the dtype its Q, K are rounded to (``verify``).
    method: a construction name (``ja.construct.METHODS``).
    trials, delta, confidence: T ≥ 1; the failure fraction δ ∈ [0, 1); the intervals' level.
    matmul: the certified pass's products, "float32" (default) or "bfloat16" (``verify``).
    compute: ``ja.Compute``: ``block_size`` and ``row_block`` (``verify``'s tiles),
      ``max_trial_batch`` (trials per vmapped batch: a memory budget), ``schedule`` and
      ``check_above`` (levels checked above a trial's top).

  Returns:
    ``MinDResult``: d_min, rates, [T, G] verdicts, thresholds and quantiles (docstring there).
  """
  d_grid = _checked_grid(d_grid, method)
  _check_search(trials, delta, confidence, eps1, eps2, max_outside_mass, matmul, compute, method)
  if causal:
    _check_causal_trials(key, sampler, trials)
  evaluate, _ = resolve_dtype(dtype)
  spec = SearchSpec(
    method,
    d_grid,
    evaluate.name,
    causal,
    matmul,
    None if layer_dtype is None else jnp.dtype(layer_dtype),
    compute.block_size,
    compute.row_block,
  )
  shape = jax.eval_shape(sampler, key)
  adaptive = _adaptive(compute.schedule, method, shape, d_grid, trials)
  batch = grid_kernel.trial_batch(
    shape.length, len(d_grid) if method in NESTED else 1, spec.block_size, spec.row_block, trials
  )
  run = functools.partial(
    grid_kernel.trial_states,
    key,
    Criterion(eps1, eps2, max_outside_mass, certify.thresholds(eps1, eps2, evaluate)),
    spec=spec,
    sampler=sampler,
    trials=trials,
    mesh=local_mesh(),
    trial_batch=min(batch, compute.max_trial_batch or trials),
  )
  exact = _trial_level(key, sampler, trials, spec, eps1=eps1, eps2=eps2)
  verdicts, host_levels = (
    adaptive_states(run, exact, d_grid, trials, compute.check_above)
    if adaptive
    else _settled(run, exact)
  )
  return MinDResult.from_verdicts(d_grid, verdicts, delta, confidence)._replace(
    certified=spec.layer_dtype is None and certify.certifiable(evaluate, max_outside_mass),
    levels_on_host=host_levels,
  )


def _adaptive(
  schedule: str | None, method: str, shape: SparsePattern, d_grid: tuple[int, ...], trials: int = 1
) -> bool:
  """Whether a search runs the adaptive schedule: as named, or the cheaper by the cost model
  (``cost.choose_schedule``) for patterns of ``shape``'s length and N."""
  return (
    schedule or choose_schedule(method, shape.length, shape.nnz, d_grid, trials)
  ) == "adaptive"


def _settled(run: Callable[[], tuple], exact: Callable[..., bool]) -> tuple[np.ndarray, int]:
  """``host_stage.settle_levels`` of the level states and host rows ``run()`` computes."""
  states, host_rows = run()
  return host_stage.settle_levels(states, host_rows, exact)


def _trial_level(
  key: PRNGKeyArray, sampler: Sampler, trials: int, spec: SearchSpec, *, eps1: float, eps2: float
) -> Callable[..., bool]:
  """(t, g, rows, width) -> ``exact_level`` of trial t of ``min_d`` at grid level g, its pattern
  and construction keys from ``trial_keys``."""
  pattern_keys, method_keys = trial_keys(key, trials)

  def exact(t: int, g: int, rows: np.ndarray | None, width: int | None = None) -> bool:
    return host_stage.exact_level(
      method_keys[t],
      jax.jit(sampler)(pattern_keys[t]),
      spec,
      level=g,
      rows=rows,
      width=width,
      eps1=eps1,
      eps2=eps2,
    )

  return exact


def _check_causal_trials(key: PRNGKeyArray, sampler: Sampler, trials: int) -> None:
  """ValueError naming the first trial whose pattern is not causal, and its row and column."""
  future = np.asarray(grid_kernel.future_entries(key, sampler=sampler, trials=trials))
  if future.any():
    t = int(np.argmax(future))
    try:
      check_causal(jax.jit(sampler)(trial_keys(key, trials)[0][t]))
    except ValueError as error:
      raise ValueError(f"causal=True, trial {t}: {error}") from None


def _check_search(
  trials, delta, confidence, eps1, eps2, max_outside_mass, matmul, compute: Compute, method: str
) -> None:
  """``min_d``'s argument checks: ValueError naming the first bad one."""
  if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
    raise ValueError(f"trials must be a positive integer, got {trials!r}")
  if not 0.0 <= delta < 1.0:
    raise ValueError(f"delta must be in [0, 1), got {delta}")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  _check_options(eps1, eps2, max_outside_mass, matmul, compute, method)


def _check_options(eps1, eps2, max_outside_mass, matmul, compute: Compute, method: str) -> None:
  """The argument checks ``verify_grid`` and ``min_d`` share: ValueError naming the first bad
  one (ε, η, the matmul format, ``compute`` and its schedule for ``method``)."""
  check_eps(eps1, eps2)
  check_outside_mass(max_outside_mass)
  check_compute(compute)
  check_matmul(matmul)
  check_schedule(compute.schedule, method)
