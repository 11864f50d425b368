"""A dense float64 NumPy check of the (ε1, ε2)-approximation, straight from the definitions.

For small L: it forms the L×L logits. ``bench check`` uses it to re-check a
saved solution independently of the streaming kernel, and the tests to
check constructions (docs/definitions.md).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxattn._src.options import keyword_eps


class DenseReport(NamedTuple):
  """Figures of ``dense_check`` and ``logits_check``, NumPy float64; ok ⇔ ratio_error ≤ ε1 and
  leak ≤ ε2 (and outside_mass_max ≤ η under the mass criterion)."""

  ok: bool
  ratio_error: float  # exp(max_i spread_i) − 1
  leak: float  # exp(max_i gap_i)
  spread: np.ndarray  # [L]
  gap: np.ndarray  # [L]; −inf for a row whose support is every column
  outside_mass: np.ndarray  # [L]: Σ_{j∉S_i} P_ij
  outside_mass_max: float


@keyword_eps
def dense_check(
  x,
  w_q,
  w_k,
  a,
  *,
  eps1: float,
  eps2: float,
  max_outside_mass: float | None = None,
  causal: bool = False,
) -> DenseReport:
  """``logits_check`` of ℓ = (X W_Q)(X W_K)ᵀ, all in float64 (W_Q, W_K made dense)."""
  x, w_q, w_k = (np.asarray(m, np.float64) for m in (x, w_q, w_k))
  return logits_check(
    (x @ w_q) @ (x @ w_k).T,
    a,
    eps1=eps1,
    eps2=eps2,
    max_outside_mass=max_outside_mass,
    causal=causal,
  )


@keyword_eps
def logits_check(
  logits,
  a,
  *,
  eps1: float,
  eps2: float,
  max_outside_mass: float | None = None,
  causal: bool = False,
) -> DenseReport:
  """(ε1, ε2) check of the L×L logits ℓ against a dense A, in float64:

    spread_i = max_{j∈S_i}(ℓ_ij − ln A_ij) − min_{j∈S_i}(ℓ_ij − ln A_ij),
    gap_i    = max_{j∉S_i} ℓ_ij − min_{j∈S_i} ℓ_ij,   S_i = {j : A_ij > 0},

  ratio_error = exp(max_i spread_i) − 1, leak = exp(max_i gap_i); with η =
  ``max_outside_mass`` (the mass criterion) also Σ_{j∉S_i} P_ij ≤ η for every row.
  ``causal``: a causal layer, whose softmax runs over j ≤ i: the keys j > i are masked (−∞)
  before everything, so gap_i runs over j ≤ i, j ∉ S_i (A must be causal: lower triangular).
  """
  logits, a = np.asarray(logits, np.float64), np.asarray(a, np.float64)
  support = a > 0
  if causal:
    future = np.triu(np.ones(logits.shape, bool), 1)
    if np.any(support & future):
      row, col = np.argwhere(support & future)[0]
      raise ValueError(f"the pattern is not causal: row {row} has a nonzero at column {col}")
    logits = np.where(future, -np.inf, logits)
  shifted = logits - np.log(np.where(support, a, 1.0))
  spread = np.max(np.where(support, shifted, -np.inf), axis=-1) - np.min(
    np.where(support, shifted, np.inf), axis=-1
  )
  gap = np.max(np.where(support, -np.inf, logits), axis=-1) - np.min(
    np.where(support, logits, np.inf), axis=-1
  )
  p = np.exp(logits - logits.max(axis=-1, keepdims=True))
  outside_mass = np.where(support, 0.0, p).sum(axis=-1) / p.sum(axis=-1)
  ratio_error, leak = float(np.expm1(spread.max())), float(np.exp(gap.max()))
  mass_ok = max_outside_mass is None or outside_mass.max() <= max_outside_mass
  return DenseReport(
    bool(ratio_error <= eps1 and leak <= eps2 and mass_ok),
    ratio_error,
    leak,
    spread,
    gap,
    outside_mass,
    float(outside_mass.max()),
  )
