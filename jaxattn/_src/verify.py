"""Streaming verification of the (ε1, ε2)-approximation (DESIGN §2).

For logits ℓ = Q Kᵀ and a pattern with supports S_i, row i is judged by

  spread_i = max_{j∈S_i}(ℓ_ij − ln A_ij) − min_{j∈S_i}(ℓ_ij − ln A_ij)   (ratios, ε1)
  gap_i    = max_{j∉S_i} ℓ_ij − min_{j∈S_i} ℓ_ij                         (zeros, ε2)

and P = row-softmax(ℓ) (ε1, ε2)-approximates A iff spread_i ≤ ln(1+ε1) and
gap_i ≤ ln ε2 for every i. Neither needs a normalised P: support logits are
gathered (O(L·N·d)), and the maximum outside the support is an online
reduction over key blocks, so memory is O(row_block·block + L·(N + d)),
never O(L²).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from jaxattn._src.construct import HIGHEST, Solution, check_eps, resolve_dtype
from jaxattn._src.pattern import SparsePattern

DEFAULT_BLOCK = 512
ROW_BLOCK = 2048


class RowStats(NamedTuple):
  """Per-row figures at G nested dimensions (leading axis G)."""

  spread: Float[Array, "G L"]
  gap: Float[Array, "G L"]
  outside_mass: Float[Array, "G L"]   # Σ_{j∉S_i} P_ij; zeros unless full=True
  max_abs_logit: Float[Array, "G L"]  # max_j |ℓ_ij|; zeros unless full=True


class Report(NamedTuple):
  """Verdict and figures of ``verify`` (DESIGN §2).

  ok ⇔ ratio_error ≤ ε1 and leak ≤ ε2 ⇔ all(row_ok).
  """

  ok: Bool[Array, ""]
  ratio_error: Float[Array, ""]       # exp(max_i spread_i) − 1
  leak: Float[Array, ""]              # exp(max_i gap_i)
  row_ok: Bool[Array, "L"]
  spread: Float[Array, "L"]
  gap: Float[Array, "L"]
  outside_mass_max: Float[Array, ""]  # max_i Σ_{j∉S_i} P_ij
  outside_mass_mean: Float[Array, ""]
  max_abs_logit: Float[Array, ""]     # max_ij |ℓ_ij|: the logit range the solution needs
  eps1: Float[Array, ""]
  eps2: Float[Array, ""]


def _pad_rows(x: Array, rows: int, value=0) -> Array:
  pad = [(0, rows - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
  return jnp.pad(x, pad, constant_values=value)


def row_stats(queries: Float[Array, "L w"], keys: Float[Array, "L w"], pattern: SparsePattern,
              splits: tuple[int, ...], scales: Float[Array, "G"], *, block_size: int | None = None,
              full: bool = True) -> RowStats:
  """spread_i, gap_i (and, if ``full``, outside mass and |ℓ| max) of the logits

    ℓ^(g) = scales[g] · Q[:, :splits[g]] K[:, :splits[g]]ᵀ,   g = 0..G−1,

  for every row, in one pass over key blocks of ``block_size`` and row
  blocks of ``ROW_BLOCK``. With ``splits = (w,)`` and ``scales = [1]`` these
  are the figures of ℓ = Q Kᵀ; a grid of splits evaluates nested prefixes.
  """
  length, width = keys.shape
  if splits[-1] > width or list(splits) != sorted(set(splits)) or splits[0] < 1:
    raise ValueError(f"splits must increase within [1, {width}], got {splits}")
  block = min(block_size or DEFAULT_BLOCK, length)
  row_block = min(max(ROW_BLOCK, block), length)
  n_blocks, n_row_blocks = math.ceil(length / block), math.ceil(length / row_block)
  key_blocks = _pad_rows(keys, n_blocks * block).reshape(n_blocks, block, width)
  bounds = list(zip((0,) + splits[:-1], splits))
  scales = jnp.asarray(scales, queries.dtype)[:, None, None]
  log_w = pattern.log_weights.astype(queries.dtype)

  def cumulative(dot_segment) -> Array:  # [G, ...] nested-prefix logits
    return scales * jnp.cumsum(jnp.stack([dot_segment(lo, hi) for lo, hi in bounds]), axis=0)

  def one_row_block(args):
    q, cols, valid, lw = args
    k_support = keys[cols]  # [R, N, w]
    support = cumulative(lambda lo, hi: jnp.einsum(
        "rw,rnw->rn", q[:, lo:hi], k_support[:, :, lo:hi], precision=HIGHEST))
    neg_inf = jnp.asarray(-jnp.inf, q.dtype)
    shifted = support - lw
    spread = (jnp.max(jnp.where(valid, shifted, -jnp.inf), -1)
              - jnp.min(jnp.where(valid, shifted, jnp.inf), -1))
    support_min = jnp.min(jnp.where(valid, support, jnp.inf), -1)

    def key_block(carry, inputs):
      out_max, out_sum, abs_max = carry
      k_block, start = inputs
      col_ids = start + jnp.arange(block)
      logits = cumulative(lambda lo, hi: jnp.matmul(
          q[:, lo:hi], k_block[:, lo:hi].T, precision=HIGHEST))  # [G, R, B]
      in_support = jnp.any(valid[:, :, None] & (cols[:, :, None] == col_ids), axis=1)
      in_range = col_ids < length
      outside = jnp.where(in_support | ~in_range, neg_inf, logits)
      new_max = jnp.maximum(out_max, jnp.max(outside, -1))
      if full:
        ref = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
        out_sum = (out_sum * jnp.exp(out_max - ref)
                   + jnp.sum(jnp.exp(outside - ref[..., None]), -1))
        abs_max = jnp.maximum(abs_max, jnp.max(jnp.where(in_range, jnp.abs(logits), 0.0), -1))
      return (new_max, out_sum, abs_max), None

    shape = (len(splits), q.shape[0])
    init = (jnp.full(shape, -jnp.inf, q.dtype), jnp.zeros(shape, q.dtype),
            jnp.zeros(shape, q.dtype))
    starts = jnp.arange(n_blocks) * block
    (out_max, out_sum, abs_max), _ = jax.lax.scan(key_block, init, (key_blocks, starts))
    gap = out_max - support_min
    if full:
      support_lse = jax.nn.logsumexp(jnp.where(valid, support, -jnp.inf), -1)
      ref = jnp.where(jnp.isfinite(out_max), out_max, 0.0)
      out_lse = jnp.log(out_sum) + ref  # −inf where nothing lies outside the support
      outside_mass = jnp.exp(out_lse - jnp.logaddexp(out_lse, support_lse))
      abs_max = jnp.maximum(abs_max, jnp.max(jnp.where(valid, jnp.abs(support), 0.0), -1))
    else:
      outside_mass = jnp.zeros_like(gap)
    return RowStats(spread, gap, outside_mass, abs_max)

  rows = n_row_blocks * row_block
  blocked = lambda x: _pad_rows(x, rows).reshape(n_row_blocks, row_block, *x.shape[1:])
  valid = _pad_rows(pattern.valid, rows, True)  # padded rows: a support of one slot
  stats = jax.lax.map(one_row_block, (blocked(queries), blocked(pattern.cols),
                                      valid.reshape(n_row_blocks, row_block, -1), blocked(log_w)))
  # [n_row_blocks, G, R] -> [G, L]
  return jax.tree.map(lambda s: jnp.moveaxis(s, 0, 1).reshape(len(splits), rows)[:, :length], stats)


def row_ok(stats: RowStats, eps1, eps2) -> Bool[Array, "... L"]:
  """expm1(spread_i) ≤ ε1 and exp(gap_i) ≤ ε2, row by row."""
  return (jnp.expm1(stats.spread) <= eps1) & (jnp.exp(stats.gap) <= eps2)


@functools.partial(jax.jit, static_argnames=("block_size",))
def _verify(solution: Solution, pattern: SparsePattern, eps1, eps2, block_size) -> Report:
  queries, keys = solution.queries(), solution.keys()
  ones = jnp.ones((1,), queries.dtype)
  stats = jax.tree.map(lambda s: s[0], row_stats(
      queries, keys, pattern, (queries.shape[-1],), ones, block_size=block_size, full=True))
  ratio_error = jnp.expm1(jnp.max(stats.spread))
  leak = jnp.exp(jnp.max(stats.gap))
  eps1, eps2 = jnp.asarray(eps1, queries.dtype), jnp.asarray(eps2, queries.dtype)
  return Report(
      ok=(ratio_error <= eps1) & (leak <= eps2), ratio_error=ratio_error, leak=leak,
      row_ok=row_ok(stats, eps1, eps2), spread=stats.spread, gap=stats.gap,
      outside_mass_max=jnp.max(stats.outside_mass), outside_mass_mean=jnp.mean(stats.outside_mass),
      max_abs_logit=jnp.max(stats.max_abs_logit), eps1=eps1, eps2=eps2)


def verify(solution: Solution, pattern: SparsePattern, eps1: float, eps2: float,
           block_size: int | None = None, *, dtype=None) -> Report:
  """Checks whether row-softmax((X W_Q)(X W_K)ᵀ) (ε1, ε2)-approximates A.

  ratio_error = exp(max_i spread_i) − 1 and leak = exp(max_i gap_i), with

    spread_i = max_{j∈S_i}(ℓ_ij − ln A_ij) − min_{j∈S_i}(ℓ_ij − ln A_ij),
    gap_i    = max_{j∉S_i} ℓ_ij − min_{j∈S_i} ℓ_ij,

  so ok ⇔ ratio_error ≤ ε1 and leak ≤ ε2. Streams over key blocks of
  ``block_size`` (default 512): memory O(L·(N + d) + block·rows), never
  an L×L matrix. Matmuls run at ``Precision.HIGHEST`` in X's dtype.

  Args:
    solution: X, W_Q, W_K.
    pattern: the target A (``pattern.length`` must equal X's rows).
    eps1: ratio tolerance ε1 > 0.
    eps2: zero tolerance ε2 ∈ (0, 1).
    block_size: keys per streamed block.
    dtype: if given ("bfloat16", "float32", "float64"), X, W_Q, W_K are
      rounded to it and every step runs in it; default: X's dtype.

  Returns:
    ``Report``; its figures are JAX scalars (``float(rep.leak)``).
  """
  if dtype is not None:
    evaluate, _ = resolve_dtype(dtype)
    solution = jax.tree.map(lambda x: jnp.asarray(x).astype(evaluate), solution)
  check_eps(eps1, eps2)
  length = solution.X.shape[0]
  if pattern.length != length:
    raise ValueError(f"pattern has length {pattern.length} but X has {length} rows")
  if solution.w_q.shape != solution.w_k.shape or solution.w_q.shape[0] != solution.X.shape[1]:
    raise ValueError(f"need w_q, w_k of shape [{solution.X.shape[1]}, d], got "
                     f"{solution.w_q.shape} and {solution.w_k.shape}")
  if block_size is not None and block_size < 1:
    raise ValueError(f"block_size must be >= 1, got {block_size}")
  return _verify(solution, pattern, eps1, eps2, block_size)
