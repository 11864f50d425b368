"""Exact-support least squares: random unit keys, minimum-norm queries.

Keys k_j = g_j/‖g_j‖ for a Gaussian g_j ∈ R^d drawn from the key alone (so
independently of A). Query q_i is the minimum-norm solution of

  K_S q = t_i,   K_S = [k_s]_{s∈S_i} ∈ R^{|S_i|×d},   t_i = u_i + c_i 1,

with u_i = ln A_{i,S_i} normalised so that its largest entry is 0:
q_i = K_Sᵀ (K_S K_Sᵀ)⁻¹ t_i. Support logits equal t_i to float precision, so
spread_i = 0 and only the zeros condition (ε2) is at stake.

Choice of c. With p = K_Sᵀ(K_S K_Sᵀ)⁻¹ 1 (k_s·p = 1 on S_i) and
q_u = K_Sᵀ(K_S K_Sᵀ)⁻¹ u_i, every logit is ℓ_ij = a_j + c b_j with
a_j = k_j·q_u and b_j = k_j·p, and the zeros margin of row i is

  m_i(c) = min_{s∈S_i} ℓ_is − max_{j∉S_i} ℓ_ij − ln(1/ε2)
         = c (1 − b*) − a* − T_i,   T_i = ln(1/ε2) − min_s u_s ≤ ln(1/(ε2 a_min,i)),

where (a*, b*) is the worst j ∉ S_i. m_i is concave and piecewise linear in
c. When S_i is an exposed face of the keys (b_j < 1 for every j ∉ S_i, which
for random unit keys holds once d ≳ 4N ln L) it grows without bound, and the
margin per unit of logit range, m_i(c)/c = (1 − b*) − (a* + T_i)/c, rises to
its supremum 1 − b*. Since T_i < c_jl,i = ln(1 + ε1) + ln(1/(ε2 a_min,i))
(the shift of ``target_logits``), the choice

  c_i = 32 c_jl,i

brings m_i(c)/c within 1/32 (+ a*/c) of that supremum: a larger c buys
almost no margin and grows the logit range (≈ c) linearly. Rounding caps c:
logits of size c carry an error of about u·c·√(N d) (u the unit roundoff of
the dtype the logits are evaluated in), which must stay within the ratio
budget, so c_i is clipped to [c_jl,i, ln(1 + ε1)/(4 u √(N d))]; in bfloat16
the cap is below c_jl,i and c_i = c_jl,i.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from jaxattn._src.base import (
  Factors,
  min_norm_solve,
  prefix_gaussian,
  target_logits,
  zero_dense_queries,
)
from jaxattn._src.pattern import SparsePattern


def unit_keys(
  key: PRNGKeyArray, length: int, d: Int[Array, ""] | int, width: int, dtype=jnp.float32
) -> Float[Array, "L w"]:
  """Rows g_j/‖g_j‖ of the first d columns of ``prefix_gaussian(key, L, width)``; columns ≥ d zero.

  The first d columns do not depend on ``width``.
  """
  gauss = jnp.where(jnp.arange(width) < d, prefix_gaussian(key, length, width, dtype), 0.0)
  return gauss / jnp.linalg.norm(gauss, axis=-1, keepdims=True)


# c_i = 32 c_jl,i: the margin per unit of logit range within 1/32 of its supremum
SHIFT_FACTOR = 32.0


def precision_shift(eps1, nnz: int, d, dtype) -> Float[Array, ""]:
  """c_max = ln(1 + ε1) / (4 u √(N d)): rounding error u·c·√(N d) within ¼ of the ratio budget.

  u = eps(dtype)/2 is the unit roundoff of the dtype the logits are evaluated in.
  """
  roundoff = jnp.finfo(dtype).eps / 2
  return jnp.log1p(eps1) / (4 * roundoff * jnp.sqrt(jnp.asarray(nnz * d, jnp.float32)))


def lstsq_factors(
  key: PRNGKeyArray,
  pattern: SparsePattern,
  d: Int[Array, ""] | int,
  width: int,
  eps1,
  eps2,
  *,
  dtype=None,
  shift_factor: float = SHIFT_FACTOR,
) -> Factors:
  """Factors (Q, K) of ``lstsq`` at dimension d, padded to ``width`` (module docstring).

  ``dtype`` is the dtype the logits will be evaluated in (it caps c); the
  factors are computed in the pattern's float dtype. c_i = ``shift_factor``·c_jl,i
  before clipping.
  """
  queries, keys = lstsq_shifted(key, pattern, d, width, eps1, eps2, (shift_factor,), dtype=dtype)
  return queries[0], keys


def lstsq_shifted(
  key: PRNGKeyArray,
  pattern: SparsePattern,
  d: Int[Array, ""] | int,
  width: int,
  eps1,
  eps2,
  shift_factors: tuple[float, ...],
  *,
  dtype=None,
) -> tuple[Float[Array, "S L w"], Float[Array, "L w"]]:
  """Queries of ``lstsq_factors`` at every shift factor (c_i = factor·c_jl,i, clipped), shared keys.

  q_i^(f) = K_Sᵀ (K_S K_Sᵀ)⁻¹ (u_i + c_i^(f) 1) for each factor f: one
  ``min_norm_solve`` with S right-hand sides, so one factorisation. q_i = 0 on a dense row
  (``zero_dense_queries``; its placeholder slot costs one 1×1 solve, never an L×L Gram).
  """
  compute = pattern.weights.dtype
  keys = unit_keys(key, pattern.length, d, width, compute)
  jl_target = target_logits(pattern, eps1, eps2).astype(compute)
  jl_shift = jl_target - pattern.log_weights.astype(compute)
  evaluate = compute if dtype is None else dtype
  cap = precision_shift(eps1, pattern.nnz, d, evaluate).astype(compute)
  targets = [
    pattern.log_weights.astype(compute) + jnp.maximum(jl_shift, jnp.minimum(factor * jl_shift, cap))
    for factor in shift_factors
  ]
  queries = min_norm_solve(keys[pattern.cols], pattern.valid, jnp.stack(targets, axis=-1))
  return zero_dense_queries(pattern, jnp.moveaxis(queries, 1, 0)), keys
