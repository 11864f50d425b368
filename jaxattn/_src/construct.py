"""Inputs X for a fixed attention layer: the Solution type and the paper's ``jl``.

A construction method is a *factor function*

  factors(key, pattern, d, width, eps1, eps2) -> (Q, K),  Q, K: [L, width]

whose product Q Kᵀ is the method's logit matrix at dimension d ≤ width
(columns ≥ d are zero). ``width`` is static and ``d`` may be traced, so a
search over d compiles once per width. The public constructors wrap it with
width = d and the fixed parameters of DESIGN §2:

  X = [Q, K] ∈ R^{L×2d},   W_Q = [I_d; 0],   W_K = [0; I_d],

so that X W_Q = Q and X W_K = K hold exactly and W_Q, W_K depend on d only.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from jaxattn._src.pattern import SparsePattern

HIGHEST = jax.lax.Precision.HIGHEST

Factors = tuple[Float[Array, "L w"], Float[Array, "L w"]]
FactorFn = Callable[..., Factors]


class Solution(NamedTuple):
  """Input X of a fixed attention layer with parameters W_Q, W_K.

  Logits ℓ = (X W_Q)(X W_K)ᵀ and attention P = row-softmax(ℓ). There is no
  1/√d factor: it can be folded into W_Q.
  """

  X: Float[Array, "L D"]
  w_q: Float[Array, "D d"]
  w_k: Float[Array, "D d"]

  @property
  def d(self) -> int:
    """The query/key dimension d."""
    return self.w_q.shape[-1]

  def queries(self) -> Float[Array, "L d"]:
    """X W_Q."""
    return jnp.matmul(self.X, self.w_q, precision=HIGHEST)

  def keys(self) -> Float[Array, "L d"]:
    """X W_K."""
    return jnp.matmul(self.X, self.w_k, precision=HIGHEST)

  def logits(self) -> Float[Array, "L L"]:
    """ℓ = (X W_Q)(X W_K)ᵀ, dense: for small L only."""
    return jnp.matmul(self.queries(), self.keys().T, precision=HIGHEST)

  def attention(self) -> Float[Array, "L L"]:
    """P = row-softmax(ℓ), dense: for small L only."""
    return jax.nn.softmax(self.logits(), axis=-1)


def identity_params(d: int, dtype=jnp.float32) -> tuple[Float[Array, "2d d"], Float[Array, "2d d"]]:
  """The fixed parameters W_Q = [I_d; 0], W_K = [0; I_d] ∈ R^{2d×d}."""
  eye, zero = jnp.eye(d, dtype=dtype), jnp.zeros((d, d), dtype)
  return jnp.concatenate([eye, zero]), jnp.concatenate([zero, eye])


def check_eps(eps1, eps2) -> None:
  """ValueError unless ε1 ∈ (0, ∞) and ε2 ∈ (0, 1); traced values are not checked."""
  for name, value, upper in (("eps1", eps1, float("inf")), ("eps2", eps2, 1.0)):
    if isinstance(value, jax.core.Tracer):
      continue
    value = float(value)
    if not 0.0 < value < upper:
      bound = "(0, inf)" if upper == float("inf") else "(0, 1)"
      raise ValueError(f"{name} must be in {bound}, got {value}")


def check_d(d) -> None:
  """ValueError unless d is a positive integer."""
  if isinstance(d, bool) or not isinstance(d, int) and not (
      hasattr(d, "dtype") and jnp.issubdtype(d.dtype, jnp.integer) and d.ndim == 0):
    raise ValueError(f"d must be a positive integer, got {d!r}")
  if int(d) < 1:
    raise ValueError(f"d must be >= 1, got {d}")


def target_logits(pattern: SparsePattern, eps1, eps2) -> Float[Array, "L N"]:
  """B_{i,S_i} = ln A_ij + c_i: the support logits that the construction aims at.

  With ln A normalised so that each row's largest entry is 0, the shift is

    c_i = ln(1 + ε1) + ln(1/ε2) − ln a_min,i,   a_min,i = min_{j∈S_i} A_ij / max_{j∈S_i} A_ij,

  so every support logit is at least ln(1/ε2) + ln(1 + ε1), clearing the zero
  logits outside the support by the ε2 threshold plus a margin ln(1 + ε1)
  equal to the ε1 budget. Any logit error below ln(1 + ε1)/2 then keeps both
  conditions (docs/theory.md).
  """
  log_w = pattern.log_weights
  row_log_a_min = jnp.min(log_w, axis=-1, keepdims=True)
  shift = jnp.log1p(eps1) - jnp.log(eps2) - row_log_a_min
  return jnp.where(pattern.valid, log_w + shift, 0.0)


def sparse_matmul(pattern: SparsePattern, values: Float[Array, "L N"],
                  dense: Float[Array, "L w"]) -> Float[Array, "L w"]:
  """(M · dense) for the sparse M with M[i, cols[i,k]] = values[i,k] on valid slots: O(L·N·w)."""
  values = jnp.where(pattern.valid, values, 0.0).astype(dense.dtype)
  return jnp.einsum("lk,lkw->lw", values, dense[pattern.cols], precision=HIGHEST)


def prefix_gaussian(key: PRNGKeyArray, length: int, width: int, dtype=jnp.float32) -> Float[Array, "L w"]:
  """Standard normal L×width matrix whose column k is drawn from fold_in(key, k).

  Its first d columns do not depend on ``width``: a draw for d_max contains
  the draw for every d ≤ d_max (nested prefixes).
  """
  column = lambda k: jax.random.normal(jax.random.fold_in(key, k), (length,), dtype)
  return jax.vmap(column, out_axes=1)(jnp.arange(width))


def jl_factors(key: PRNGKeyArray, pattern: SparsePattern, d: Int[Array, ""] | int, width: int,
               eps1, eps2) -> Factors:
  """Factors of the paper's construction at dimension d, padded to ``width``.

  R = G[:, :d]/√d with G = ``prefix_gaussian(key, L, width)``; Q = B R, K = R,
  columns ≥ d zero. Q Kᵀ = B R Rᵀ is an unbiased estimate of B.
  """
  gauss = prefix_gaussian(key, pattern.length, width)
  r = jnp.where(jnp.arange(width) < d, gauss, 0.0) / jnp.sqrt(jnp.asarray(d, gauss.dtype))
  return sparse_matmul(pattern, target_logits(pattern, eps1, eps2), r), r


def solution_from_factors(queries: Float[Array, "L d"], keys: Float[Array, "L d"]) -> Solution:
  """Solution with X = [Q, K] and the identity parameters of DESIGN §2."""
  w_q, w_k = identity_params(queries.shape[-1], queries.dtype)
  return Solution(X=jnp.concatenate([queries, keys], axis=-1), w_q=w_q, w_k=w_k)


# name -> factor function. Methods listed in NESTED have prefix-consistent
# factors: factors(d) = sqrt(width/d) · (first d columns of factors(width)), so
# one draw at d_max evaluates every d ≤ d_max (``ja.min_d``).
METHODS: dict[str, FactorFn] = {"jl": jl_factors}
NESTED = frozenset({"jl"})


@functools.partial(jax.jit, static_argnames=("method", "d"))
def _build(method: str, key, pattern, d, eps1, eps2) -> Solution:
  return solution_from_factors(*METHODS[method](key, pattern, d, d, eps1, eps2))


def build(method: str, key: PRNGKeyArray, pattern: SparsePattern, d: int, eps1: float,
          eps2: float) -> Solution:
  """``Solution`` of the named method (a key of ``METHODS``) at dimension d."""
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
  check_d(d)
  check_eps(eps1, eps2)
  return _build(method, key, pattern, int(d), eps1, eps2)


def jl(key: PRNGKeyArray, pattern: SparsePattern, d: int, eps1: float, eps2: float) -> Solution:
  """The paper's construction (Likhosherstov et al. 2021, Thm. 1): X = [B R, R].

  B_ij = ln A_ij + c_i on the support S_i and 0 elsewhere, with c_i =
  ln(1 + ε1) + ln(1/ε2) − ln a_min,i (``target_logits``): row-softmax(B) meets
  both conditions exactly. R ∈ R^{L×d} is Gaussian with variance 1/d, so
  (B R) Rᵀ is an unbiased Johnson–Lindenstrauss estimate of B, with error per
  logit of order ‖B_i‖ √(log L / d). X1 = B R is formed sparsely in O(L·N·d).

  Fixed parameters W_Q = [I_d; 0], W_K = [0; I_d] depend on d only. Column k
  of R comes from ``fold_in(key, k)``, so solutions for d < d' share the first
  d columns of their draw (up to the 1/√d scale).

  Args:
    key: PRNG key for R.
    pattern: the target pattern A.
    d: query/key dimension (X has 2d columns).
    eps1: ratio tolerance ε1 > 0.
    eps2: zero tolerance ε2 ∈ (0, 1).

  Returns:
    ``Solution(X [L, 2d], w_q [2d, d], w_k [2d, d])``.
  """
  return build("jl", key, pattern, d, eps1, eps2)
