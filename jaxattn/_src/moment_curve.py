"""Keys on the trigonometric moment curve: d = 2N for every L, at the price of logit range.

Keys k_j = (cos mθ_j, sin mθ_j)_{m=1..N}, θ_j = 2πj/L, are deterministic (the
PRNG key is unused). A query q is a trigonometric polynomial of degree ≤ N
without constant term, ℓ_ij = q_i·k_j = f_i(θ_j); constants do not matter,
since softmax and both conditions are invariant to a shift of a row. Row i uses

  f_i = λ_i g_i + h_i,   g_i(θ) = −∏_{s∈S_i} (1 − cos(θ − θ_s)),

g_i ≤ 0 with zeros exactly at S_i (degree |S_i| ≤ N), and h_i the
minimum-norm trigonometric polynomial of degree ≤ N that interpolates
h_i(θ_s) = ln A_is (its constant term dropped). Support logits are then
ln A_is up to one constant (spread 0), and every other logit is at most
max h_i − λ_i m_i, with m_i = min_{j∉S_i} |g_i(θ_j)|. So

  λ_i = (H_i + c_jl,i) / m_i,   H_i = h_i,0 + Σ_m √(α_m² + β_m²) ≥ max_θ h_i(θ),

(α_m, β_m the coefficients of h_i) puts every outside logit ln(1/ε2) +
ln(1 + ε1) below the smallest support logit (c_jl,i: ``target_logits``).
m_i is computed exactly in O(N²) per row: on every arc between consecutive
zeros log|g_i| = Σ_s log(2 sin²((θ − θ_s)/2)) is concave, so its minimum over
grid points lies next to a zero, at j = s ± 1. Every N-subset of the curve
is a face of a neighbourly (cyclic) polytope, which is why d = 2N suffices for
every L in exact arithmetic; in floating point m_i ≥ (2 sin²(π/L))^N means
logits up to about L^{2N}, and rounding decides the largest L.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from jaxattn._src.base import Factors, min_norm_solve, target_logits
from jaxattn._src.pattern import SparsePattern


def angles(index: Int[Array, "..."], length: int, dtype) -> Float[Array, "..."]:
  """θ = 2π (index mod L) / L, reduced exactly in integers before rounding."""
  return 2 * jnp.pi * (jnp.mod(index, length).astype(dtype) / length)


def curve_keys(length: int, nnz: int, dtype) -> Float[Array, "L w"]:
  """k_j = (cos mθ_j, sin mθ_j)_{m=1..N} ∈ R^w: w = 2N, θ_j = 2πj/L, mθ_j reduced mod 2π exactly."""
  theta = angles(jnp.arange(length)[:, None] * jnp.arange(1, nnz + 1)[None, :], length, dtype)
  return jnp.concatenate([jnp.cos(theta), jnp.sin(theta)], axis=-1)


def vanishing_coefficients(theta: Float[Array, "L N"], valid) -> Float[Array, "L 2*N"]:
  """Coefficients of g(θ) = −∏_{valid s}(1 − cos(θ − θ_s)) on (cos mθ, sin mθ)_{m=1..N}.

  Each factor is the Laurent polynomial 1 − ½e^{−iθ_s} z − ½e^{iθ_s} z⁻¹ in
  z = e^{iθ}; the product has coefficients c_{−N..N} with c_{−k} = conj(c_k),
  so g = −c_0 − Σ_{m≥1} (2 Re c_m cos mθ − 2 Im c_m sin mθ); the constant −c_0 is dropped.
  """
  nnz = theta.shape[-1]
  coef = jnp.zeros(theta.shape[:-1] + (2 * nnz + 1,), jnp.result_type(theta, jnp.complex64))
  coef = coef.at[..., nnz].set(1.0)
  for s in range(nnz):
    rot = jnp.exp(-1j * theta[..., s : s + 1])
    up = jnp.pad(coef[..., :-1], [(0, 0)] * (coef.ndim - 1) + [(1, 0)])  # z · c
    down = jnp.pad(coef[..., 1:], [(0, 0)] * (coef.ndim - 1) + [(0, 1)])  # z⁻¹ · c
    factor = coef - 0.5 * rot * up - 0.5 * jnp.conj(rot) * down
    coef = jnp.where(valid[..., s : s + 1], factor, coef)
  positive = coef[..., nnz + 1 :]
  return -jnp.concatenate([2 * positive.real, -2 * positive.imag], axis=-1)


def vanishing_depth(pattern: SparsePattern, dtype) -> Float[Array, " L"]:
  """m_i = min_{j∉S_i} |g_i(θ_j)| = min over j ∈ {s ± 1 : s ∈ S_i} \\ S_i of ∏_s 2 sin²(π(j − s)/L).

  Exact by concavity of log|g_i| between consecutive zeros (module
  docstring); +inf when every column is in S_i. O(N²) per row.
  """
  length, cols, valid = pattern.length, pattern.cols, pattern.valid
  near = jnp.concatenate([cols - 1, cols + 1], axis=-1) % length  # [L, 2N]
  in_support = jnp.any((near[:, :, None] == cols[:, None, :]) & valid[:, None, :], axis=-1)
  half = angles(near[:, :, None] - cols[:, None, :], length, dtype) / 2
  factor = jnp.where(valid[:, None, :], 2 * jnp.sin(half) ** 2, 1.0)
  return jnp.min(jnp.where(in_support, jnp.inf, jnp.prod(factor, axis=-1)), axis=-1)


def moment_curve_factors(
  key: PRNGKeyArray,
  pattern: SparsePattern,
  d: Int[Array, ""] | int,
  width: int,
  eps1,
  eps2,
  *,
  dtype=None,
) -> Factors:
  """Factors of ``moment_curve`` (module docstring): 2N nonzero columns when d ≥ 2N.

  For d < 2N the factors are zero (every logit 0: verification fails, no
  NaN). Deterministic: ``key`` and ``dtype`` are unused; computed in the
  pattern's float dtype.
  """
  del key, dtype
  length, nnz = pattern.length, pattern.nnz
  compute = pattern.weights.dtype
  if width < 2 * nnz:
    zeros = jnp.zeros((length, width), compute)
    return zeros, zeros
  valid, cols = pattern.valid, pattern.cols
  keys = curve_keys(length, nnz, compute)
  theta = angles(cols, length, compute)
  g_coef = vanishing_coefficients(theta, valid)
  # h: minimum-norm interpolant on (1, cos mθ, sin mθ) of ln A on S_i.
  basis = jnp.concatenate([jnp.ones(cols.shape + (1,), compute), keys[cols]], axis=-1)
  h_coef = min_norm_solve(basis, valid, pattern.log_weights.astype(compute))
  h_max = h_coef[:, 0] + jnp.sum(jnp.hypot(h_coef[:, 1 : nnz + 1], h_coef[:, nnz + 1 :]), axis=-1)
  depth = vanishing_depth(pattern, compute)
  shift = jnp.max(target_logits(pattern, eps1, eps2) - pattern.log_weights, axis=-1)  # c_jl,i
  scale = jnp.where(jnp.isfinite(depth), (h_max + shift.astype(compute)) / depth, 0.0)
  queries = scale[:, None] * g_coef + h_coef[:, 1:]
  used = d >= 2 * nnz
  pad = [(0, 0), (0, width - 2 * nnz)]
  return (jnp.pad(jnp.where(used, queries, 0.0), pad), jnp.pad(jnp.where(used, keys, 0.0), pad))
