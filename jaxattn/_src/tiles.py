"""The tiling of every streamed pass over ℓ = Q Kᵀ (``verify``, the search, ``optimize``'s mining).

A pass cuts the L query rows into row blocks of R rows (split over the
devices of a mesh) and, inside each, scans key blocks of B keys: one
[R, B] tile of logits at a time, never an L×L matrix. This module holds
what every such pass shares: the tile sizes per backend, the row blocks
and their devices, the product, the tile's support mask and the gathered
support logits.

Tile sizes. ``tiles.json`` beside this file maps a backend to its default
(rows, keys); it is plain data so that the JAX-free resource planner
(``jaxattn_bench.resources``) reads the same numbers without importing
JAX. The CPU values were measured on the 2-core development CPU; the GPU
and TPU values copy the CPU's until ``bench/device_check.sh`` has swept
the tiles there.
"""

from __future__ import annotations

import json
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, Bool, Float, Int

from jaxattn._src.base import HIGHEST
from jaxattn._src.pattern import SparsePattern

SHARD_AXIS = "devices"
TILES: dict[str, tuple[int, int]] = {
  backend: tuple(tile)
  for backend, tile in json.loads(
    (pathlib.Path(__file__).parent / "tiles.json").read_text()
  ).items()
}


def default_tiles(backend: str | None = None) -> tuple[int, int]:
  """(row_block, block_size): rows and keys per tile for ``backend`` (default: JAX's default
  backend) from ``TILES``; a backend not listed gets the CPU's."""
  return TILES.get(backend or jax.default_backend(), TILES["cpu"])


def local_mesh() -> Mesh:
  """A 1-D mesh over this process's devices (axis ``SHARD_AXIS``), over which work is split."""
  return Mesh(np.array(jax.local_devices()), (SHARD_AXIS,))


def shard_leading(fn, mesh: Mesh | None, *args):
  """``fn(*args)`` with every arg and output split along its leading axis over ``mesh``.

  Each device runs ``fn`` on its contiguous slice; the leading axis must be a
  multiple of the mesh size. With no mesh, or one device, it is ``fn(*args)``.
  A device computes exactly what one device would for the same slice, so
  results do not depend on the number of devices.
  """
  if mesh is None or mesh.size == 1:
    return fn(*args)
  spec = PartitionSpec(SHARD_AXIS)
  return jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)(*args)


def pad_rows(x: Array, rows: int, value=0) -> Array:
  """``x`` padded with ``value`` along its leading axis to ``rows`` rows."""
  pad = [(0, rows - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
  return jnp.pad(x, pad, constant_values=value)


def row_blocks(
  queries: Float[Array, "L w"],
  pattern: SparsePattern,
  n_row_blocks: int,
  row_block: int,
  dtype,
  row_index: Int[Array, " L"] | None = None,
) -> tuple[Array, Array, Array, Array, Array | None, Array | None]:
  """(queries, support columns, valid slots, ln A in ``dtype``, dense flags or None, the rows'
  indices i or None), each padded to ``n_row_blocks · row_block`` rows and reshaped to
  [n_row_blocks, row_block, ...].

  Padded rows get a support of one valid slot (column 0, weight 1), are not
  dense and (with ``row_index``) see every key, so their figures are finite;
  callers drop them (``unblock``).
  """
  rows = n_row_blocks * row_block
  blocked = lambda x, value=0: pad_rows(x, rows, value).reshape(
    n_row_blocks, row_block, *x.shape[1:]
  )
  dense = None if pattern.dense is None else blocked(pattern.dense, False)
  index = None if row_index is None else blocked(row_index, pattern.length - 1)
  return (
    blocked(queries),
    blocked(pattern.cols),
    blocked(pattern.valid, True),
    blocked(pattern.log_weights.astype(dtype)),
    dense,
    index,
  )


def dot(a: Array, b: Array, out_dtype) -> Array:
  """a bᵀ in ``out_dtype`` (products of narrower operands accumulate in ``out_dtype``)."""
  return jax.lax.dot_general(
    a,
    b,
    (((a.ndim - 1,), (b.ndim - 1,)), ((), ())),
    precision=HIGHEST,
    preferred_element_type=out_dtype,
  )


def padding_mask(start: Int[Array, ""], block: int, length: int, dtype) -> Float[Array, " B"]:
  """−∞ at the columns start + j ≥ L of the key block (padding), else 0."""
  return jnp.where(
    start + jnp.arange(block) >= length, jnp.asarray(-jnp.inf, dtype), jnp.asarray(0, dtype)
  )


def causal_mask(
  start: Int[Array, ""], block: int, row_index: Int[Array, " R"], dtype
) -> Float[Array, "R B"]:
  """−∞ at the columns start + j > i of row i (the future keys a causal layer masks), else 0;
  padding (start + j ≥ L > i) included."""
  future = start + jnp.arange(block)[None, :] > row_index[:, None]
  return jnp.where(future, jnp.asarray(-jnp.inf, dtype), jnp.asarray(0, dtype))


def tile_mask(
  cols: Int[Array, "R N"],
  valid: Bool[Array, "R N"],
  start: Int[Array, ""],
  block: int,
  length: int,
  dtype,
  dense: Bool[Array, " R"] | None = None,
  row_index: Int[Array, " R"] | None = None,
) -> Float[Array, "R B"]:
  """C_0 of the key block [start, start + block): where every running sum starts (and, with
  ``full``, which columns are excluded).

    C_0,ij = −∞ if column start + j ∈ S_i or start + j ≥ L (padding), else 0,

  except on a ``dense`` row, where it is −∞ at padding only: its streamed
  maximum runs over every key. With ``row_index`` (a causal layer) the
  columns start + j > i are −∞ too, on dense rows as well (whose support is
  then every key j ≤ i). The support columns come from scattering each
  row's N slots into the tile (R·N writes; slots outside the block are
  dropped), so no L×L mask exists.
  """
  neg_inf = jnp.asarray(-jnp.inf, dtype)
  slots = jnp.where(valid & (cols >= start), cols - start, block)  # [R, N]; block: not here
  mask = jnp.zeros((cols.shape[0], block), dtype)
  if row_index is not None:
    mask = mask + causal_mask(start, block, row_index, dtype)
  elif length % block:  # the last block runs past L
    mask = mask + padding_mask(start, block, length, dtype)
  mask = mask.at[jnp.arange(cols.shape[0])[:, None], slots].set(neg_inf, mode="drop")
  if dense is None:
    return mask
  visible = (
    padding_mask(start, block, length, dtype)
    if row_index is None
    else causal_mask(start, block, row_index, dtype)
  )
  return jnp.where(dense[:, None], visible, mask)


# Slots per support gather: a row block's gathered keys are [R, chunk, w], not [R, N, w].
SUPPORT_CHUNK = 64


class SupportStats(NamedTuple):
  """Per level g and row i, from the support logits ℓ^(g)_is of the valid slots s."""

  spread: Float[Array, "G R"]  # max_s(ℓ_is − ln A_is) − min_s(ℓ_is − ln A_is)
  minimum: Float[Array, "G R"]  # min_s ℓ_is
  log_sum: Float[Array, "G R"]  # ln Σ_s e^{ℓ_is} (with ``full``; else −∞)
  abs_max: Float[Array, "G R"]  # max_s |ℓ_is| (with ``full``; else 0)


def _slot_extrema(
  q: Float[Array, "R w"],
  keys: Float[Array, "L w"],
  cols: Int[Array, "R C"],
  log_w: Float[Array, "R C"],
  valid: Bool[Array, "R C"],
  prefix: Float[Array, "w G"],
  scales: Float[Array, " G"],
  full: bool,
) -> tuple[Float[Array, "G R"], ...]:
  """max and min of ℓ − ln A, min ℓ, ln Σ e^ℓ and max |ℓ| over the valid slots of C columns."""
  support_terms = q[:, None, :] * keys[cols].astype(q.dtype)  # [R, C, w]
  support = scales[:, None, None] * jnp.moveaxis(
    jax.lax.dot_general(
      support_terms,
      prefix,
      (((2,), (0,)), ((), ())),
      precision=HIGHEST,
      preferred_element_type=q.dtype,
    ),
    -1,
    0,
  )  # [G, R, C]
  shifted = support - log_w
  high = jnp.max(jnp.where(valid, shifted, -jnp.inf), -1)
  low = jnp.min(jnp.where(valid, shifted, jnp.inf), -1)
  minimum = jnp.min(jnp.where(valid, support, jnp.inf), -1)
  if not full:
    return high, low, minimum, jnp.full_like(high, -jnp.inf), jnp.zeros_like(high)
  return (
    high,
    low,
    minimum,
    jax.nn.logsumexp(jnp.where(valid, support, -jnp.inf), -1),
    jnp.max(jnp.where(valid, jnp.abs(support), 0.0), -1),
  )


def support_stats(
  q: Float[Array, "R w"],
  keys: Float[Array, "L w"],
  cols: Int[Array, "R N"],
  log_w: Float[Array, "R N"],
  valid: Bool[Array, "R N"],
  prefix: Float[Array, "w G"],
  scales: Float[Array, " G"],
  *,
  full: bool = False,
  chunk: int = SUPPORT_CHUNK,
) -> SupportStats:
  """``SupportStats`` of every level from the support logits

    ℓ^(g)_is = scales[g] · Σ_c q_ic k_{cols_is, c} prefix_cg,   prefix_cg = [c < d_g],

  all levels in one contraction of the products q_ic k_{cols_is, c} with the
  prefix indicator (O(R·N·w·G), never a tile). With N > ``chunk`` the slots
  are gathered ``chunk`` at a time and reduced online (memory O(R·chunk·w));
  max and min are exact in any grouping, so spread and minimum are the same
  bits either way (ln Σ e^ℓ may differ by a rounding).
  """
  extrema = lambda c, lw, v: _slot_extrema(q, keys, c, lw, v, prefix, scales, full)
  n = cols.shape[-1]
  if n <= chunk:
    high, low, minimum, log_sum, abs_max = extrema(cols, log_w, valid)
  else:
    pad = ((0, 0), (0, -n % chunk))  # padding slots: column 0, invalid
    split = lambda x: jnp.moveaxis(jnp.pad(x, pad).reshape(x.shape[0], -1, chunk), 1, 0)
    joins = (jnp.maximum, jnp.minimum, jnp.minimum, jnp.logaddexp, jnp.maximum)
    step = lambda carry, part: (
      tuple(join(c, x) for join, c, x in zip(joins, carry, extrema(*part))),
      None,
    )
    shape = (prefix.shape[-1], q.shape[0])
    init = tuple(
      jnp.full(shape, value, q.dtype) for value in (-jnp.inf, jnp.inf, jnp.inf, -jnp.inf, 0.0)
    )
    carry, _ = jax.lax.scan(step, init, tuple(map(split, (cols, log_w, valid))))
    high, low, minimum, log_sum, abs_max = carry
  return SupportStats(high - low, minimum, log_sum, abs_max)
