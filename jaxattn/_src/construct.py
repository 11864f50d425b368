"""The registry of constructions and their constructors ``method(key, pattern, d, eps1, eps2)``.

Each construction is a factor function in a module of its own (``jl``,
``lstsq``, ``moment_curve``, ``optimize``, and the reference ``onehot``), which depends on the base
layer only (``optimize`` also starts from ``lstsq``). This module lists them in
``METHODS`` and wraps them with the fixed parameters W_Q, W_K
(``base.solution_from_factors``).
"""

from __future__ import annotations

import functools

import jax
from jaxtyping import PRNGKeyArray

from jaxattn._src.base import (
  PARAMS,
  FactorFn,
  Factors,
  Solution,
  cast_pattern,
  check_d,
  check_eps,
  check_outside_mass,
  resolve_dtype,
  solution_from_factors,
  zero_dense_queries,
)
from jaxattn._src.jl import jl_factors
from jaxattn._src.lstsq import lstsq_factors
from jaxattn._src.moment_curve import moment_curve_factors
from jaxattn._src.onehot import onehot_factors
from jaxattn._src.options import keyword_eps
from jaxattn._src.optimize import optimize_factors
from jaxattn._src.pattern import SparsePattern, check_dense


# name -> factor function. Every factor function takes ``dtype=``, the dtype
# its logits will be evaluated in. Methods in NESTED have prefix-consistent
# factors: factors(d) = sqrt(width/d) · (first d columns of factors(width)), so
# one draw at d_max evaluates every d ≤ d_max (``ja.min_d``).
METHODS: dict[str, FactorFn] = {
  "jl": jl_factors,
  "lstsq": lstsq_factors,
  "moment_curve": moment_curve_factors,
  "optimize": optimize_factors,
  "onehot": onehot_factors,
}
NESTED: set[str] = {"jl"}
# Methods whose factor function takes ``max_outside_mass=η`` and then aims at the mass
# criterion too (``base.target_logits``); the others build as for the ratio criterion
# and are judged under the mass criterion all the same.
MASS_AWARE: set[str] = {"jl", "onehot"}
# Methods whose factor function takes ``causal=True`` and then builds for a causal layer
# (docs/causal.md); the others build as for a bidirectional layer, which stays valid in a
# causal one.
CAUSAL_AWARE: set[str] = {"optimize"}


def method_factors(
  method: str,
  key: PRNGKeyArray,
  pattern: SparsePattern,
  d,
  width: int,
  eps1,
  eps2,
  *,
  dtype,
  max_outside_mass=None,
  causal: bool = False,
) -> Factors:
  """``METHODS[method](key, pattern, d, width, eps1, eps2, dtype=dtype)``, passing η =
  ``max_outside_mass`` to methods in ``MASS_AWARE`` and ``causal=True`` to methods in
  ``CAUSAL_AWARE`` (ignored by the others), with q_i = 0 on
  the pattern's dense rows (``zero_dense_queries``: exact for a binary dense row, whatever the
  method; a method sees a dense row as its one placeholder slot, O(N) work)."""
  target = (
    {"max_outside_mass": max_outside_mass}
    if max_outside_mass is not None and method in MASS_AWARE
    else {}
  )
  target.update({"causal": True} if causal and method in CAUSAL_AWARE else {})
  queries, keys = METHODS[method](key, pattern, d, width, eps1, eps2, dtype=dtype, **target)
  return zero_dense_queries(pattern, queries), keys


BUILT_IN = frozenset(METHODS)


def register_method(
  name: str,
  factors: FactorFn,
  *,
  nested: bool = False,
  mass_aware: bool = False,
  causal_aware: bool = False,
) -> None:
  """Adds a construction: ``build(name, ...)``, ``ja.min_d(..., method=name)`` and presets use it.

  ``factors(key, pattern, d, width, eps1, eps2, *, dtype) -> (Q, K)`` with
  Q, K: [L, width], zero beyond column d, jit-able with ``width`` static and
  ``d`` traced (``jaxattn._src.base``). ``nested=True`` declares the factors
  prefix-consistent (above), so that a search reads every d off one draw;
  declare it only if it holds. ``mass_aware=True``: ``factors`` also takes
  ``max_outside_mass=η`` (the mass criterion); ``causal_aware=True``: it also takes
  ``causal=True`` (a causal layer's search passes it).

  Registering the same function under the same name with the same flags again
  does nothing; any other use of a taken name raises ValueError
  (``unregister_method`` frees it).
  """
  if name in METHODS:
    if METHODS[name] is factors and (name in NESTED, name in MASS_AWARE, name in CAUSAL_AWARE) == (
      nested,
      mass_aware,
      causal_aware,
    ):
      return
    raise ValueError(f"method {name!r} is already registered; unregister_method({name!r}) frees it")
  METHODS[name] = factors
  if nested:
    NESTED.add(name)
  if mass_aware:
    MASS_AWARE.add(name)
  if causal_aware:
    CAUSAL_AWARE.add(name)


def unregister_method(name: str) -> None:
  """Removes a construction added by ``register_method``.

  Clears JAX's compilation caches too (``jax.clear_caches``): compiled searches
  and builds are keyed by the method's name, so a function registered later
  under the same name must be traced anew. ValueError for an unknown name or
  a built-in method (``jl``, ``lstsq``, ``moment_curve``, ``optimize``).
  """
  if name in BUILT_IN:
    raise ValueError(f"method {name!r} is built in and cannot be unregistered")
  if name not in METHODS:
    raise ValueError(f"method {name!r} is not registered; registered: {sorted(METHODS)}")
  del METHODS[name]
  NESTED.discard(name)
  MASS_AWARE.discard(name)
  CAUSAL_AWARE.discard(name)
  jax.clear_caches()


@functools.partial(jax.jit, static_argnames=("method", "d", "params", "dtype", "causal"))
def _build(
  method: str, key, pattern, d, eps1, eps2, params, dtype, max_outside_mass, causal=False
) -> Solution:
  evaluate, compute = resolve_dtype(dtype)
  queries, keys = method_factors(
    method,
    key,
    cast_pattern(pattern, compute),
    d,
    d,
    eps1,
    eps2,
    dtype=evaluate,
    max_outside_mass=max_outside_mass,
    causal=causal,
  )
  solution = solution_from_factors(queries, keys, params)
  return jax.tree.map(lambda x: x.astype(evaluate), solution)


@keyword_eps
def build(
  method: str,
  key: PRNGKeyArray,
  pattern: SparsePattern,
  d: int,
  *,
  eps1: float,
  eps2: float,
  params: str = "identity",
  dtype=None,
  max_outside_mass: float | None = None,
  causal: bool = False,
) -> Solution:
  """``Solution`` of the named method (a key of ``METHODS``) at dimension d.

  ``params``: the fixed W_Q, W_K (``solution_from_factors``). ``dtype``: the
  precision of the solution (bfloat16, float32 or float64; default float32).
  ``max_outside_mass``: η of the mass criterion, which methods in
  ``MASS_AWARE`` aim at (the others ignore it); None: the ratio criterion.
  ``causal``: build for a causal layer (methods in ``CAUSAL_AWARE``; the others ignore it).
  """
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
  if params not in PARAMS:
    raise ValueError(f"unknown params {params!r}; choose from {PARAMS}")
  check_d(d)
  check_eps(eps1, eps2)
  check_outside_mass(max_outside_mass)
  check_dense(pattern)
  evaluate, _ = resolve_dtype(dtype)
  return _build(
    method, key, pattern, int(d), eps1, eps2, params, evaluate.name, max_outside_mass, causal
  )


@keyword_eps
def lstsq(
  key: PRNGKeyArray,
  pattern: SparsePattern,
  d: int,
  *,
  eps1: float,
  eps2: float,
  params: str = "identity",
  dtype=None,
  causal: bool = False,
) -> Solution:
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
  return build(
    "lstsq", key, pattern, d, eps1=eps1, eps2=eps2, params=params, dtype=dtype, causal=causal
  )


@keyword_eps
def moment_curve(
  key: PRNGKeyArray,
  pattern: SparsePattern,
  d: int,
  *,
  eps1: float,
  eps2: float,
  params: str = "identity",
  dtype=None,
  causal: bool = False,
) -> Solution:
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
  return build(
    "moment_curve", key, pattern, d, eps1=eps1, eps2=eps2, params=params, dtype=dtype, causal=causal
  )


@keyword_eps
def optimize(
  key: PRNGKeyArray,
  pattern: SparsePattern,
  d: int,
  *,
  eps1: float,
  eps2: float,
  params: str = "identity",
  dtype=None,
  causal: bool = False,
) -> Solution:
  """Gradient descent on X with W_Q, W_K fixed: the empirical lower envelope of d.

  Starts from ``lstsq`` (at shift c_jl,i) and runs optax Adam on both factors
  Q = X W_Q, K = X W_K against a squared hinge on both conditions' violations
  with margin ¼ ln(1 + ε1), over each row's support and its K = 16 largest
  off-support logits, re-mined every 10 steps by one streamed pass over key
  blocks, in one jitted ``lax.while_loop`` that stops as soon as that exact
  streamed check passes (with half the margin) or after 200 steps
  (``jaxattn._src.optimize``; ``optimize_run`` also returns the steps and
  passes, and with ``training=Training(negatives=None)`` trains on the dense loss). Memory
  O(L·(N + K)·d), never O(L²); time O(L²·d) per pass.

  Args and returns: as ``jl``.
  """
  return build(
    "optimize", key, pattern, d, eps1=eps1, eps2=eps2, params=params, dtype=dtype, causal=causal
  )


@keyword_eps
def onehot(
  key: PRNGKeyArray,
  pattern: SparsePattern,
  d: int,
  *,
  eps1: float,
  eps2: float,
  params: str = "identity",
  dtype=None,
  causal: bool = False,
  max_outside_mass: float | None = None,
) -> Solution:
  """The reference that bounds every grid: one-hot keys K = I, queries Q_i = B_i, at d = L.

  B is ``target_logits`` (as in ``jl``), so ℓ = Q Kᵀ = B exactly and every
  pattern verifies at d = L, whatever its row or column counts: the minimal
  d of any pattern is at most L (``jaxattn._src.onehot``). Below L, keys
  j ≥ d are zero and a row whose support reaches past them fails. Memory
  O(L·d): for small L. ``key`` is unused.

  Args and returns: as ``jl``.
  """
  return build(
    "onehot",
    key,
    pattern,
    d,
    eps1=eps1,
    eps2=eps2,
    params=params,
    dtype=dtype,
    causal=causal,
    max_outside_mass=max_outside_mass,
  )


@keyword_eps
def jl(
  key: PRNGKeyArray,
  pattern: SparsePattern,
  d: int,
  *,
  eps1: float,
  eps2: float,
  params: str = "identity",
  dtype=None,
  causal: bool = False,
  max_outside_mass: float | None = None,
) -> Solution:
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
    causal: build for a causal layer (methods in ``CAUSAL_AWARE``: optimize; the others
      build as for a bidirectional layer, which stays valid in a causal one).
    max_outside_mass: η of the mass criterion: the shift c_i is raised so that
      the outside softmax mass stays ≤ η at the same logit error
      (``target_logits``); None (default): the ratio criterion.

  Returns:
    ``Solution(X [L, D], w_q [D, d], w_k [D, d])``, D = 2d (identity) or 4d (random).
  """
  return build(
    "jl",
    key,
    pattern,
    d,
    eps1=eps1,
    eps2=eps2,
    params=params,
    dtype=dtype,
    causal=causal,
    max_outside_mass=max_outside_mass,
  )
