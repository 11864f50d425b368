"""The certified host stage of a search: the levels a compiled pass leaves undecided, settled in
exact arithmetic on the host (docs/certified.md, stage 3).

A level's undecided rows (up to ``HOST_ROWS`` by index) are decided by
``verify.host_rows_ok`` on the trial's factors, rebuilt from its key; with
more, ``verify.settle_rows`` re-does the level (a float32 pass first).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Int, PRNGKeyArray

from jaxattn._src import certify
from jaxattn._src.base import cast_pattern, resolve_dtype
from jaxattn._src.construct import NESTED, method_factors
from jaxattn._src.options import SearchSpec
from jaxattn._src.pattern import SparsePattern
from jaxattn._src.verify import host_rows_ok, settle_rows


# Undecided rows per level handed to the host by index (more: the host re-does the level's pass).
HOST_ROWS = 64


class HostRows(NamedTuple):
  """Each level's undecided rows, for the host stage: up to ``HOST_ROWS`` indices (L: an empty
  slot) and how many there are."""

  rows: Int[Array, "G C"]
  undecided: Int[Array, " G"]


def undecided_rows(states: Int[Array, "G L"]) -> HostRows:
  """``HostRows`` of the row states of every level."""
  undecided = states == certify.UNDECIDED
  rows = jax.vmap(lambda u: jnp.nonzero(u, size=HOST_ROWS, fill_value=u.shape[0])[0])(undecided)
  return HostRows(rows.astype(jnp.int32), jnp.sum(undecided, -1, dtype=jnp.int32))


@functools.partial(jax.jit, static_argnames=("method", "width", "dtype", "causal"))
def trial_factors(key, pattern, d, eps1, eps2, *, method, width, dtype, causal=False):
  """A trial's factors at d (width ``width``), as ``grid_states`` builds them."""
  evaluate, compute = resolve_dtype(dtype)
  factors = method_factors(
    method, key, cast_pattern(pattern, compute), d, width, eps1, eps2, dtype=evaluate, causal=causal
  )
  return jax.tree.map(lambda x: x.astype(evaluate), factors)


def exact_level(
  key: PRNGKeyArray,
  pattern: SparsePattern,
  spec: SearchSpec,
  *,
  level: int,
  eps1: float,
  eps2: float,
  rows: np.ndarray | None = None,
  width: int | None = None,
) -> bool:
  """The exact verdict of one trial at ``d_grid[level]``, for a level the search left undecided.

  The factors are rebuilt from the trial's key (d_max for nested methods,
  whose level is ℓ = (d_max/d) Q_{:, :d} K_{:, :d}ᵀ; d padded to ``width``,
  default d_max, otherwise). ``rows``: the level's undecided rows (every
  other row is certainly ok), decided in exact arithmetic on the host; None
  (more than ``HOST_ROWS``): ``settle_rows`` decides every row, a float32
  pass first. In a causal layer's semantics with ``spec.causal``.
  """
  d_max, d, causal = spec.d_grid[-1], spec.d_grid[level], spec.causal
  nested, width = spec.method in NESTED, width or d_max
  queries, keys = trial_factors(
    key,
    pattern,
    d_max if nested else d,
    eps1,
    eps2,
    method=spec.method,
    width=width,
    dtype=spec.dtype,
    causal=causal,
  )
  split, scale = (d, (d_max, d)) if nested else (width, (1, 1))
  if rows is None:
    ok, _ = settle_rows(
      queries,
      keys,
      pattern,
      None,
      eps1,
      eps2,
      split=split,
      scale=scale,
      block_size=spec.block_size,
      row_block=spec.row_block,
      causal=causal,
    )
  else:
    ok = host_rows_ok(
      queries, keys, pattern, rows, eps1, eps2, split=split, scale=scale, causal=causal
    )
  return bool(ok.all())


def settle_levels(
  states: Int[ArrayLike, "T G"],
  host_rows: HostRows,
  exact: Callable[[int, int, np.ndarray | None], bool],
) -> tuple[np.ndarray, int]:
  """Verdicts bool [T, G] from level states [T, G] and their ``HostRows`` [T, G, ...],
  ``exact(t, g, rows)`` deciding the undecided levels (rows None: more than ``HOST_ROWS``);
  and how many levels that took."""
  states, rows, count = (np.asarray(x) for x in (states, host_rows.rows, host_rows.undecided))
  verdicts = states == certify.CERTAIN_OK
  undecided = np.argwhere(states == certify.UNDECIDED)
  for t, g in undecided:
    listed = rows[t, g, : count[t, g]] if count[t, g] <= rows.shape[-1] else None
    verdicts[t, g] = exact(int(t), int(g), listed)
  return verdicts, len(undecided)
