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
               eps1, eps2, *, dtype=None) -> Factors:
  """Factors of the paper's construction at dimension d, padded to ``width``.

  R = G[:, :d]/√d with G = ``prefix_gaussian(key, L, width)``; Q = B R, K = R,
  columns ≥ d zero. Q Kᵀ = B R Rᵀ is an unbiased estimate of B. Computed in
  the pattern's float dtype; the evaluation ``dtype`` does not change it.
  """
  del dtype
  gauss = prefix_gaussian(key, pattern.length, width, pattern.weights.dtype)
  r = jnp.where(jnp.arange(width) < d, gauss, 0.0) / jnp.sqrt(jnp.asarray(d, gauss.dtype))
  return sparse_matmul(pattern, target_logits(pattern, eps1, eps2), r), r


PARAMS = ("identity", "random")
PARAMS_SEED = 0  # the seed of params="random": fixed, so W_Q, W_K never depend on A or the key
DTYPES = {"bfloat16": jnp.bfloat16, "float32": jnp.float32, "float64": jnp.float64}


def random_params(d: int, dtype=jnp.float32) -> tuple[Float[Array, "4d d"], Float[Array, "4d d"]]:
  """Fixed dense Gaussian W_Q, W_K ∈ R^{D×d}, D = 4d, entries N(0, 1/D), from ``PARAMS_SEED``.

  [W_Q, W_K] ∈ R^{D×2d} has full column rank 2d (D ≥ 2d) with condition number
  about (1 + √½)/(1 − √½) ≈ 6, so X can be solved for any Q, K.
  """
  depth = 4 * d
  w = jax.random.normal(jax.random.PRNGKey(PARAMS_SEED), (depth, 2 * d), dtype) / jnp.sqrt(
      jnp.asarray(depth, dtype))
  return w[:, :d], w[:, d:]


def solution_from_factors(queries: Float[Array, "L d"], keys: Float[Array, "L d"],
                          params: str = "identity") -> Solution:
  """Solution whose fixed W_Q, W_K reproduce the factors: X W_Q = Q, X W_K = K.

  ``params="identity"``: X = [Q, K], W_Q = [I_d; 0], W_K = [0; I_d] (DESIGN §2).
  ``params="random"``: W_Q, W_K = ``random_params(d)`` and X = [Q, K] W⁺, the
  least-squares solution of X [W_Q, W_K] = [Q, K], computed from W = U R
  (thin QR) as X = [Q, K] R⁻¹ Uᵀ; since W has full column rank the equations
  hold to float precision. Q and K are first rescaled to Q·2^k, K·2^−k with
  ‖Q·2^k‖ ≈ ‖K·2^−k‖ (exact in binary, Q Kᵀ unchanged), so that rounding X,
  which mixes both, costs each factor the same relative precision.
  """
  if params == "identity":
    w_q, w_k = identity_params(queries.shape[-1], queries.dtype)
    return Solution(X=jnp.concatenate([queries, keys], axis=-1), w_q=w_q, w_k=w_k)
  if params == "random":
    w_q, w_k = random_params(queries.shape[-1], queries.dtype)
    q_norm, k_norm = jnp.linalg.norm(queries), jnp.linalg.norm(keys)
    both = (q_norm > 0) & (k_norm > 0)
    ratio = jnp.where(both, k_norm, 1.0) / jnp.where(both, q_norm, 1.0)
    scale = jnp.exp2(jnp.round(jnp.log2(ratio) / 2)).astype(queries.dtype)
    queries, keys = queries * scale, keys / scale
    u, r = jnp.linalg.qr(jnp.concatenate([w_q, w_k], axis=-1))
    factors = jnp.concatenate([queries, keys], axis=-1)
    x = jax.scipy.linalg.solve_triangular(r, factors.T, trans="T", lower=False).T
    return Solution(X=jnp.matmul(x, u.T, precision=HIGHEST), w_q=w_q, w_k=w_k)
  raise ValueError(f"unknown params {params!r}; choose from {PARAMS}")


def resolve_dtype(dtype) -> tuple[jnp.dtype, jnp.dtype]:
  """(evaluation dtype, compute dtype) for ``dtype`` in ``DTYPES`` (a name or a dtype); None: float32.

  Constructions compute in float64 for float64 and in float32 otherwise, then
  round to the evaluation dtype. ValueError for other dtypes, and for float64
  unless ``jax_enable_x64`` is set.
  """
  if dtype is None:
    dtype = jnp.asarray(0.0).dtype
  names = {jnp.dtype(v).name: jnp.dtype(v) for v in DTYPES.values()}
  name = dtype if isinstance(dtype, str) else getattr(jnp.dtype(dtype), "name", None)
  if name not in names:
    raise ValueError(f"unknown dtype {dtype!r}; choose from {sorted(DTYPES)}")
  if name == "float64" and not jax.config.jax_enable_x64:
    raise ValueError("dtype float64 needs 64-bit JAX: jax.config.update('jax_enable_x64', True) "
                     "or JAX_ENABLE_X64=1")
  evaluate = names[name]
  return evaluate, jnp.dtype(jnp.float64 if name == "float64" else jnp.float32)


def cast_pattern(pattern: SparsePattern, dtype) -> SparsePattern:
  """The pattern with its weights in ``dtype``."""
  return pattern._replace(weights=pattern.weights.astype(dtype))


# name -> factor function. Methods listed in NESTED have prefix-consistent
# factors: factors(d) = sqrt(width/d) · (first d columns of factors(width)), so
# one draw at d_max evaluates every d ≤ d_max (``ja.min_d``). Every factor
# function takes ``dtype=``, the dtype its logits will be evaluated in.
METHODS: dict[str, FactorFn] = {"jl": jl_factors}
NESTED = frozenset({"jl"})


@functools.partial(jax.jit, static_argnames=("method", "d", "params", "dtype"))
def _build(method: str, key, pattern, d, eps1, eps2, params, dtype) -> Solution:
  evaluate, compute = resolve_dtype(dtype)
  queries, keys = METHODS[method](key, cast_pattern(pattern, compute), d, d, eps1, eps2,
                                  dtype=evaluate)
  solution = solution_from_factors(queries, keys, params)
  return jax.tree.map(lambda x: x.astype(evaluate), solution)


def build(method: str, key: PRNGKeyArray, pattern: SparsePattern, d: int, eps1: float,
          eps2: float, *, params: str = "identity", dtype=None) -> Solution:
  """``Solution`` of the named method (a key of ``METHODS``) at dimension d.

  ``params``: the fixed W_Q, W_K (``solution_from_factors``). ``dtype``: the
  precision of the solution (bfloat16, float32 or float64; default float32).
  """
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
  if params not in PARAMS:
    raise ValueError(f"unknown params {params!r}; choose from {PARAMS}")
  check_d(d)
  check_eps(eps1, eps2)
  evaluate, _ = resolve_dtype(dtype)
  return _build(method, key, pattern, int(d), eps1, eps2, params, evaluate.name)


def lstsq(key: PRNGKeyArray, pattern: SparsePattern, d: int, eps1: float, eps2: float, *,
          params: str = "identity", dtype=None) -> Solution:
  """Exact-support least squares: random unit keys, minimum-norm queries.

  K = X W_K has unit rows g_j/‖g_j‖, g_j Gaussian, drawn from ``key`` alone
  (independent of A). Query i is the minimum-norm solution of the |S_i|×d
  system K_S q = ln A_{i,S_i} + c_i (batched N×N solves), so support ratios
  hold to float precision (spread = 0) and only the zeros condition is at
  stake. It holds once S_i is an exposed face of the keys and c_i is large
  enough: c_i = 32 c_jl,i, clipped to [c_jl,i, ln(1+ε1)/(4u√(N d))] for unit
  roundoff u of ``dtype`` (derivation: ``jaxattn._src.lstsq``, docs/beyond.md).
  Expected d_min ≈ 4 N ln L.

  Args and returns: as ``jl``.
  """
  return build("lstsq", key, pattern, d, eps1, eps2, params=params, dtype=dtype)


def moment_curve(key: PRNGKeyArray, pattern: SparsePattern, d: int, eps1: float, eps2: float, *,
                 params: str = "identity", dtype=None) -> Solution:
  """Deterministic keys on the trigonometric moment curve: d = 2N for every L.

  k_j = (cos mθ_j, sin mθ_j)_{m=1..N}, θ_j = 2πj/L; query i is the
  trigonometric polynomial λ_i g_i + h_i with g_i = −∏_{s∈S_i}(1 − cos(θ − θ_s))
  (maximal exactly on S_i) and h_i the minimum-norm interpolant of ln A_{i,S_i};
  λ_i = (max h_i + c_jl,i)/min_{j∉S_i}|g_i(θ_j)| (``jaxattn._src.moment_curve``).
  Needs d ≥ 2N (columns beyond 2N are zero; for d < 2N the solution is zero
  and fails verification). Logits grow like L^{2N}, so the largest L that
  verifies depends on ``dtype``. ``key`` is unused.

  Args and returns: as ``jl``.
  """
  return build("moment_curve", key, pattern, d, eps1, eps2, params=params, dtype=dtype)


def optimize(key: PRNGKeyArray, pattern: SparsePattern, d: int, eps1: float, eps2: float, *,
             params: str = "identity", dtype=None) -> Solution:
  """Gradient descent on X with W_Q, W_K fixed: the empirical lower envelope of d.

  Starts from ``lstsq`` (at shift c_jl,i) and runs optax Adam on both factors
  Q = X W_Q, K = X W_K against a squared hinge on both conditions' violations
  with margin ¼ ln(1 + ε1), over the dense L×L logits, in one jitted
  ``lax.while_loop`` that stops as soon as the conditions hold (with half that
  margin) or after 200 steps (``jaxattn._src.optimize``; ``optimize_run``
  also returns the step count). Dense: O(L²·N) memory, for moderate L.

  Args and returns: as ``jl``.
  """
  return build("optimize", key, pattern, d, eps1, eps2, params=params, dtype=dtype)


def jl(key: PRNGKeyArray, pattern: SparsePattern, d: int, eps1: float, eps2: float, *,
       params: str = "identity", dtype=None) -> Solution:
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
    params: fixed W_Q, W_K: "identity" (above) or "random" (``solution_from_factors``).
    dtype: precision of the solution: "bfloat16", "float32" (default) or "float64".

  Returns:
    ``Solution(X [L, D], w_q [D, d], w_k [D, d])``, D = 2d (identity) or 4d (random).
  """
  return build("jl", key, pattern, d, eps1, eps2, params=params, dtype=dtype)


# Methods beyond the paper live in their own modules, which import the helpers above.
from jaxattn._src import lstsq as _lstsq  # noqa: E402  (import cycle: registers methods)
from jaxattn._src import moment_curve as _moment_curve  # noqa: E402
from jaxattn._src import optimize as _optimize  # noqa: E402

METHODS.update(lstsq=_lstsq.lstsq_factors, moment_curve=_moment_curve.moment_curve_factors,
               optimize=_optimize.optimize_factors)
