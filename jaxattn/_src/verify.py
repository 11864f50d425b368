"""Verification of the (ε1, ε2)-approximation, certified (docs/definitions.md, docs/certified.md).

``verify`` judges the figures of the streamed pass (``stream.row_stats``:
spread_i and gap_i of every row, the outside mass under the mass criterion)
against the thresholds ln(1 + ε1) and ln ε2, widened by a sound bound on
every rounding; rows the bound cannot decide are re-done with float32
products and then decided in exact arithmetic on the host (``settle_rows``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from jaxattn._src import certify, exact
from jaxattn._src.base import (
  IdentityBlock,
  Solution,
  cast_pattern,
  check_eps,
  check_outside_mass,
  resolve_dtype,
)
from jaxattn._src.options import Compute, check_compute, keyword_eps, legacy_options
from jaxattn._src.pattern import SparsePattern, check_causal, check_dense
from jaxattn._src.stream import RowStats, row_stats
from jaxattn._src.tiles import local_mesh


class Report(NamedTuple):
  """Verdict and figures of ``verify`` (docs/definitions.md).

  ok ⇔ ratio_error ≤ ε1 and leak ≤ ε2 (and, under the mass criterion,
  outside_mass_max ≤ η) ⇔ all(row_ok).
  """

  ok: Bool[Array, ""]
  ratio_error: Float[Array, ""]  # exp(max_i spread_i) − 1
  leak: Float[Array, ""]  # exp(max_i gap_i)
  row_ok: Bool[Array, " L"]
  spread: Float[Array, " L"]
  gap: Float[Array, " L"]
  outside_mass_max: Float[Array, ""]  # max_i Σ_{j∉S_i} P_ij
  outside_mass_mean: Float[Array, ""]
  max_abs_logit: Float[Array, ""]  # max_ij |ℓ_ij|: the logit range the solution needs
  eps1: Float[Array, ""]
  eps2: Float[Array, ""]
  max_outside_mass: Float[Array, ""]  # η of the mass criterion; +inf: the ratio criterion
  certified: Bool[Array, ""]  # ok and row_ok are those of exact arithmetic (``certify``)
  settled_by_bound: Int[Array, ""]  # rows the first pass's bound decided
  settled_by_float32: Int[Array, ""]  # rows the float32 re-check decided (bfloat16 products)
  settled_on_host: Int[Array, ""]  # rows decided in exact arithmetic on the host


def check_block_size(block_size: int | None, name: str = "block_size") -> None:
  """ValueError unless the tile size ``block_size`` (named ``name``) is None (default) or ≥ 1."""
  if block_size is not None and block_size < 1:
    raise ValueError(f"{name} must be >= 1, got {block_size}")


def row_ok(
  stats: RowStats, limits: certify.Thresholds, max_outside_mass=None
) -> Bool[Array, "... L"]:
  """The verdict of the computed figures, uncertified: spread_i ≤ ln(1 + ε1) and gap_i ≤ ln ε2
  (``limits``, compared in log space); with η = ``max_outside_mass`` (the mass criterion; ``stats``
  from ``full=True``) also Σ_{j∉S_i} P_ij ≤ η."""
  ok = (stats.spread <= limits.ratio_above) & (stats.gap <= limits.gap_above)
  return ok if max_outside_mass is None else ok & (stats.outside_mass <= max_outside_mass)


def row_states(stats: RowStats, limits: certify.Thresholds) -> Int[Array, "... L"]:
  """Certainly ok, certainly failing or undecided per row (``certify.row_states``)."""
  return certify.row_states(stats.spread, stats.gap, stats.spread_bound, stats.gap_bound, limits)


@functools.partial(
  jax.jit, static_argnames=("block_size", "row_block", "matmul_dtype", "mesh", "causal")
)
def _first_pass(
  queries,
  keys,
  pattern: SparsePattern,
  eps1,
  eps2,
  max_outside_mass,
  limits: certify.Thresholds,
  block_size,
  row_block,
  matmul_dtype,
  mesh,
  causal,
) -> tuple[Report, Int[Array, " L"]]:
  """The streamed pass of ``verify``: its figures, the uncertified verdict, and the row states."""
  # ln A in float32, or in float64 for a float64 X (weights are stored in float32)
  pattern = cast_pattern(pattern, jnp.promote_types(queries.dtype, jnp.float32))
  ones = jnp.ones((1,), queries.dtype)
  stats = jax.tree.map(
    lambda s: s[0],
    row_stats(
      queries,
      keys,
      pattern,
      (queries.shape[-1],),
      ones,
      block_size=block_size,
      row_block=row_block,
      full=True,
      matmul_dtype=matmul_dtype,
      mesh=mesh,
      causal=causal,
    ),
  )
  eta = jnp.asarray(jnp.inf if max_outside_mass is None else max_outside_mass, queries.dtype)
  ok_rows = row_ok(stats, limits, eta)
  zero = jnp.zeros((), jnp.int32)
  report = Report(
    ok=jnp.all(ok_rows),
    ratio_error=jnp.expm1(jnp.max(stats.spread)),
    leak=jnp.exp(jnp.max(stats.gap)),
    row_ok=ok_rows,
    spread=stats.spread,
    gap=stats.gap,
    outside_mass_max=jnp.max(stats.outside_mass),
    outside_mass_mean=jnp.mean(stats.outside_mass),
    max_abs_logit=jnp.max(stats.max_abs_logit),
    eps1=jnp.asarray(eps1, queries.dtype),
    eps2=jnp.asarray(eps2, queries.dtype),
    max_outside_mass=eta,
    certified=jnp.asarray(False),
    settled_by_bound=zero,
    settled_by_float32=zero,
    settled_on_host=zero,
  )
  return report, row_states(stats, limits)


@functools.partial(jax.jit, static_argnames=("splits", "block_size", "row_block", "causal"))
def _recheck(
  queries, keys, pattern, rows, scales, limits, splits, block_size, row_block, causal=False
):
  """Row states of ``rows`` at every level, the products in the evaluation dtype (float32)."""
  pattern = cast_pattern(pattern, jnp.promote_types(queries.dtype, jnp.float32))
  return listed_row_states(
    queries,
    keys,
    pattern,
    rows,
    scales,
    limits,
    splits,
    block_size=block_size,
    row_block=row_block,
    causal=causal,
  )


def listed_row_states(
  queries: Float[Array, "L w"],
  keys: Float[Array, "L w"],
  pattern: SparsePattern,
  rows: Int[Array, " M"],
  scales: Float[Array, " G"],
  limits: certify.Thresholds,
  splits: tuple[int, ...],
  *,
  block_size: int | None = None,
  row_block: int | None = None,
  causal: bool = False,
) -> Int[Array, "G M"]:
  """``row_states`` of the listed ``rows`` at every level (prefixes ``splits``, logits scaled by
  ``scales``), streamed without the outside mass; the products in Q's dtype."""
  stats = row_stats(
    queries,
    keys,
    pattern,
    splits,
    scales,
    block_size=block_size,
    row_block=row_block,
    full=False,
    rows=rows,
    causal=causal,
  )
  return row_states(stats, limits)


def host_rows_ok(
  queries: Float[Array, "L w"],
  keys: Float[Array, "L w"],
  pattern: SparsePattern,
  rows: np.ndarray,
  eps1: float,
  eps2: float,
  *,
  split: int,
  scale: tuple[int, int],
  causal: bool,
) -> np.ndarray:
  """Whether each of ``rows`` of ℓ = s Q[:, :split] K[:, :split]ᵀ (s = scale[0]/scale[1]) meets
  both conditions in exact arithmetic (``exact.rows_ok_exact`` on the host): bool [len(rows)]."""
  return exact.rows_ok_exact(
    np.asarray(queries)[:, :split],
    np.asarray(keys)[:, :split],
    np.asarray(pattern.cols),
    np.asarray(pattern.weights),
    np.asarray(pattern.valid),
    rows,
    eps1,
    eps2,
    exact.Fraction(*scale),
    dense=pattern.dense_host,
    causal=causal,
  )


def settle_rows(
  queries: Float[Array, "L w"],
  keys: Float[Array, "L w"],
  pattern: SparsePattern,
  states: Int[Array, " L"] | None,
  eps1: float,
  eps2: float,
  *,
  split: int,
  scale: tuple[int, int] = (1, 1),
  recheck: bool = False,
  block_size: int | None = None,
  row_block: int | None = None,
  causal: bool = False,
) -> tuple[np.ndarray, tuple[int, int, int]]:
  """The exact verdict of every row of ℓ = s Q[:, :split] K[:, :split]ᵀ (s = scale[0]/scale[1])
  from its first-pass ``states``, and how many rows each stage settled.

  Stage 1 (the pass that made ``states``; None: a pass with float32 products
  here) settled the rows not UNDECIDED;
  with ``recheck`` (the pass ran in a narrower matmul format) the undecided
  rows are re-done with float32 products (stage 2); the rest are decided in
  exact arithmetic on the host (stage 3, ``host_rows_ok``); ``causal``: in a causal
  layer's semantics at every stage.

  Returns:
    (row_ok bool [L], (settled by the bound, by the float32 re-check, on the host)).
  """
  limits = certify.thresholds(eps1, eps2, queries.dtype)
  scales = jnp.asarray([scale[0] / scale[1]], queries.dtype)
  if states is None:
    states = _recheck(
      queries,
      keys,
      pattern,
      jnp.arange(pattern.length),
      scales,
      limits,
      (split,),
      block_size,
      row_block,
      causal,
    )[0]
  settled = np.array(states)
  by_bound = int(np.sum(settled != certify.UNDECIDED))
  undecided = np.flatnonzero(settled == certify.UNDECIDED)
  if recheck and undecided.size:
    padded = np.resize(undecided, 1 << int(np.ceil(np.log2(undecided.size))))  # few compiles
    settled[undecided] = np.asarray(
      _recheck(
        queries,
        keys,
        pattern,
        jnp.asarray(padded),
        scales,
        limits,
        (split,),
        block_size,
        row_block,
        causal,
      )
    )[0][: undecided.size]
  by_float32 = int(np.sum(settled != certify.UNDECIDED)) - by_bound
  host = np.flatnonzero(settled == certify.UNDECIDED)
  row_ok = settled == certify.CERTAIN_OK
  if host.size:
    row_ok[host] = host_rows_ok(
      queries, keys, pattern, host, eps1, eps2, split=split, scale=scale, causal=causal
    )
  return row_ok, (by_bound, by_float32, int(host.size))


def verify_factors(
  queries: Float[Array, "L d"],
  keys: Float[Array, "L d"],
  pattern: SparsePattern,
  eps1: float,
  eps2: float,
  *,
  max_outside_mass: float | None = None,
  block_size: int | None = None,
  row_block: int | None = None,
  matmul: str = "float32",
  matmul_dtype=None,
  certified: bool = True,
  causal: bool = False,
) -> Report:
  """``verify``'s report for the logits ℓ = Q Kᵀ of given factors, certified when it can be
  (``certify.certifiable``, ``certified``, no ``matmul_dtype`` narrowing the factors, and
  concrete inputs: under ``jit`` the host stage cannot run, and the verdict is the computed one);
  in a causal layer's semantics with ``causal``."""
  dtype = queries.dtype
  narrowed = matmul_dtype is not None and jnp.dtype(matmul_dtype) != dtype
  first_format = certify.MATMUL_FORMATS[matmul] if matmul_dtype is None else matmul_dtype
  report, states = _first_pass(
    queries,
    keys,
    pattern,
    eps1,
    eps2,
    max_outside_mass,
    certify.thresholds(eps1, eps2, dtype),
    block_size,
    row_block,
    first_format,
    local_mesh(),
    causal,
  )
  traced = any(
    isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((queries, keys, pattern, eps1, eps2))
  )
  if traced or not (certified and not narrowed and certify.certifiable(dtype, max_outside_mass)):
    return report
  recheck = first_format is not None and jnp.finfo(first_format).bits < jnp.finfo(dtype).bits
  row_ok, settled = settle_rows(
    queries,
    keys,
    pattern,
    states,
    eps1,
    eps2,
    split=queries.shape[-1],
    recheck=recheck,
    block_size=block_size,
    row_block=row_block,
    causal=causal,
  )
  return report._replace(
    ok=jnp.asarray(row_ok.all()),
    row_ok=jnp.asarray(row_ok),
    certified=jnp.asarray(True),
    **dict(
      zip(("settled_by_bound", "settled_by_float32", "settled_on_host"), map(jnp.asarray, settled))
    ),
  )


_factors = jax.jit(lambda solution: (solution.queries(), solution.keys()))


def check_matmul(matmul: str) -> str:
  """ValueError unless ``matmul`` names a format of certified verification (``MATMUL_FORMATS``)."""
  if matmul not in certify.MATMUL_FORMATS:
    raise ValueError(f"matmul must be one of {sorted(certify.MATMUL_FORMATS)}, got {matmul!r}")
  return matmul


@legacy_options
@keyword_eps
def verify(
  solution: Solution,
  pattern: SparsePattern,
  *,
  eps1: float,
  eps2: float,
  max_outside_mass: float | None = None,
  causal: bool = False,
  dtype=None,
  layer_dtype=None,
  matmul: str = "float32",
  compute: Compute = Compute(),
) -> Report:
  """Checks whether row-softmax((X W_Q)(X W_K)ᵀ) (ε1, ε2)-approximates A, exactly.

  ratio_error = exp(max_i spread_i) − 1 and leak = exp(max_i gap_i), with

    spread_i = max_{j∈S_i}(ℓ_ij − ln A_ij) − min_{j∈S_i}(ℓ_ij − ln A_ij),
    gap_i    = max_{j∉S_i} ℓ_ij − min_{j∈S_i} ℓ_ij,

  so ok ⇔ ratio_error ≤ ε1 and leak ≤ ε2. Under the mass criterion
  (``max_outside_mass`` = η) also max_i Σ_{j∉S_i} P_ij ≤ η
  (docs/definitions.md §3). Streams over key blocks of ``block_size`` in
  row blocks of ``row_block`` (``default_tiles``), split over this process's
  devices: memory O(L·(N + d) + block·rows), never an L×L matrix.

  Certified verdicts (docs/certified.md). The figures carry a sound bound
  on every rounding; rows it cannot decide are re-done with float32
  products (after a bfloat16 pass) and then decided in exact arithmetic on
  the host, so ``ok`` and ``row_ok`` are those of exact arithmetic on the
  stored Q = X W_Q, K = X W_K and A, and ``certified`` is True. It is False
  (the computed verdict) for dense parameters (X W is itself rounded),
  ``dtype="bfloat16"``, a narrower ``matmul_dtype``, the mass criterion,
  traced inputs (no host stage inside ``jit``), and unvalidated backends.

  Args:
    solution: X, W_Q, W_K.
    pattern: the target A (``pattern.length`` must equal X's rows).
    eps1, eps2: ratio tolerance ε1 > 0 and zero tolerance ε2 ∈ (0, 1).
    max_outside_mass: η ∈ (0, 1) of the mass criterion; None: the ratio criterion.
    causal: a causal layer (docs/definitions.md §3): softmax over the keys j ≤ i, zeros
      j ≤ i, j ∉ S_i; the pattern must be causal (else ValueError naming row and column).
    dtype: if given ("bfloat16", "float32", "float64"), X, W_Q, W_K are
      rounded to it and every step runs in it; default: X's dtype.
    layer_dtype: e.g. ``jnp.bfloat16``: a finite-precision layer whose
      Q = X W_Q and K = X W_K are rounded to it, the logits accumulated in
      X's dtype; the verdict is the computed one for the rounded Q, K
      (uncertified). None: X's dtype. (Before 1.0: ``matmul_dtype``.)
    matmul: the products' format of certified verification, "float32"
      (default) or "bfloat16" (Q, K rounded to bfloat16, accumulated in
      float32, the bound widened accordingly); the verdict is exact either way.
    compute: ``ja.Compute``: its ``block_size`` and ``row_block`` are the keys and query rows
      per tile (default ``default_tiles()``).

  Returns:
    ``Report``; its figures are JAX scalars (``float(rep.leak)``).
  """
  if dtype is not None:
    evaluate, _ = resolve_dtype(dtype)
    solution = jax.tree.map(lambda x: jnp.asarray(x).astype(evaluate), solution)
  _check_verify(
    solution, pattern, eps1, eps2, max_outside_mass, matmul, compute, causal, layer_dtype
  )
  layer_dtype = None if layer_dtype is None else jnp.dtype(layer_dtype)
  exact_params = all(isinstance(w, IdentityBlock) for w in (solution.w_q, solution.w_k))
  queries, keys = _factors(solution)
  return verify_factors(
    queries,
    keys,
    pattern,
    eps1,
    eps2,
    max_outside_mass=max_outside_mass,
    block_size=compute.block_size,
    row_block=compute.row_block,
    matmul=matmul,
    matmul_dtype=layer_dtype,
    certified=exact_params,
    causal=causal,
  )


def _check_verify(
  solution: Solution,
  pattern: SparsePattern,
  eps1,
  eps2,
  max_outside_mass,
  matmul,
  compute: Compute,
  causal,
  layer_dtype,
) -> None:
  """``verify``'s argument checks: ValueError naming the first bad one."""
  check_compute(compute)
  if layer_dtype is not None and not jnp.issubdtype(jnp.dtype(layer_dtype), jnp.floating):
    raise ValueError(f"layer_dtype must be a floating dtype, got {jnp.dtype(layer_dtype)}")
  check_eps(eps1, eps2)
  check_outside_mass(max_outside_mass)
  check_matmul(matmul)
  check_dense(pattern)
  if causal and not isinstance(pattern.cols, jax.core.Tracer):
    check_causal(pattern)
  length = solution.X.shape[0]
  if pattern.length != length:
    raise ValueError(f"pattern has length {pattern.length} but X has {length} rows")
  if solution.w_q.shape != solution.w_k.shape or solution.w_q.shape[0] != solution.X.shape[1]:
    raise ValueError(
      f"need w_q, w_k of shape [{solution.X.shape[1]}, d], got "
      f"{solution.w_q.shape} and {solution.w_k.shape}"
    )
