"""The streamed pass of a verification: each row's figures over key blocks (docs/definitions.md).

For logits ℓ = Q Kᵀ and a pattern with supports S_i, row i is judged by

  spread_i = max_{j∈S_i}(ℓ_ij − ln A_ij) − min_{j∈S_i}(ℓ_ij − ln A_ij)   (ratios, ε1)
  gap_i    = max_{j∉S_i} ℓ_ij − min_{j∈S_i} ℓ_ij                         (zeros, ε2)

and P = row-softmax(ℓ) (ε1, ε2)-approximates A iff spread_i ≤ ln(1+ε1) and
gap_i ≤ ln ε2 for every i. Neither needs a normalised P: support logits are
gathered (O(L·N·d)), and the maximum outside the support is an online
reduction over key blocks, so memory is O(row_block·block + L·(N + d)),
never O(L²). The mass criterion (η = ``max_outside_mass``) also asks
Σ_{j∉S_i} P_ij ≤ η of every row: an online log-sum-exp in the same pass.

A dense row (``SparsePattern.dense``: support every key, A_ij = 1) has no zero
condition and spread_i = max_j ℓ_ij − min_j ℓ_ij over every key: its maximum
and (negated) minimum are streamed like the outside maximum, gap_i = −∞ and
its outside mass is 0 (``dense_row_figures``).

``row_stats`` computes them; ``verify`` (``jaxattn._src.verify``) judges them,
certified (docs/certified.md).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Bool, Float, Int

from jaxattn._src import certify
from jaxattn._src.pattern import SparsePattern
from jaxattn._src.tiles import (
  SupportStats,
  causal_mask,
  default_tiles,
  dot,
  pad_rows,
  padding_mask,
  row_blocks,
  shard_leading,
  support_stats,
  tile_mask,
)


class RowStats(NamedTuple):
  """Per-row figures at G nested dimensions (leading axis G)."""

  spread: Float[Array, "G L"]
  gap: Float[Array, "G L"]
  outside_mass: Float[Array, "G L"]  # Σ_{j∉S_i} P_ij; zeros unless full=True
  max_abs_logit: Float[Array, "G L"]  # max_j |ℓ_ij|; zeros unless full=True
  spread_bound: Float[Array, "G L"]  # σ_i ≥ |spread_i − exact spread_i| (``certify``)
  gap_bound: Float[Array, "G L"]  # τ_i ≥ |gap_i − exact gap_i|


# Without ``full``, levels with d ≤ _RANK1_MAX_D are formed by rank-1 updates
# (one per column) rather than matmuls: a column costs about 4× a matmul
# column per logit there, but saves a product tile per level (up to 16
# measured fastest on the 2-core CPU).
_RANK1_MAX_D = 16


def _row_maxima(tiles: list[Float[Array, "R B"]]) -> tuple[Float[Array, " R"], ...]:
  """max_j T_ij for every tile T, as one variadic reduce.

  XLA fuses the elementwise ops that form the tiles (running sums, rank-1
  updates) into the reduce: one pass over their inputs, and the sums are
  never written.
  """
  neg_inf = jnp.asarray(-jnp.inf, tiles[0].dtype)
  return jax.lax.reduce(
    tuple(tiles), (neg_inf,) * len(tiles), lambda x, y: tuple(map(jnp.maximum, x, y)), (1,)
  )


def _full_update(
  carry: tuple[Float[Array, "G R"], Float[Array, "G R"], Float[Array, "G R"]],
  mask: Float[Array, "R B"],
  products: list[Float[Array, "R B"]],
  scales: Float[Array, " G"],
) -> tuple[Float[Array, "G R"], ...]:
  """The online outside statistics (m, s, a) of every level after one key block (``full``).

  With the level's logits ℓ_ij = scales[g] · C_g,ij, C_g = Σ_{r ≤ g} products[r],
  over the block's columns j not excluded by ``mask`` (support or padding):

    m' = max(m, max_j ℓ_ij),   s' = s·e^{m − m'} + Σ_j e^{ℓ_ij − m'},   a' = max(a, max_j |ℓ_ij|)

  (m' read as 0 in the exponents while it is −∞), so s·e^m = Σ_{j∉S_i} e^{ℓ_ij} so far.
  """
  neg_inf = jnp.asarray(-jnp.inf, mask.dtype)
  excluded = mask < 0  # [R, B]: support or padding
  levels = []
  for g, tile in enumerate(itertools.accumulate(products)):
    logits = scales[g] * tile
    outside = jnp.where(excluded, neg_inf, logits)
    tile_abs = jnp.max(jnp.where(excluded, 0.0, jnp.abs(logits)), -1)
    out_max, out_sum, abs_max = (c[g] for c in carry)
    new_max = jnp.maximum(out_max, jnp.max(outside, -1))
    ref = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
    out_sum = out_sum * jnp.exp(out_max - ref) + jnp.sum(jnp.exp(outside - ref[..., None]), -1)
    levels.append((new_max, out_sum, jnp.maximum(abs_max, tile_abs)))
  return jax.tree.map(lambda *c: jnp.stack(c), *levels)


def _level_maxima(
  mask: Float[Array, "R B"],
  products: list[Float[Array, "R B"]],
  q: Float[Array, "R w"],
  keys_t: Float[Array, "d B"],
  rank1_dims: tuple[int, ...],
) -> Float[Array, "G R"]:
  """max_j C_g,ij of every level's tile over one key block, without writing a tile (not ``full``).

  The first levels (d ∈ ``rank1_dims``) are C_0 plus one rank-1 update per column,
  C_0 + Σ_{c < d} q_:c k_cᵀ (``keys_t`` holds the key columns as rows); the
  others are running sums C_0 + Σ_{r ≤ g} products[r]. Each kind's maxima
  come from one fused reduce (``_row_maxima``), so a level costs its product
  or updates and no pass of its own.
  """
  row_max: tuple[Array, ...] = ()
  if rank1_dims:
    sums = list(
      itertools.accumulate(
        (q[:, c : c + 1] * keys_t[c] for c in range(rank1_dims[-1])), initial=mask
      )
    )
    row_max += _row_maxima([sums[d] for d in rank1_dims])
  if products:
    row_max += _row_maxima(list(itertools.accumulate(products, initial=mask))[1:])
  return jnp.stack(row_max)


def _full_figures(
  out_max: Float[Array, "G R"],
  out_sum: Float[Array, "G R"],
  abs_max: Float[Array, "G R"],
  support: SupportStats,
) -> tuple[Float[Array, "G R"], Float[Array, "G R"]]:
  """Outside mass and max |ℓ| per row (``full``): the streamed (m, s, a) joined with the support's
  ln Σ e^ℓ and max |ℓ| (``support_stats``).

    Σ_{j∉S_i} P_ij = e^λ / (e^λ + Σ_{j∈S_i} e^{ℓ_ij}),   λ = ln s + m   (−∞ if nothing is outside),
    max_j |ℓ_ij|   = max(a, max_{j∈S_i} |ℓ_ij|).
  """
  ref = jnp.where(jnp.isfinite(out_max), out_max, 0.0)
  out_lse = jnp.log(out_sum) + ref
  outside_mass = jnp.exp(out_lse - jnp.logaddexp(out_lse, support.log_sum))
  return outside_mass, jnp.maximum(abs_max, support.abs_max)


def row_stats(
  queries: Float[Array, "L w"],
  keys: Float[Array, "L w"],
  pattern: SparsePattern,
  splits: tuple[int, ...],
  scales: Float[Array, " G"],
  *,
  block_size: int | None = None,
  row_block: int | None = None,
  full: bool = True,
  matmul_dtype=None,
  mesh: Mesh | None = None,
  rows: Int[Array, " M"] | None = None,
  causal: bool = False,
) -> RowStats:
  """spread_i, gap_i (and, if ``full``, outside mass and |ℓ| max) of the logits

    ℓ^(g) = scales[g] · Q[:, :splits[g]] K[:, :splits[g]]ᵀ,   g = 0..G−1,

  for every row, in one pass over key blocks of ``block_size`` and row
  blocks of ``row_block`` (defaults: ``default_tiles()``), with the bounds
  σ_i, τ_i on their rounding errors (``certify.spread_and_gap_bounds``).
  With ``splits = (w,)`` and ``scales = [1]`` these are the figures of
  ℓ = Q Kᵀ; a grid of splits evaluates nested prefixes. ``rows``: only
  these query rows (output [G, M]); default all.

  A [rows, block] tile is never recomputed per level: the prefix logits
  C_g = Q_{:, :d_g} K_{:, :d_g}ᵀ are running sums of the products over the
  consecutive column ranges [d_{g−1}, d_g), and since scales[g] > 0,
  max_j ℓ^(g)_ij = scales[g] · max_j C_g,ij. Without ``full`` the sums
  start from the tile's mask C_0 (−∞ at support and padding columns, else
  0), the levels with d_g ≤ ``_RANK1_MAX_D`` are C_0 plus rank-1 updates,
  and every level's row max comes from one fused pass (``_row_maxima``):
  the sums are never written, so a level costs its product and no pass of
  its own. Support and padding columns become −∞ by scattering each row's
  N column slots into the tile (no L×L mask); support logits are gathered,
  O(L·N·w).

  ``matmul_dtype`` (e.g. ``jnp.bfloat16``) rounds Q and K to that dtype once,
  for support and streamed logits alike, and accumulates every product in
  Q's dtype; the bounds cover that rounding, so they hold for the stored
  Q, K. With a ``mesh`` the row blocks are split over its devices (each
  holds all keys). ``causal``: the figures of a causal layer (docs/definitions.md §3), the
  keys j > i masked before every reduction: gap_i over j ≤ i, j ∉ S_i; a dense row's spread over
  j ≤ i; the outside mass of the softmax over j ≤ i.
  """
  width = keys.shape[1]
  if splits[-1] > width or list(splits) != sorted(set(splits)) or splits[0] < 1:
    raise ValueError(f"splits must increase within [1, {width}], got {splits}")
  row_index = jnp.arange(queries.shape[0]) if rows is None else jnp.asarray(rows)
  if rows is not None:
    queries, pattern = queries[rows], jax.tree.map(lambda x: x[rows], pattern)
  scales = jnp.asarray(scales, queries.dtype)
  stats, _ = _stream(
    queries,
    keys,
    pattern,
    splits,
    scales,
    block_size,
    row_block,
    full,
    matmul_dtype,
    mesh,
    row_index if causal else None,
  )
  stats = stats._replace(
    **dict(
      zip(
        ("spread_bound", "gap_bound"),
        _bounds(stats, queries, keys, pattern, splits, scales, matmul_dtype),
      )
    )
  )
  if mesh is not None and mesh.size > 1:  # gathered: later reductions run as on one device
    stats = jax.lax.with_sharding_constraint(stats, NamedSharding(mesh, PartitionSpec()))
  return stats


def _bounds(
  stats: RowStats,
  queries: Float[Array, "M w"],
  keys: Float[Array, "L w"],
  pattern: SparsePattern,
  splits: tuple[int, ...],
  scales: Float[Array, " G"],
  matmul_dtype,
) -> tuple[Float[Array, "G M"], Float[Array, "G M"]]:
  """σ, τ of ``row_stats``: the prefix norms of the stored factors and the weights' logarithms
  put into ``certify.spread_and_gap_bounds`` with this backend's rounding model."""
  dtype = queries.dtype
  u = certify.unit_roundoff(dtype)
  narrower = matmul_dtype is not None and jnp.finfo(matmul_dtype).bits < jnp.finfo(dtype).bits
  u_in = certify.unit_roundoff(matmul_dtype) if narrower else 0.0
  dims = jnp.asarray(splits)
  factor = certify.logit_factor(dims, u_in, u, certify.rounding_model().truncating)
  query_norms = certify.prefix_norms(queries, splits, u).T
  key_norm = jnp.max(certify.prefix_norms(keys, splits, u), axis=0)
  log_abs = jnp.where(pattern.valid, jnp.abs(jnp.log(pattern.weights.astype(dtype))), 0.0)
  log_norm_abs = jnp.max(jnp.abs(pattern.log_weights.astype(dtype)), -1)
  return certify.spread_and_gap_bounds(
    stats.spread,
    stats.gap,
    query_norms,
    key_norm,
    scales,
    factor,
    dims,
    jnp.max(log_abs, -1),
    log_norm_abs,
    u,
  )


def dense_row_figures(
  stats: RowStats,
  dense: Bool[Array, " R"],
  row_max: Float[Array, "G R"],
  negated_min: Float[Array, "G R"],
) -> RowStats:
  """``stats`` with the figures of the dense rows (support every key, A_ij = 1), from the streamed
  max_j ℓ_ij and −min_j ℓ_ij over every key:

    spread_i = max_j ℓ_ij − min_j ℓ_ij,   gap_i = −∞ (no key outside),   outside mass 0.
  """
  return stats._replace(
    spread=jnp.where(dense, row_max + negated_min, stats.spread),
    gap=jnp.where(dense, -jnp.inf, stats.gap),
    outside_mass=jnp.where(dense, 0.0, stats.outside_mass),
  )


def _key_blocks(
  keys: Float[Array, "L w"],
  splits: tuple[int, ...],
  rank1_dims: tuple[int, ...],
  block: int,
  n_blocks: int,
  dtype,
) -> tuple[list[tuple[int, int]], list[Array], Float[Array, "n d B"]]:
  """The keys per block of ``_stream``: the column ranges [d_{g−1}, d_g) of the levels formed as
  running sums of matmuls, the keys of each range [n, B, d_g − d_{g−1}], and the first
  ``rank1_dims[-1]`` key columns as rows [n, d, B] (for the rank-1 levels)."""
  summed_dims = tuple(splits[len(rank1_dims) :])
  ranges = list(zip((0,) + summed_dims[:-1], summed_dims))
  padded_keys = pad_rows(keys, n_blocks * block)
  key_ranges = [padded_keys[:, lo:hi].reshape(n_blocks, block, hi - lo) for lo, hi in ranges]
  rank1_width = rank1_dims[-1] if rank1_dims else 0
  keys_t = jnp.swapaxes(
    padded_keys[:, :rank1_width].reshape(n_blocks, block, rank1_width), 1, 2
  ).astype(dtype)
  return ranges, key_ranges, keys_t


def key_block_loop(step, init, blocks, block: int, row_index: Int[Array, " R"] | None):
  """(carry, key blocks run) of ``step`` over the key blocks of one row block, a counter carried
  in the loop: every block (a scan), or with ``row_index`` (a causal layer, keys j > i masked)
  only the first max_i ⌊i / block⌋ + 1, through a dynamic loop bound; the later blocks lie
  wholly above the diagonal. A dynamic bound, not ``lax.cond``: under ``vmap`` a cond runs both
  branches."""
  n_blocks = jax.tree.leaves(blocks)[0].shape[0]
  counted = lambda state, x: ((step(state[0], x)[0], state[1] + 1), None)
  if row_index is None:
    return jax.lax.scan(counted, (init, jnp.int32(0)), blocks)[0]
  visible = jnp.minimum(n_blocks, jnp.max(row_index) // block + 1)
  return jax.lax.fori_loop(
    0,
    visible,
    lambda b, state: counted(state, jax.tree.map(lambda x: x[b], blocks))[0],
    (init, jnp.int32(0)),
  )


def _stream_tiles(
  length: int, n_queries: int, block_size: int | None, row_block: int | None, mesh
) -> tuple[int, int, int, int]:
  """(key block, row block, key blocks, row blocks) of a streamed pass over ``n_queries`` rows
  and L keys (defaults: ``default_tiles()``), the row blocks a multiple of ``mesh``'s devices."""
  default_rows, default_keys = default_tiles()
  block = min(block_size or default_keys, length)
  row_block = min(row_block or default_rows, n_queries)
  devices = mesh.size if mesh else 1
  return (
    block,
    row_block,
    math.ceil(length / block),
    math.ceil(n_queries / row_block / devices) * devices,
  )


def _unseen_columns(
  start: Int[Array, ""],
  block: int,
  length: int,
  row_index: Int[Array, " R"] | None,
  mask: Float[Array, "R B"],
) -> Float[Array, "R B"]:
  """−∞ at the columns of a key block no row sees (padding past L; causal: j > i), else 0:
  a dense row's −min_j over every key it sees."""
  if row_index is None:
    return jnp.broadcast_to(padding_mask(start, block, length, mask.dtype), mask.shape)
  return causal_mask(start, block, row_index, mask.dtype)


def _row_block_figures(
  out_max: Float[Array, "G R"],
  out_sum: Float[Array, "G R"],
  abs_max: Float[Array, "G R"],
  negated: list,
  support: SupportStats,
  scales: Float[Array, " G"],
  full: bool,
  dense: Bool[Array, " R"] | None,
) -> RowStats:
  """A row block's ``RowStats`` from its streamed outside maxima (with sums and max |ℓ| if
  ``full``, already scaled) and its support's figures: gap_i = max_{j∉S_i} ℓ_ij −
  min_{j∈S_i} ℓ_ij with ℓ = s·C, the outside mass by ``_full_figures``; dense rows by
  ``dense_row_figures`` (``negated``: the streamed −min_j C_ij)."""
  if full:
    outside_mass, abs_max = _full_figures(out_max, out_sum, abs_max, support)
  else:
    out_max = scales[:, None] * out_max  # max_j s·C_ij = s · max_j C_ij for s > 0
    outside_mass = jnp.zeros_like(out_max)
  zeros = jnp.zeros_like(support.spread)
  stats = RowStats(support.spread, out_max - support.minimum, outside_mass, abs_max, zeros, zeros)
  return (
    stats
    if dense is None
    else dense_row_figures(stats, dense, out_max, scales[:, None] * negated[0])
  )


def _stream(
  queries,
  keys,
  pattern,
  splits,
  scales,
  block_size,
  row_block,
  full,
  matmul_dtype,
  mesh,
  row_index=None,
) -> tuple[RowStats, Int[Array, ""]]:
  """The streamed pass of ``row_stats`` (figures only; bounds zero) and the key tiles it ran: a
  ``key_block_loop`` per row block, the row blocks mapped (split over ``mesh``); with
  ``row_index`` (each row's i), a causal layer's, the key blocks above the diagonal skipped."""
  (length, width), n_queries, dtype = keys.shape, queries.shape[0], queries.dtype
  if matmul_dtype is not None:
    queries, keys = queries.astype(matmul_dtype), keys.astype(matmul_dtype)
  block, row_block, n_blocks, n_row_blocks = _stream_tiles(
    length, n_queries, block_size, row_block, mesh
  )
  prefix = (jnp.arange(width)[:, None] < jnp.asarray(splits)).astype(dtype)  # [w, G]
  rank1_dims = () if full else tuple(d for d in splits if d <= _RANK1_MAX_D)
  ranges, key_ranges, keys_t = _key_blocks(keys, splits, rank1_dims, block, n_blocks, dtype)

  def one_row_block(args):
    q, cols, valid, lw, dense, index = args
    q_ranges = [q[:, lo:hi] for lo, hi in ranges]
    q_exact = q.astype(dtype)  # for elementwise products, exact in ``dtype`` for narrower q
    support = support_stats(q_exact, keys, cols, lw, valid, prefix, scales, full=full)

    def key_block(carry, inputs):
      k_ranges, k_t, start = inputs
      mask = tile_mask(cols, valid, start, block, length, dtype, dense, index)
      products = [dot(q_r, k_r, dtype) for q_r, k_r in zip(q_ranges, k_ranges)]
      if full:
        new = _full_update(carry[:3], mask, products, scales)
      else:
        level_max = _level_maxima(mask, products, q_exact, k_t, rank1_dims)
        new = (jnp.maximum(carry[0], level_max), *carry[1:3])
      if dense is None:
        return new, None
      padding = _unseen_columns(start, block, length, index, mask)
      negated = _level_maxima(padding, [-p for p in products], -q_exact, k_t, rank1_dims)
      return new + (jnp.maximum(carry[3], negated),), None  # −min_j C_g,ij over every key

    shape = (len(splits), q.shape[0])
    init = (jnp.full(shape, -jnp.inf, dtype), *jnp.zeros((2, *shape), dtype))
    init += () if dense is None else (init[0],)
    (out_max, out_sum, abs_max, *negated), visited = key_block_loop(
      key_block, init, (key_ranges, keys_t, jnp.arange(n_blocks) * block), block, index
    )
    figures = _row_block_figures(out_max, out_sum, abs_max, negated, support, scales, full, dense)
    return figures, visited

  padded = n_row_blocks * row_block
  blocks = row_blocks(queries, pattern, n_row_blocks, row_block, dtype, row_index)
  stats, visited = shard_leading(lambda *b: jax.lax.map(one_row_block, b), mesh, *blocks)
  unblock = lambda s: jnp.moveaxis(s, 0, 1).reshape(len(splits), padded)[:, :n_queries]
  return jax.tree.map(unblock, stats), jnp.sum(visited)  # [n_row_blocks, G, R] -> [G, M]
