"""Provable dimension for the paper's construction as implemented (docs/theory.md)."""

from __future__ import annotations

import math

from jaxattn._src.options import keyword_eps


def jl_inner_product_failure(d: int, eps: float) -> float:
  """Bound on P(|⟨Gx, Gy⟩ − ⟨x, y⟩| > ε‖x‖‖y‖) for G ∈ R^{d×L} with N(0, 1/d) entries.

  By polarisation and the Gaussian χ² tail (Dasgupta & Gupta 2003):
  4·exp(−d(ε²/4 − ε³/6)), valid for 0 < ε < 3/2.
  """
  return 4.0 * math.exp(-d * (eps**2 / 4 - eps**3 / 6))


@keyword_eps
def jl_dim(
  length: int,
  nnz: int,
  *,
  eps1: float,
  eps2: float,
  a_min: float,
  delta: float = 0.1,
  max_outside_mass: float | None = None,
) -> int:
  """d at which ``construct.jl`` provably succeeds with probability ≥ 1 − δ.

  Every logit must stay within t = ln(1+ε1)/2 of its target B_ij. Row i of B
  has ≤ N nonzeros, each at most c = ln(1+ε1) + ln(1/(ε2·a_min)), so
  ‖B_i‖ ≤ √N·c and ℓ_ij − B_ij = ⟨Gb_i, Ge_j⟩ − ⟨b_i, e_j⟩ with ‖e_j‖ = 1. A
  union bound over the L² pairs (i, j) gives success with probability
  ≥ 1 − δ as soon as 4 L² exp(−d(ε²/4 − ε³/6)) ≤ δ with ε = t/(√N·c):

    d = ⌈ ln(4L²/δ) / (ε²/4 − ε³/6) ⌉ ≈ 16 N c² ln(4L²/δ) / ln²(1+ε1).

  Under the mass criterion (η = ``max_outside_mass``) the construction's
  shift is at most max(c, ln(1+ε1) + ln((L−N)(1−η)/η)) (``target_logits``),
  and the same logit error keeps the outside mass ≤ η (docs/theory.md §6),
  so c is replaced by that maximum. Floating-point rounding is not accounted for.

  Args:
    length: L.
    nnz: N, nonzeros per row and column.
    eps1: ratio tolerance ε1 > 0.
    eps2: zero tolerance ε2 ∈ (0, 1).
    a_min: smallest within-row ratio of A, in (0, 1].
    delta: failure probability δ ∈ (0, 1).
    max_outside_mass: η ∈ (0, 1) of the mass criterion; None: the ratio criterion.
  """
  if length < 1 or nnz < 1:
    raise ValueError(f"need length >= 1 and nnz >= 1, got {length}, {nnz}")
  if not (eps1 > 0 and 0 < eps2 < 1 and 0 < a_min <= 1 and 0 < delta < 1):
    raise ValueError(
      "need eps1 > 0, 0 < eps2 < 1, 0 < a_min <= 1, 0 < delta < 1; got "
      f"eps1={eps1}, eps2={eps2}, a_min={a_min}, delta={delta}"
    )
  if max_outside_mass is not None and not 0 < max_outside_mass < 1:
    raise ValueError(f"max_outside_mass must be in (0, 1), got {max_outside_mass}")
  tolerance = math.log1p(eps1) / 2
  shift = math.log1p(eps1) + math.log(1 / (eps2 * a_min))
  if max_outside_mass is not None and length > nnz:
    shift = max(
      shift, math.log1p(eps1) + math.log((length - nnz) * (1 - max_outside_mass) / max_outside_mass)
    )
  eps = tolerance / (math.sqrt(nnz) * shift)
  return math.ceil(math.log(4 * length**2 / delta) / (eps**2 / 4 - eps**3 / 6))


_LN2 = math.log(2)
# Families whose generator ignores its key for the support (one support per L, N).
_FIXED_SUPPORT = ("banded", "block_diagonal", "strided")


def _log2_factorial(n: int) -> float:
  return math.lgamma(n + 1) / _LN2


def _log2_sum(terms: list[float]) -> float:
  """log2 Σ 2^t, without overflow."""
  top = max(terms)
  return top + math.log2(sum(2.0 ** (t - top) for t in terms))


def _circulant_pairs_log2(length: int) -> float:
  """log2 of the number of L×L 0-1 matrices P C Q, C circulant with 2 distinct shifts.

  Row i ~ columns i + s1, i + s2 is g = gcd(s2 − s1, L) disjoint cycles of
  length 2m, m = L/g ≥ 2, and every divisor g ≤ L/2 occurs. The labelled
  copies of g such cycles number (L!)² / (g! (2m)^g): (L!)² relabellings over
  the g! (2m)^g side-preserving automorphisms.
  """
  return _log2_sum(
    [
      2 * _log2_factorial(length) - _log2_factorial(g) - g * math.log2(2 * length // g)
      for g in range(1, length // 2 + 1)
      if length % g == 0
    ]
  )


def pattern_bits(family: str, length: int, nnz: int) -> float:
  """log2(number of supports of the family at L, N) / L: bits per token any input must carry.

  If one logit matrix can approximate at most one of the family's supports
  (every support of the family has the same size per row, or ε2(1 + ε1) < 1;
  docs/theory.md §7), inputs that approximate every pattern of the family
  need L·D·b ≥ log2(count) bits in all, so D·b ≥ ``pattern_bits`` per token.

  Counts (supports as 0-1 matrices):

  - ``"random_regular"``: its supports are relabelled circulants
    {π₂(π₁(i) + s_k)}: for N = 1 every permutation, L!; for N = 2 exactly
    Σ_{g | L, g ≤ L/2} (L!)² / (g! (2L/g)^g) (``_circulant_pairs_log2``).
    N ≥ 3: not implemented (ValueError).
  - ``"regular"``: every L×L 0-1 matrix with all row and column sums N (the
    theorem's class with exactly N per row and column): L! for N = 1, else
    the asymptotic count (LN)! / (N!)^{2L} · exp(−(N−1)²/2) · (1 + O(1/L)) for
    fixed N (O'Neil 1969; Bender & Canfield 1978; McKay 1984), whose relative
    error O(1/L) is O(1/L²) bits per token.
  - ``"banded"``, ``"block_diagonal"``, ``"strided"``: one support, 0 bits.
  """
  if length < 1 or not 1 <= nnz <= length:
    raise ValueError(f"need 1 <= nnz <= length, got length={length}, nnz={nnz}")
  if family in _FIXED_SUPPORT or nnz == length:  # one support: every column of every row
    return 0.0
  if nnz == 1 and family in ("random_regular", "regular"):
    return _log2_factorial(length) / length
  if family == "random_regular" and nnz == 2:
    return _circulant_pairs_log2(length) / length
  if family == "regular":
    total = (
      _log2_factorial(length * nnz)
      - 2 * length * _log2_factorial(nnz)
      - (nnz - 1) ** 2 / (2 * _LN2)
    )
    return total / length
  raise ValueError(
    f"no support count for family {family!r} with nnz={nnz}: known for "
    f"random_regular (nnz <= 2), regular, {', '.join(_FIXED_SUPPORT)}"
  )
