"""The base layer: the types and helpers every construction, the verifier and the search share.

Nothing here imports another jaxattn module except ``pattern``. A
construction method is a *factor function* (``FactorFn``)

  factors(key, pattern, d, width, eps1, eps2, *, dtype) -> (Q, K),  Q, K: [L, width]

whose product Q Kᵀ is the method's logit matrix at dimension d ≤ width
(columns ≥ d are zero). ``width`` is static and ``d`` may be traced, so a
search over d compiles once per width. ``solution_from_factors`` turns the
factors into the input X of a layer with fixed parameters (docs/definitions.md):

  X = [Q, K] ∈ R^{L×2d},   W_Q = [I_d; 0],   W_K = [0; I_d],

so that X W_Q = Q and X W_K = K hold exactly and W_Q, W_K depend on d only.
These W_Q, W_K are held as ``IdentityBlock``s, never as dense 2d×d matrices:
X W_Q is the column slice X[:, :d], so a solution costs O(L·d) memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from jaxattn._src.pattern import SparsePattern

HIGHEST = jax.lax.Precision.HIGHEST

Factors = tuple[Float[Array, "L w"], Float[Array, "L w"]]
FactorFn = Callable[..., Factors]


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class IdentityBlock:
  """The structured depth×d matrix W with W[start + j, j] = 1 and zeros elsewhere.

  W = [I_d; 0] is ``IdentityBlock(0, 2d, d)`` and W = [0; I_d] is
  ``IdentityBlock(d, 2d, d)``. X @ W = X[..., start:start + d], a column slice
  (no product, no d×d matrix); ``np.asarray(W)`` is the dense matrix (float32
  unless a dtype is asked for; exact in every dtype). It has no array leaves:
  a static pytree node, so it passes through ``jit`` and ``tree.map`` as is.
  """

  start: int
  depth: int
  d: int

  __array_ufunc__ = None  # NumPy's X @ W defers to __rmatmul__ instead of densifying W

  def __post_init__(self):
    if not 0 <= self.start <= self.depth - self.d or self.d < 1:
      raise ValueError(
        f"an identity block of {self.d} columns at row {self.start} does not fit "
        f"in {self.depth} rows"
      )

  @property
  def shape(self) -> tuple[int, int]:
    """(depth, d)."""
    return (self.depth, self.d)

  def __rmatmul__(self, x):
    """X W = X[..., start:start + d]."""
    return x[..., self.start : self.start + self.d]

  def __array__(self, dtype=None, copy=None):
    dense = np.zeros(self.shape, dtype or np.float32)
    dense[self.start + np.arange(self.d), np.arange(self.d)] = 1
    return dense


Params = Float[Array, "D d"] | IdentityBlock


def times_params(x: Float[Array, "L D"], w: Params) -> Float[Array, "L d"]:
  """X W: a column slice for an ``IdentityBlock``, else a matmul at ``HIGHEST`` precision."""
  if isinstance(w, IdentityBlock):
    return x @ w
  return jnp.matmul(x, w, precision=HIGHEST)


class Solution(NamedTuple):
  """Input X of a fixed attention layer with parameters W_Q, W_K.

  Logits ℓ = (X W_Q)(X W_K)ᵀ and attention P = row-softmax(ℓ). There is no
  1/√d factor: it can be folded into W_Q. W_Q, W_K are dense [D, d] arrays
  or ``IdentityBlock``s (``params="identity"``), for which X W is a slice.
  """

  X: Float[Array, "L D"]
  w_q: Params
  w_k: Params

  @property
  def d(self) -> int:
    """The query/key dimension d."""
    return self.w_q.shape[-1]

  def queries(self) -> Float[Array, "L d"]:
    """X W_Q: O(L·d) for identity parameters, O(L·D·d) for dense ones."""
    return times_params(self.X, self.w_q)

  def keys(self) -> Float[Array, "L d"]:
    """X W_K: O(L·d) for identity parameters, O(L·D·d) for dense ones."""
    return times_params(self.X, self.w_k)

  def logits(self) -> Float[Array, "L L"]:
    """ℓ = (X W_Q)(X W_K)ᵀ, dense: for small L only."""
    return jnp.matmul(self.queries(), self.keys().T, precision=HIGHEST)

  def attention(self) -> Float[Array, "L L"]:
    """P = row-softmax(ℓ), dense: for small L only."""
    return jax.nn.softmax(self.logits(), axis=-1)


def identity_params(d: int) -> tuple[IdentityBlock, IdentityBlock]:
  """The fixed parameters W_Q = [I_d; 0], W_K = [0; I_d] ∈ R^{2d×d} as ``IdentityBlock`` objects."""
  return IdentityBlock(0, 2 * d, d), IdentityBlock(d, 2 * d, d)


def check_eps(eps1, eps2) -> None:
  """ValueError unless ε1 ∈ (0, ∞) and ε2 ∈ (0, 1); traced values are not checked."""
  for name, value, upper in (("eps1", eps1, float("inf")), ("eps2", eps2, 1.0)):
    if isinstance(value, jax.core.Tracer):
      continue
    value = float(value)
    if not 0.0 < value < upper:
      bound = "(0, inf)" if upper == float("inf") else "(0, 1)"
      raise ValueError(f"{name} must be in {bound}, got {value}")


def check_outside_mass(max_outside_mass) -> None:
  """ValueError unless η = ``max_outside_mass`` is None (the ratio criterion) or in (0, 1)."""
  if max_outside_mass is None or isinstance(max_outside_mass, jax.core.Tracer):
    return
  if not 0.0 < float(max_outside_mass) < 1.0:
    raise ValueError(f"max_outside_mass must be in (0, 1), got {float(max_outside_mass)}")


def check_d(d) -> None:
  """ValueError unless d is a positive integer."""
  if (
    isinstance(d, bool)
    or not isinstance(d, int)
    and not (hasattr(d, "dtype") and jnp.issubdtype(d.dtype, jnp.integer) and d.ndim == 0)
  ):
    raise ValueError(f"d must be a positive integer, got {d!r}")
  if int(d) < 1:
    raise ValueError(f"d must be >= 1, got {d}")


def target_logits(pattern: SparsePattern, eps1, eps2, max_outside_mass=None) -> Float[Array, "L N"]:
  """B_{i,S_i} = ln A_ij + c_i: the support logits that the construction aims at.

  With ln A normalised so that each row's largest entry is 0, the shift is

    c_i = ln(1 + ε1) + ln(1/ε2) − ln a_min,i,   a_min,i = min_{j∈S_i} A_ij / max_{j∈S_i} A_ij,

  so every support logit is at least ln(1/ε2) + ln(1 + ε1), clearing the zero
  logits outside the support by the ε2 threshold plus a margin ln(1 + ε1)
  equal to the ε1 budget. Any logit error below ln(1 + ε1)/2 then keeps both
  conditions (docs/theory.md).

  With η = ``max_outside_mass`` (the mass criterion, docs/definitions.md §3)
  the shift is raised to

    c_i = max(c_i above, ln(1 + ε1) + ln((L − |S_i|)(1 − η) / (η w_i))),
    w_i = Σ_{j∈S_i} A_ij / max_{j∈S_i} A_ij,

  so that the same logit error keeps Σ_{j∉S_i} P_ij ≤ η too (docs/theory.md §6).
  """
  log_w = pattern.log_weights
  row_log_a_min = jnp.min(log_w, axis=-1, keepdims=True)
  shift = jnp.log1p(eps1) - jnp.log(eps2) - row_log_a_min
  if max_outside_mass is not None:
    outside = pattern.length - jnp.sum(pattern.valid, axis=-1, keepdims=True)
    log_w_sum = jax.nn.logsumexp(jnp.where(pattern.valid, log_w, -jnp.inf), axis=-1, keepdims=True)
    mass_shift = (
      jnp.log1p(eps1)
      + jnp.log(outside.astype(log_w.dtype))
      + jnp.log1p(-max_outside_mass)
      - jnp.log(max_outside_mass)
      - log_w_sum
    )
    shift = jnp.maximum(shift, mass_shift)
  return jnp.where(pattern.valid, log_w + shift, 0.0)


def zero_dense_queries(
  pattern: SparsePattern, queries: Float[Array, "*S L w"]
) -> Float[Array, "*S L w"]:
  """q_i = 0 on the dense rows (``SparsePattern.dense``): every logit of such a row is then 0,
  so its spread max_j ℓ_ij − min_j ℓ_ij is 0 exactly and a binary dense row is met at any d."""
  return queries if pattern.dense is None else jnp.where(pattern.dense[:, None], 0, queries)


def sparse_matmul(
  pattern: SparsePattern, values: Float[Array, "L N"], dense: Float[Array, "L w"]
) -> Float[Array, "L w"]:
  """(M · dense) for the sparse M with M[i, cols[i,k]] = values[i,k] on valid slots: O(L·N·w)."""
  values = jnp.where(pattern.valid, values, 0.0).astype(dense.dtype)
  return jnp.einsum("lk,lkw->lw", values, dense[pattern.cols], precision=HIGHEST)


def prefix_gaussian(
  key: PRNGKeyArray, length: int, width: int, dtype=jnp.float32
) -> Float[Array, "L w"]:
  """Standard normal L×width matrix whose column k is drawn from fold_in(key, k).

  Its first d columns do not depend on ``width``: a draw for d_max contains
  the draw for every d ≤ d_max (nested prefixes).
  """
  column = lambda k: jax.random.normal(jax.random.fold_in(key, k), (length,), dtype)
  return jax.vmap(column, out_axes=1)(jnp.arange(width))


PARAMS = ("identity", "random")
PARAMS_SEED = 0  # the seed of params="random": fixed, so W_Q, W_K never depend on A or the key
DTYPES = {"bfloat16": jnp.bfloat16, "float32": jnp.float32, "float64": jnp.float64}


def random_params(d: int, dtype=jnp.float32) -> tuple[Float[Array, "D d"], Float[Array, "D d"]]:
  """Fixed dense Gaussian W_Q, W_K ∈ R^{D×d}, D = 4d, entries N(0, 1/D), from ``PARAMS_SEED``.

  [W_Q, W_K] ∈ R^{D×2d} has full column rank 2d (D ≥ 2d) with condition number
  about (1 + √½)/(1 − √½) ≈ 6, so X can be solved for any Q, K.
  """
  depth = 4 * d
  w = jax.random.normal(jax.random.PRNGKey(PARAMS_SEED), (depth, 2 * d), dtype) / jnp.sqrt(
    jnp.asarray(depth, dtype)
  )
  return w[:, :d], w[:, d:]


def solution_from_factors(
  queries: Float[Array, "L d"], keys: Float[Array, "L d"], params: str = "identity"
) -> Solution:
  """Solution whose fixed W_Q, W_K reproduce the factors: X W_Q = Q, X W_K = K.

  ``params="identity"``: X = [Q, K], W_Q = [I_d; 0], W_K = [0; I_d] (docs/definitions.md),
  held as ``IdentityBlock``s: memory O(L·d), no d×d matrix.
  ``params="random"``: W_Q, W_K = ``random_params(d)`` and X = [Q, K] W⁺, the
  least-squares solution of X [W_Q, W_K] = [Q, K], computed from W = U R
  (thin QR) as X = [Q, K] R⁻¹ Uᵀ; since W has full column rank the equations
  hold to float precision. Q and K are first rescaled to Q·2^k, K·2^−k with
  ‖Q·2^k‖ ≈ ‖K·2^−k‖ (exact in binary, Q Kᵀ unchanged), so that rounding X,
  which mixes both, costs each factor the same relative precision.
  """
  if params == "identity":
    block_q, block_k = identity_params(queries.shape[-1])
    return Solution(X=jnp.concatenate([queries, keys], axis=-1), w_q=block_q, w_k=block_k)
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
  """(evaluation dtype, compute dtype) for ``dtype`` in ``DTYPES`` (name or dtype); None: float32.

  Constructions compute in float64 for float64 and in float32 otherwise, then
  round to the evaluation dtype. The default is float32 whatever the global
  ``jax_enable_x64`` flag says, so float32 results do not depend on it.
  ValueError for other dtypes, and for float64 unless ``jax_enable_x64`` is set.
  """
  if dtype is None:
    dtype = "float32"
  names = {jnp.dtype(v).name: jnp.dtype(v) for v in DTYPES.values()}
  name = dtype if isinstance(dtype, str) else getattr(jnp.dtype(dtype), "name", None)
  if name not in names:
    raise ValueError(f"unknown dtype {dtype!r}; choose from {sorted(DTYPES)}")
  if name == "float64" and not jax.config.read("jax_enable_x64"):
    raise ValueError(
      "dtype float64 needs 64-bit JAX: jax.config.update('jax_enable_x64', True) "
      "or JAX_ENABLE_X64=1"
    )
  evaluate = names[name]
  return evaluate, jnp.dtype(jnp.float64 if name == "float64" else jnp.float32)


def cast_pattern(pattern: SparsePattern, dtype) -> SparsePattern:
  """The pattern with its weights in ``dtype``."""
  return pattern._replace(weights=pattern.weights.astype(dtype))


def check_d_grid(d_grid: Sequence[int]) -> tuple[int, ...]:
  """``d_grid`` as a tuple of ints; ValueError unless non-empty, positive, strictly increasing."""
  try:
    grid = tuple(int(d) for d in d_grid)
  except (TypeError, ValueError):
    raise ValueError(f"d_grid must be integers, got {d_grid!r}") from None
  if not grid or grid[0] < 1 or list(grid) != sorted(set(grid)):
    raise ValueError(f"d_grid must be increasing positive integers, got {list(grid)}")
  return grid


def dtype_context(dtype: str):
  """Context in which work in ``dtype`` runs: 64-bit JAX for "float64" only, for its duration."""
  return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def min_norm_solve(
  rows: Float[Array, "L N w"], valid: Bool[Array, "L N"], rhs: Float[Array, "L N *k"]
) -> Float[Array, "L *k w"]:
  """Minimum-norm x_i with rows[i, s]·x_i = rhs[i, s] for every valid slot s, batched over i.

  x_i = M_iᵀ (M_i M_iᵀ + τ I)⁻¹ rhs_i over the valid rows M_i (invalid slots are
  replaced by the identity in the N×N Gram matrix). The ridge τ = N·eps(dtype)
  keeps a (near-)singular Gram matrix finite: such a row then fails
  verification instead of producing NaN. Trailing axes k of ``rhs`` are
  right-hand sides sharing one factorisation: one LAPACK call, whatever k
  (independent batched LAPACK calls running at once can deadlock XLA's CPU
  thread pool in jaxlib 0.10: each blocks a pool thread waiting for batch
  chunks queued on the same pool).
  """
  rows = jnp.where(valid[..., None], rows, 0.0)
  gram = jnp.einsum("lsw,ltw->lst", rows, rows, precision=HIGHEST)
  length, nnz = valid.shape
  pad = jnp.eye(nnz, dtype=rows.dtype) * ~valid[..., None]
  ridge = nnz * jnp.finfo(rows.dtype).eps * jnp.eye(nnz, dtype=rows.dtype)
  sides = jnp.where(valid.reshape(valid.shape + (1,) * (rhs.ndim - 2)), rhs, 0.0)
  coef = jnp.linalg.solve(gram + pad + ridge, sides.reshape(length, nnz, -1))
  solution = jnp.einsum("lsk,lsw->lkw", coef, rows, precision=HIGHEST)
  return solution.reshape(rhs.shape[:1] + rhs.shape[2:] + rows.shape[-1:])
