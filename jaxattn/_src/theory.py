"""Provable dimension for the paper's construction as implemented (docs/theory.md)."""

from __future__ import annotations

import math


def jl_inner_product_failure(d: int, eps: float) -> float:
  """Bound on P(|⟨Gx, Gy⟩ − ⟨x, y⟩| > ε‖x‖‖y‖) for G ∈ R^{d×L} with N(0, 1/d) entries.

  By polarisation and the Gaussian χ² tail (Dasgupta & Gupta 2003):
  4·exp(−d(ε²/4 − ε³/6)), valid for 0 < ε < 3/2.
  """
  return 4.0 * math.exp(-d * (eps**2 / 4 - eps**3 / 6))


def jl_dim(length: int, nnz: int, eps1: float, eps2: float, a_min: float,
           delta: float = 0.1) -> int:
  """d at which ``construct.jl`` provably succeeds with probability ≥ 1 − δ.

  Every logit must stay within t = ln(1+ε1)/2 of its target B_ij. Row i of B
  has ≤ N nonzeros, each at most c = ln(1+ε1) + ln(1/(ε2·a_min)), so
  ‖B_i‖ ≤ √N·c and ℓ_ij − B_ij = ⟨Gb_i, Ge_j⟩ − ⟨b_i, e_j⟩ with ‖e_j‖ = 1. A
  union bound over the L² pairs (i, j) gives success with probability
  ≥ 1 − δ as soon as 4 L² exp(−d(ε²/4 − ε³/6)) ≤ δ with ε = t/(√N·c):

    d = ⌈ ln(4L²/δ) / (ε²/4 − ε³/6) ⌉ ≈ 16 N c² ln(4L²/δ) / ln²(1+ε1).

  Floating-point rounding is not accounted for.

  Args:
    length: L.
    nnz: N, nonzeros per row and column.
    eps1: ratio tolerance ε1 > 0.
    eps2: zero tolerance ε2 ∈ (0, 1).
    a_min: smallest within-row ratio of A, in (0, 1].
    delta: failure probability δ ∈ (0, 1).
  """
  if length < 1 or nnz < 1:
    raise ValueError(f"need length >= 1 and nnz >= 1, got {length}, {nnz}")
  if not (eps1 > 0 and 0 < eps2 < 1 and 0 < a_min <= 1 and 0 < delta < 1):
    raise ValueError("need eps1 > 0, 0 < eps2 < 1, 0 < a_min <= 1, 0 < delta < 1; got "
                     f"eps1={eps1}, eps2={eps2}, a_min={a_min}, delta={delta}")
  tolerance = math.log1p(eps1) / 2
  shift = math.log1p(eps1) + math.log(1 / (eps2 * a_min))
  eps = tolerance / (math.sqrt(nnz) * shift)
  return math.ceil(math.log(4 * length**2 / delta) / (eps**2 / 4 - eps**3 / 6))
