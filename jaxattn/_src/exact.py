"""Exact verdicts on the host: the (ε1, ε2) conditions of a row decided in exact arithmetic on the
stored factors (docs/certified.md).

Every floating-point number is a rational, so the logits of stored factors,

  ℓ_ij = s Σ_{c<d} q_ic k_jc   (s = d_max/d of a nested level, 1 otherwise),

are rationals (``fractions.Fraction``). The conditions compare them with
logarithms:

  ratios: ℓ_ia − ℓ_ib ≤ ln((1 + ε1) A_ia / A_ib)   for a, b ∈ S_i,
  zeros:  max_{j∉S_i} ℓ_ij − min_{j∈S_i} ℓ_ij ≤ ln ε2,

i.e. e^Δ ≤ R for a rational Δ and a rational R > 0 (ε1, ε2 and A as the
floats they are stored as). For Δ ≠ 0, e^Δ is irrational (Lindemann), so
e^Δ ≠ R and comparing Δ with ln R computed by ``decimal`` (correctly
rounded) at growing precision terminates; Δ = 0 compares 1 with R exactly,
the only tie, which counts as ≤.

To keep the rationals few, each row's logits are first computed in float64
with the bound γ_{d+1}(2⁻⁵³)·Σ_c |q_ic k_jc| (every product and sum rounded
once), and only the columns whose interval reaches the extreme are summed
exactly.
"""

from __future__ import annotations

import decimal
import fractions
import math
from typing import Sequence

import numpy as np

Fraction = fractions.Fraction
_U64 = 2.0**-53
_CHUNK = 256  # rows per float64 product on the host


def exp_at_most(delta: Fraction, bound: Fraction) -> bool:
  """e^Δ ≤ R, exactly, for rationals Δ and R (R ≤ 0: False)."""
  if bound <= 0:
    return False
  if delta == 0 or bound == 1:
    return delta <= 0 if bound == 1 else bound >= 1
  rough, approx = math.log(bound.numerator) - math.log(bound.denominator), float(delta)
  slack = 1e-9 * (1 + abs(rough) + abs(approx))  # float64 logs and quotients err ≪ slack
  if abs(approx - rough) > slack:
    return approx < rough
  precision = 40
  while True:
    with decimal.localcontext() as context:
      context.prec = precision
      log_num = decimal.Decimal(bound.numerator).ln()
      log_den = decimal.Decimal(bound.denominator).ln()
      log_bound = Fraction(log_num) - Fraction(log_den)
      # each ln is correctly rounded: error ≤ ½ ulp ≤ 10^(1−p)·|value|
      error = Fraction(1, 10 ** (precision - 1)) * (
        abs(Fraction(log_num)) + abs(Fraction(log_den)) + 1
      )
    if delta < log_bound - error:
      return True
    if delta > log_bound + error:
      return False
    precision *= 2


def exact_dot(q: np.ndarray, k: np.ndarray) -> Fraction:
  """Σ_c q_c k_c in exact rational arithmetic.

  For float32 (or narrower) factors every product is exact in float64; its
  53-bit significand and exponent (``np.frexp``) make it an integer times a
  power of two, and the sum is taken over integers. Wider factors go
  through ``Fraction`` products.
  """
  if q.dtype.itemsize > 4 or k.dtype.itemsize > 4:
    return sum((Fraction(float(a)) * Fraction(float(b)) for a, b in zip(q, k)), Fraction(0))
  significands, exponents = np.frexp(q.astype(np.float64) * k.astype(np.float64))
  integers, shifts = (significands * 2.0**53).astype(np.int64), exponents.astype(np.int64) - 53
  nonzero = integers != 0
  if not nonzero.any():
    return Fraction(0)
  low = int(shifts[nonzero].min())
  total = sum(int(m) << int(e - low) for m, e in zip(integers[nonzero], shifts[nonzero]))
  return Fraction(total) * Fraction(2) ** low


def float64_logits(queries: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(ℓ̃, e): the logits Q Kᵀ as one float64 product and a bound on their error,

    |ℓ̃_ij − ℓ_ij| ≤ e_ij = 1.01·γ_{d+1}(2⁻⁵³)·Σ_c |q_ic k_jc| + 2⁻¹⁰⁰⁰

  (every product and sum rounded once, in any order; 1% and an absolute 2⁻¹⁰⁰⁰ for underflow
  on top)."""
  q64, k64 = queries.astype(np.float64), keys.astype(np.float64)
  gamma = 1.01 * (keys.shape[-1] + 1) * _U64
  return q64 @ k64.T, gamma * (np.abs(q64) @ np.abs(k64).T) + 2.0**-1000


def _largest(
  query: np.ndarray, keys: np.ndarray, values: np.ndarray, bound: np.ndarray, outside: np.ndarray
) -> Fraction:
  """max_{j outside} q·k_j exactly, from float64 ``values`` within ``bound`` of the exact ones:
  exact sums for the columns whose interval reaches the largest lower end."""
  values = np.where(outside, values, -np.inf)
  candidates = np.flatnonzero(outside & (values + bound >= np.max(values - bound)))
  return max(exact_dot(query, keys[j]) for j in candidates)


def _dense_row_ok(query, keys, values, bound, eps1, scale, visible) -> bool:
  """``rows_ok_exact`` of a dense row (support every ``visible`` key, A_ij = 1):
  e^{s(max_j − min_j q·k_j)} ≤ 1 + ε1 over those keys; no zeros condition."""
  spread = _largest(query, keys, values, bound, visible) + _largest(
    -query, keys, -values, bound, visible
  )
  return exp_at_most(scale * spread, 1 + Fraction(eps1))


def _row_ok(query, keys, values, bound, cols, weights, eps1, eps2, scale, visible) -> bool:
  """``rows_ok_exact`` of one row (its support columns ``cols`` and weights; its float64 logits
  ``values`` within ``bound``; the keys it sees, ``visible``)."""
  support = [scale * exact_dot(query, keys[j]) for j in cols]
  one_plus = 1 + Fraction(eps1)
  a_weights = [Fraction(float(w)) for w in weights]
  for a, (logit_a, weight_a) in enumerate(zip(support, a_weights)):
    for b, (logit_b, weight_b) in enumerate(zip(support, a_weights)):
      if a != b and not exp_at_most(logit_a - logit_b, one_plus * weight_a / weight_b):
        return False
  outside = visible.copy()
  outside[cols] = False
  if not outside.any():
    return True
  largest = scale * _largest(query, keys, values, bound, outside)
  return exp_at_most(largest - min(support), Fraction(eps2))


def rows_ok_exact(
  queries: np.ndarray,
  keys: np.ndarray,
  cols: np.ndarray,
  weights: np.ndarray,
  valid: np.ndarray,
  rows: Sequence[int] | np.ndarray,
  eps1: float,
  eps2: float,
  scale: Fraction | None = None,
  dense: np.ndarray | None = None,
  causal: bool = False,
) -> np.ndarray:
  """Whether each of ``rows`` of ℓ = s Q Kᵀ meets both conditions exactly (module docstring).

  The float64 logits of up to ``_CHUNK`` rows at a time come from one
  product, within ``float64_logits``'s bound.

  Args:
    queries, keys: Q[:, :d] and K[:, :d] as stored (float32 or float64), [L, d].
    cols, weights, valid: the pattern's arrays (``SparsePattern``), [L, N].
    rows: the rows to decide.
    eps1, eps2: the tolerances as given.
    scale: s, the nested level's d_max/d (a rational); None: 1.
    dense: the pattern's dense-row flags, bool [L] (``SparsePattern.dense``); None: none. A
      dense row meets the ratio condition over every key, max_j ℓ_ij − min_j ℓ_ij ≤ ln(1 + ε1).
    causal: a causal layer (docs/definitions.md §3): row i sees the keys j ≤ i only, so its
      zeros are j ≤ i, j ∉ S_i, and a dense row's support is j ≤ i.

  Returns:
    bool [len(rows)]; a row with a non-finite factor fails.
  """
  scale = Fraction(1) if scale is None else scale
  row_index = np.asarray(rows, int)
  finite = np.all(np.isfinite(queries[row_index]), 1) & bool(np.all(np.isfinite(keys)))
  ok = np.zeros(row_index.size, np.bool_)
  for start in range(0, row_index.size, _CHUNK):
    chunk = row_index[start : start + _CHUNK]
    values, bound = float64_logits(queries[chunk], keys)
    for n, i in enumerate(chunk):
      visible = np.arange(keys.shape[0]) <= i if causal else np.ones(keys.shape[0], bool)
      ok[start + n] = finite[start + n] and (
        _dense_row_ok(queries[i], keys, values[n], bound[n], eps1, scale, visible)
        if dense is not None and dense[i]
        else _row_ok(
          queries[i],
          keys,
          values[n],
          bound[n],
          cols[i][valid[i]],
          weights[i][valid[i]],
          eps1,
          eps2,
          scale,
          visible,
        )
      )
  return ok
