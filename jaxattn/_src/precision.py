"""Bits per entry a solution needs: queries and keys in b-bit fixed point (docs/definitions.md §7).

Q = X W_Q and K = X W_K are each rounded to the grid of step
max|entry|·2^(1−b) (one step per matrix), and the rounded logits
Q_b K_bᵀ are verified as ``verify`` does. Verification is not monotone in
b near the margins (a coarse rounding can happen to help), so the bits a
solution needs are the b from which every finer rounding verifies, found
by scanning b downward.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from jaxattn._src.base import Solution, check_eps, check_outside_mass
from jaxattn._src.options import Compute, check_compute, keyword_eps, legacy_options
from jaxattn._src.pattern import SparsePattern
from jaxattn._src.verify import verify_factors


def round_fixed_point(x: Float[Array, "..."], bits: Int[Array, ""] | int) -> Float[Array, "..."]:
  """x in b-bit fixed point: step · round(x / step), step = max|x| · 2^(1−b), in x's dtype.

  Entries become integers r·step with |r| ≤ 2^(b−1) (round half to even); the
  step is max|x| scaled by an exact power of two. An all-zero x stays zero.
  """
  step = jnp.ldexp(jnp.max(jnp.abs(x)), 1 - jnp.asarray(bits, jnp.int32))
  step = jnp.where(step > 0, step, jnp.ones_like(step))
  return jnp.round(x / step) * step


_rounded = jax.jit(lambda x, bits: round_fixed_point(x, bits))


def _verifies_rounded(
  queries, keys, pattern, eps1, eps2, max_outside_mass, bits, block_size, row_block
) -> bool:
  """``verify_factors`` of Q_b, K_b: certified for the rounded factors (ratio criterion)."""
  return bool(
    verify_factors(
      _rounded(queries, bits),
      _rounded(keys, bits),
      pattern,
      eps1,
      eps2,
      max_outside_mass=max_outside_mass,
      block_size=block_size,
      row_block=row_block,
    ).ok
  )


@legacy_options
@keyword_eps
def precision_bits(
  solution: Solution,
  pattern: SparsePattern,
  *,
  eps1: float,
  eps2: float,
  max_outside_mass: float | None = None,
  max_bits: int | None = None,
  compute: Compute = Compute(),
) -> int | None:
  """The smallest b such that Q = X W_Q and K = X W_K, each rounded to b′-bit fixed point,
  verify at every b′ ∈ [b, ``max_bits``]:

    b* = min{b : ok(b′) for all b ≤ b′ ≤ max_bits},   ok(b) = ``verify(Q_b K_bᵀ).ok``,

  Q_b = ``round_fixed_point(Q, b)`` (step max|Q|·2^(1−b)), K_b likewise. ok
  need not be monotone in b (a coarse grid can round the logits the right
  way by chance), so the scan runs downward from ``max_bits`` and stops at
  the first failing b: exact, with no monotonicity assumption, in
  ``max_bits`` − b* + 2 verifications (fewer when b* = 1). The information
  the rounded inputs carry per token is then 2d·b* bits (D·b* for the
  identity parameters, D = 2d the width of X).

  Args:
    solution: X, W_Q, W_K; rounding and verification run in X's dtype.
    pattern: the target A.
    eps1, eps2: the (ε1, ε2) tolerances.
    max_outside_mass: η of the mass criterion (None: the ratio criterion).
    max_bits: top of the scan (default: the significand bits of X's dtype,
      24 for float32, 53 for float64, 8 for bfloat16).
    compute: ``ja.Compute``; its ``block_size`` and ``row_block`` tile the streamed
      verification (the rounding and verification run in X's dtype).

  Returns:
    b*, or None when the solution does not verify at b = ``max_bits``.
  """
  check_eps(eps1, eps2)
  check_outside_mass(max_outside_mass)
  check_compute(compute)
  block_size, row_block = compute.block_size, compute.row_block
  if pattern.length != solution.X.shape[0]:
    raise ValueError(f"pattern has length {pattern.length} but X has {solution.X.shape[0]} rows")
  queries, keys = solution.queries(), solution.keys()
  max_bits = int(jnp.finfo(queries.dtype).nmant) + 1 if max_bits is None else max_bits
  if max_bits < 1:
    raise ValueError(f"max_bits must be >= 1, got {max_bits}")
  bits = max_bits
  while bits >= 1 and bool(
    _verifies_rounded(
      queries, keys, pattern, eps1, eps2, max_outside_mass, bits, block_size, row_block
    )
  ):
    bits -= 1
  return None if bits == max_bits else bits + 1
