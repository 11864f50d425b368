"""The mining pass of ``optimize``: each row's K hardest negatives H_i, with its streamed
spread_i and gap_i, in one pass over key blocks (the tiling of ``ja.verify``: ``tiles``).

Per tile of rows × keys, the maximum of every chunk of ``CHUNK``
consecutive keys, merged per group of key blocks (``lax.top_k`` over the
row's K kept maxima and the group's new ones; a group is the largest
divisor of the number of blocks that is ≤ ``MERGE_BLOCKS`` and at most half
of it) into each row's K largest chunk maxima. The K largest logits of a
row lie in those K chunks (a chunk holding one of them has its maximum ≥
the K-th largest logit, and at most K chunks do), so recomputing the
K·CHUNK logits of those chunks from gathered keys and keeping their top K
is exact, while the pass itself costs one matmul and one fused max per tile.
The same pass yields max_{j∉S_i} ℓ_ij exactly (the largest chunk maximum),
so gap_i: ``optimize``'s stopping test (module ``optimize``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from jaxattn._src.base import HIGHEST
from jaxattn._src.pattern import SparsePattern
from jaxattn._src.tiles import default_tiles, dot, pad_rows, row_blocks, support_stats, tile_mask

CHUNK = 32  # keys per chunk of the mining pass
MERGE_BLOCKS = 16  # at most this many key blocks per top-K merge of the mining pass
# (merging after every block made the pass markedly slower on the CPU)


class Mined(NamedTuple):
  """Output of ``mine``: each row's hard negatives and its streamed figures."""

  negatives: Int[Array, "L K"]  # column indices of the K largest off-support logits, largest first
  valid: Bool[Array, "L K"]  # False where the row has fewer than K off-support columns
  spread: Float[Array, " L"]  # spread_i (docs/definitions.md)
  gap: Float[Array, " L"]  # gap_i = max_{j∉S_i} ℓ_ij − min_{j∈S_i} ℓ_ij


def merge_chunk_maxima(
  carry: tuple[Float[Array, "R k"], Int[Array, "R k"]],
  maxima: Float[Array, "R G P"],
  start: Int[Array, " G"],
  chunk: int,
  kept: int,
) -> tuple[Float[Array, "R k"], Int[Array, "R k"]]:
  """Per row, the ``kept`` largest chunk maxima, and their chunk ids, of the kept ``carry`` and
  the maxima of a group of G key blocks (P chunks each) starting at keys ``start``."""
  rows, group, per_block = maxima.shape
  ids = start[:, None] // chunk + jnp.arange(per_block, dtype=jnp.int32)  # [group, per_block]
  ids = jnp.broadcast_to(ids.reshape(-1), (rows, group * per_block))
  values, order = jax.lax.top_k(jnp.concatenate([carry[0], maxima.reshape(rows, -1)], 1), kept)
  return values, jnp.take_along_axis(jnp.concatenate([carry[1], ids], 1), order, 1)


def negatives_in_chunks(
  q: Float[Array, "R w"],
  keys: Float[Array, "P w"],
  chunk_ids: Int[Array, "R k"],
  cols: Int[Array, "R N"],
  valid: Bool[Array, "R N"],
  chunk: int,
  count: int,
  length: int,
  causal: tuple[Int[Array, " R"], Float[Array, "R k"]] | None = None,
) -> tuple[Int[Array, "R K"], Bool[Array, "R K"]]:
  """The ``count`` largest off-support logits of each row among the keys of its kept chunks
  (columns, largest first) and whether each exists (rows with fewer off-support columns).
  ``causal`` = (each row's index i, its kept chunk maxima): only the columns j ≤ i, of chunks
  whose maximum is finite (an early row sees fewer chunks than it keeps; the rest are padding
  that may repeat a chunk)."""
  rows = q.shape[0]
  columns = (chunk_ids[:, :, None] * chunk + jnp.arange(chunk)).reshape(rows, -1)
  logits = jnp.einsum("rw,rcw->rc", q, keys[columns], precision=HIGHEST)
  in_support = jnp.any((columns[:, :, None] == cols[:, None, :]) & valid[:, None, :], -1)
  outside = (columns < length) & ~in_support
  if causal is not None:
    row_index, chunk_max = causal
    seen = jnp.repeat(jnp.isfinite(chunk_max), chunk, axis=1)
    outside = outside & (columns <= row_index[:, None]) & seen
  values, order = jax.lax.top_k(jnp.where(outside, logits, -jnp.inf), count)
  negatives = jnp.minimum(jnp.take_along_axis(columns, order, 1), length - 1)
  return negatives, jnp.isfinite(values)


class MineTiles(NamedTuple):
  """The tiling of one ``mine`` pass (static): chunks of keys, key blocks merged in groups,
  row blocks, and how many chunk maxima and negatives each row keeps."""

  chunk: int  # keys per chunk
  block: int  # keys per block, whole chunks
  n_blocks: int
  group: int  # key blocks per top-k merge, a divisor of n_blocks
  rows: int  # rows per row block
  n_row_blocks: int
  kept: int  # chunk maxima kept per row
  negatives: int  # negatives per row


def mine_tiles(
  length: int, count: int, block_size: int | None, row_block: int | None, merge_blocks: int
) -> MineTiles:
  """``mine``'s tiling of L keys for ``count`` negatives (defaults: ``default_tiles()``)."""
  default_rows, default_keys = default_tiles()
  chunk = min(CHUNK, length)
  block = math.ceil(min(block_size or default_keys, length) / chunk) * chunk
  n_blocks = math.ceil(length / block)
  rows = min(row_block or default_rows, length)
  # Blocks per merge: a divisor of n_blocks, at most half of them (a single group, a scan of
  # length 1, made the pass slower than merging every block on the CPU, L = 1024–8192).
  group = max(
    g for g in range(1, min(merge_blocks, max(1, n_blocks // 2)) + 1) if n_blocks % g == 0
  )
  return MineTiles(
    chunk,
    block,
    n_blocks,
    group,
    rows,
    math.ceil(length / rows),
    kept=min(count, n_blocks * (block // chunk)),
    negatives=min(count, length),
  )


def largest_chunk_maxima(
  q: Float[Array, "R w"],
  keys: Float[Array, "P w"],
  cols: Int[Array, "R N"],
  valid: Bool[Array, "R N"],
  index: Int[Array, " R"] | None,
  tiles: MineTiles,
  length: int,
) -> tuple[Float[Array, "R k"], Int[Array, "R k"]]:
  """Per row of a row block, its ``tiles.kept`` largest maxima of chunks of keys off its support
  (and j ≤ i given the rows' ``index``, causal), with their chunk ids: one streamed pass over
  the padded ``keys``, merged per group of key blocks (``merge_chunk_maxima``)."""
  chunk, block, n_blocks, group = tiles.chunk, tiles.block, tiles.n_blocks, tiles.group
  per_block = block // chunk
  dtype = q.dtype
  key_blocks = keys.reshape(n_blocks // group, group, block, keys.shape[1])
  starts = (jnp.arange(n_blocks, dtype=jnp.int32) * block).reshape(n_blocks // group, group)

  def chunk_maxima(k, start):
    tile = dot(q, k, dtype) + tile_mask(cols, valid, start, block, length, dtype, None, index)
    return jnp.max(tile.reshape(tiles.rows, per_block, chunk), -1)

  def key_group(carry, inputs):
    k, start = inputs
    maxima = jnp.moveaxis(jax.lax.map(lambda a: chunk_maxima(*a), (k, start)), 0, 1)
    return merge_chunk_maxima(carry, maxima, start, chunk, tiles.kept), None

  init = (
    jnp.full((tiles.rows, tiles.kept), -jnp.inf, dtype),
    jnp.zeros((tiles.rows, tiles.kept), jnp.int32),
  )
  return jax.lax.scan(key_group, init, (key_blocks, starts))[0]


def mine(
  queries: Float[Array, "L w"],
  keys: Float[Array, "L w"],
  pattern: SparsePattern,
  count: int,
  *,
  block_size: int | None = None,
  row_block: int | None = None,
  merge_blocks: int = MERGE_BLOCKS,
  causal: bool = False,
) -> Mined:
  """H_i = the ``count`` largest ℓ_ij over j ∉ S_i (ℓ = Q Kᵀ), with spread_i and gap_i, in one pass
  (``causal``: over j ≤ i, j ∉ S_i, the keys j > i masked as in ``ja.verify``'s causal pass).

  Streams over key blocks of ``block_size`` (rounded up to whole chunks) in
  row blocks of ``row_block`` (defaults: ``default_tiles()``), keeping per
  row the ``count`` largest maxima of chunks of ``CHUNK`` keys, merged per
  group of at most ``merge_blocks`` key blocks (module docstring,
  ``largest_chunk_maxima``), then the negatives among the kept chunks' keys
  (``negatives_in_chunks``); memory O(L·(N + count + w) + tile + row_block·count·CHUNK·w).
  A dense row (``SparsePattern.dense``) is taken at q_i = 0, where ``optimize_run`` holds it:
  spread 0 (its one placeholder slot) and gap −∞.
  """
  length, width = keys.shape
  dtype = queries.dtype
  tiles = mine_tiles(length, count, block_size, row_block, merge_blocks)
  padded_keys = pad_rows(keys, tiles.n_blocks * tiles.block)
  ones = jnp.ones((width, 1), dtype)

  def one_row_block(args):
    q, cols, valid, log_w, dense, index = args
    support = support_stats(q, keys, cols, log_w, valid, ones, ones[0])
    chunk_max, chunk_ids = largest_chunk_maxima(q, padded_keys, cols, valid, index, tiles, length)
    negatives, found = negatives_in_chunks(
      q,
      padded_keys,
      chunk_ids,
      cols,
      valid,
      tiles.chunk,
      tiles.negatives,
      length,
      None if index is None else (index, chunk_max),
    )
    gap = chunk_max[:, 0] - support.minimum[0]
    return Mined(
      negatives, found, support.spread[0], gap if dense is None else jnp.where(dense, -jnp.inf, gap)
    )  # q_i = 0 (frozen): spread 0, nothing outside

  rows, n_row_blocks = tiles.rows, tiles.n_row_blocks
  mined = jax.lax.map(
    one_row_block,
    row_blocks(queries, pattern, n_row_blocks, rows, dtype, jnp.arange(length) if causal else None),
  )
  return jax.tree.map(lambda x: x.reshape(n_row_blocks * rows, *x.shape[2:])[:length], mined)
