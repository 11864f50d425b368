"""The compiled kernel of a search: the certified level states of one trial over a d grid, and
of T trials vmapped in batches and split over devices (docs/certified.md, docs/scale-and-speed.md).

Shapes depend on d_max only: nested methods read every d off one d_max draw,
others are built per d inside one compiled loop (or one probe at a padded
width), so a search never compiles per d.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, Shaped

from jaxattn._src import certify
from jaxattn._src.base import cast_pattern, resolve_dtype
from jaxattn._src.construct import NESTED, method_factors
from jaxattn._src.host_stage import HostRows, undecided_rows
from jaxattn._src.options import Criterion, SearchSpec
from jaxattn._src.pattern import SparsePattern
from jaxattn._src.tiles import default_tiles, shard_leading
from jaxattn._src.stream import row_stats
from jaxattn._src.verify import listed_row_states, row_ok, row_states

# Bytes of [G, rows, block] logit tiles one vmapped batch of trials may hold.
TILE_BUDGET = 1 << 28


def grid_states(
  key: PRNGKeyArray,
  pattern: SparsePattern,
  spec: SearchSpec,
  criterion: Criterion,
  *,
  mesh=None,
  d: Int[Array, ""] | None = None,
  width: int | None = None,
) -> tuple[Int[Array, " G"], HostRows]:
  """Whether ``spec.method`` verifies at every d of ``spec.d_grid`` for one pattern and key: per
  grid d ``certify.CERTAIN_OK``, ``CERTAIN_FAIL`` or ``UNDECIDED`` (int8; the host settles the
  last), with each level's undecided rows (``HostRows``; ``stream_level_states``). Given ``d`` (not
  nested): that d only, padded to ``width`` (G = 1, an adaptive probe).

  With η = ``max_outside_mass``, methods in ``MASS_AWARE`` build for η. Methods in ``NESTED``
  are drawn once at d_max and every d is read off nested prefixes in one streamed pass, logits
  ℓ^(d) = (d_max/d) Q_{:, :d} K_{:, :d}ᵀ; other methods are built at each d inside one
  compiled loop, padded to d_max: the program depends on d_max only. Factors are computed
  in float32 (float64 for ``dtype`` float64), verified in ``dtype`` (``resolve_dtype``).
  """
  evaluate, compute = resolve_dtype(spec.dtype)
  pattern = cast_pattern(pattern, compute)
  build = lambda d, width: jax.tree.map(
    lambda x: x.astype(evaluate),
    method_factors(
      spec.method,
      key,
      pattern,
      d,
      width,
      criterion.eps1,
      criterion.eps2,
      dtype=evaluate,
      max_outside_mass=criterion.max_outside_mass,
      causal=spec.causal,
    ),
  )
  states = functools.partial(
    stream_level_states, pattern=pattern, spec=spec, criterion=criterion, mesh=mesh
  )
  d_grid = spec.d_grid
  d_max = d_grid[-1]
  if spec.method in NESTED:
    return states(build(d_max, d_max), d_grid, d_max / jnp.asarray(d_grid, evaluate))
  ones = jnp.ones((1,), evaluate)
  if d is not None:
    assert width is not None, "a probe at d is built padded to its width"
    return states(build(d, width), (width,), ones)
  return jax.tree.map(
    lambda x: x[:, 0],
    jax.lax.map(lambda d: states(build(d, d_max), (d_max,), ones), jnp.asarray(d_grid)),
  )


def stream_level_states(
  factors: tuple[Float[Array, "L w"], Float[Array, "L w"]],
  splits: tuple[int, ...],
  scales: Float[Array, " G"],
  *,
  pattern: SparsePattern,
  spec: SearchSpec,
  criterion: Criterion,
  mesh=None,
) -> tuple[Int[Array, " G"], HostRows]:
  """The states of G levels (prefixes ``splits`` of the factors, logits scaled by ``scales``)
  in one streamed pass (``row_stats``, with ``spec``'s tiles, products' dtype and ``causal``).

  Certified (``certify.certifiable`` and no ``layer_dtype``): a level fails if a row
  certainly fails, passes if every row certainly passes, and is undecided
  otherwise; after a pass with ``matmul="bfloat16"`` products, up to
  ``RECHECK_SHARE``·L undecided rows are re-done with float32 products
  (``recheck_rows``). Uncertified (the mass criterion, a ``layer_dtype``, a
  bfloat16 evaluation ``dtype``): the computed verdict, never undecided. With η =
  ``max_outside_mass`` (``row_ok``) the pass also streams each row's outside log-sum-exp.
  """
  queries, keys = factors
  max_outside_mass, limits = criterion.max_outside_mass, criterion.limits
  evaluate, _ = resolve_dtype(spec.dtype)
  first = certify.MATMUL_FORMATS[spec.matmul] if spec.layer_dtype is None else spec.layer_dtype
  block_size, row_block, causal = spec.block_size, spec.row_block, spec.causal
  # the outside mass is only streamed when it is judged
  stats = row_stats(
    queries,
    keys,
    pattern,
    splits,
    scales,
    block_size=block_size,
    mesh=mesh,
    row_block=row_block,
    full=max_outside_mass is not None,
    matmul_dtype=first,
    causal=causal,
  )
  if spec.layer_dtype is not None or not certify.certifiable(evaluate, max_outside_mass):
    verdicts = jnp.all(row_ok(stats, limits, max_outside_mass), -1).astype(jnp.int8)
    return verdicts, undecided_rows(jnp.ones_like(stats.gap, jnp.int8))
  states = row_states(stats, limits)
  if first is not None and jnp.finfo(first).bits < jnp.finfo(evaluate).bits:
    states = recheck_rows(
      queries,
      keys,
      pattern,
      states,
      splits,
      scales,
      limits,
      block_size=block_size,
      row_block=row_block,
      causal=causal,
    )
  return certify.level_states(states), undecided_rows(states)


# The share of rows a bfloat16 pass may leave to the in-program float32 re-check.
RECHECK_SHARE = 1 / 16


def recheck_rows(
  queries: Float[Array, "L w"],
  keys: Float[Array, "L w"],
  pattern: SparsePattern,
  states: Int[Array, "G L"],
  splits: tuple[int, ...],
  scales: Float[Array, " G"],
  limits: certify.Thresholds,
  *,
  block_size=None,
  row_block=None,
  causal: bool = False,
) -> Int[Array, "G L"]:
  """``states`` with the undecided rows of levels not already failing re-done with float32
  products, up to ⌈``RECHECK_SHARE``·L⌉ rows (a fixed buffer: the rest stay undecided)."""
  length = pattern.length
  capacity = max(1, math.ceil(RECHECK_SHARE * length))
  failing = jnp.any(states == certify.CERTAIN_FAIL, -1)
  needed = jnp.any((states == certify.UNDECIDED) & ~failing[:, None], 0)

  def recheck(states):
    rows = jnp.nonzero(needed, size=capacity, fill_value=length)[0]  # L: an empty slot
    redone = listed_row_states(
      queries,
      keys,
      pattern,
      rows,
      scales,
      limits,
      splits,
      block_size=block_size,
      row_block=row_block,
      causal=causal,
    )
    return states.at[:, rows].set(redone, mode="drop")

  # skipped at run time when no row needs it (outside vmap: under vmap both branches run)
  return jax.lax.cond(jnp.any(needed), recheck, lambda states: states, states)


def trial_keys(
  key: PRNGKeyArray, trials: int
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
    jax.vmap(jax.random.split)(jax.random.split(key, trials)), 1, 0
  )
  return pattern_keys, method_keys


compiled_grid_states = jax.jit(grid_states, static_argnames=("spec", "width"))


@functools.partial(
  jax.jit, static_argnames=("spec", "sampler", "trials", "trial_batch", "mesh", "width")
)
def trial_states(
  key,
  criterion: Criterion,
  probes=None,
  *,
  spec: SearchSpec,
  sampler,
  trials,
  trial_batch,
  mesh,
  width=None,
):
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
      method_key,
      sampler(pattern_key),
      spec,
      criterion,
      mesh=None if shard_trials else mesh,
      d=None if width is None else d,
      width=width,
    )
    if width is None:
      return run()
    skip = lambda: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), jax.eval_shape(run))
    return jax.lax.cond(active, run, skip)

  devices = mesh.size if shard_trials else 1
  # Every device runs whole batches of trial_batch trials, aligned as on one device;
  # padding trials repeat trial 0, are inactive and are dropped.
  padded = math.ceil(trials / (devices * trial_batch)) * devices * trial_batch
  inputs = (*trial_keys(key, trials), probes[0], probes[1])
  inputs = jax.tree.map(
    lambda k: jnp.concatenate([k, jnp.broadcast_to(k[:1], (padded - trials, *k.shape[1:]))]), inputs
  )
  inputs = (*inputs[:3], inputs[3].at[trials:].set(False))
  batch = trial_batch if trial_batch > 1 else None  # one at a time: no vmap, so conds branch
  states = shard_leading(
    lambda *k: jax.lax.map(trial, k, batch_size=batch), mesh if shard_trials else None, *inputs
  )
  return jax.tree.map(lambda x: x[:trials], states)


def trial_batch(
  length: int, grid_size: int, block_size: int | None, row_block: int | None, trials: int
) -> int:
  """Trials per vmapped batch: ≈ one row block of work per step, tiles within TILE_BUDGET."""
  default_rows, default_keys = default_tiles()
  rows = row_block or default_rows
  tile = 4 * grid_size * min(rows, length) * min(block_size or default_keys, length)
  return int(max(1, min(trials, rows // length, TILE_BUDGET // tile)))


@functools.partial(jax.jit, static_argnames=("sampler", "trials"))
def future_entries(key: PRNGKeyArray, *, sampler, trials: int) -> Bool[Array, " T"]:
  """Whether trial t's pattern (``trial_keys``) has a nonzero above the diagonal (j > i), one
  pattern at a time: a causal search checks its draws before any work."""

  def future(pattern_key):
    pattern = sampler(pattern_key)
    rows = jnp.arange(pattern.length)[:, None]
    return jnp.any(pattern.sparse_valid & (pattern.cols > rows))

  return jax.lax.map(future, trial_keys(key, trials)[0])
