"""An exact oracle for certified verdicts, and the margin inside which a float64 oracle is refused.

Independent of ``jaxattn._src.exact`` (no code shared): the logits of stored
float32 factors are exact rationals, ℓ_ij = Σ_c q_ic k_jc, computed here as
one integer matrix product (every float is an integer times a power of two,
so Q = 2^e_q·M_Q and K = 2^e_k·M_K with integer matrices M_Q, M_K of Python
ints); the logarithms (ln A_ij, ln(1 + ε1), ln ε2) come from ``decimal``,
whose ``ln`` is correctly rounded, at a precision that grows until every
row's figure lies outside its error bracket (docs/definitions.md §2):

  spread_i = max_{j∈S_i}(ℓ_ij − ln A_ij) − min_{j∈S_i}(ℓ_ij − ln A_ij) ≤ ln(1 + ε1),
  gap_i    = max_{j∉S_i} ℓ_ij − min_{j∈S_i} ℓ_ij ≤ ln ε2.

A float64 oracle (``ja.reference.dense_check``) computes each logit as a
float64 dot product of length d, with error at most γ_d(u)·Σ_c |q_ic k_jc|
(u = 2⁻⁵³, γ_n = n·u/(1 − n·u); Higham §3.1), then ln A, subtractions, a
max − min and the threshold's own log, each rounded once. ``float_row_ok``
takes its verdicts only where every row's figure lies farther from its
threshold than four times that error (``float64_margin``); inside that
margin it fails the test and names the row, so no test can trust float64
below its accuracy.
"""

from __future__ import annotations

import decimal
import math
from fractions import Fraction

import numpy as np
import pytest

_U64 = 2.0**-53
_MAX_DIGITS = 4000


def _integer_matrix(values: np.ndarray) -> tuple[np.ndarray, int]:
  """(M, e) with values = M·2^e exactly: M an object array of Python ints."""
  ratios = [float(v).as_integer_ratio() for v in values.ravel()]
  shift = max(den.bit_length() - 1 for _, den in ratios)  # every denominator is a power of 2
  ints = [num << (shift - (den.bit_length() - 1)) for num, den in ratios]
  return np.array(ints, dtype=object).reshape(values.shape), -shift


def exact_logits(queries: np.ndarray, keys: np.ndarray) -> list[list[Fraction]]:
  """ℓ = Q Kᵀ of the stored factors, every entry an exact rational."""
  queries, keys = np.asarray(queries), np.asarray(keys)
  if not (np.all(np.isfinite(queries)) and np.all(np.isfinite(keys))):
    raise ValueError("the exact oracle takes finite factors")
  m_q, e_q = _integer_matrix(queries)
  m_k, e_k = _integer_matrix(keys)
  scale = Fraction(2) ** (e_q + e_k)
  return [[Fraction(int(v)) * scale for v in row] for row in m_q.dot(m_k.T)]


def _decimal(value: Fraction) -> decimal.Decimal:
  return decimal.Decimal(value.numerator) / decimal.Decimal(value.denominator)


def _row_figures(logits, weights, support, visible, threshold_args, digits):
  """(spread, gap, ln(1+ε1), ln ε2, error) of one row in ``digits``-digit decimals; error bounds
  every figure's distance from its exact value (each operation rounds once, relative
  10^(1−p), on operands no larger than the row's largest magnitude)."""
  eps1, eps2 = threshold_args
  shifted = [_decimal(logits[j]) - _decimal(Fraction(float(weights[j]))).ln() for j in support]
  inside = [_decimal(logits[j]) for j in support]
  members = set(support)
  outside = [_decimal(logits[j]) for j in range(visible) if j not in members]
  spread = max(shifted) - min(shifted)
  gap = max(outside) - min(inside) if outside else None
  log_ratio = _decimal(1 + Fraction(eps1)).ln()
  log_leak = _decimal(Fraction(eps2)).ln()
  size = max([abs(v) for v in shifted + inside + outside] + [abs(log_ratio), abs(log_leak), 1])
  return spread, gap, log_ratio, log_leak, 16 * size * decimal.Decimal(10) ** (1 - digits)


def exact_row_ok(
  queries: np.ndarray,
  keys: np.ndarray,
  a: np.ndarray,
  eps1: float,
  eps2: float,
  *,
  causal: bool = False,
) -> np.ndarray:
  """Each row's verdict in exact arithmetic on the stored Q, K and A (ε as the floats given);
  ``causal``: a causal layer, whose row i sees the keys j ≤ i only (A lower triangular).

  The decimal precision doubles until every figure is outside its bracket; an exact tie
  (impossible unless spread or gap is 0 and the threshold's argument is exactly 1) fails."""
  a = np.asarray(a)
  if causal and np.any(np.triu(a, 1) > 0):
    raise ValueError("a causal layer needs a lower-triangular A")
  logits = exact_logits(queries, keys)
  verdicts = []
  for i, row in enumerate(logits):
    support = [int(j) for j in np.flatnonzero(a[i] > 0)]
    visible = i + 1 if causal else len(row)
    digits = 50
    while True:
      with decimal.localcontext() as context:
        context.prec = digits
        spread, gap, log_ratio, log_leak, error = _row_figures(
          row, a[i], support, visible, (eps1, eps2), digits
        )
        ratio_decided = abs(spread - log_ratio) > 2 * error
        leak_decided = gap is None or abs(gap - log_leak) > 2 * error
        if ratio_decided and leak_decided:
          verdicts.append(bool(spread < log_ratio and (gap is None or gap < log_leak)))
          break
      digits *= 2
      if digits > _MAX_DIGITS:
        raise AssertionError(f"row {i}: a tie the exact oracle cannot break")
  return np.array(verdicts)


def float64_margin(queries: np.ndarray, keys: np.ndarray, a: np.ndarray) -> np.ndarray:
  """Per row, a bound on the error of dense_check's float64 spread and gap (module docstring):
  2(γ_{d+2}(u)·max_j Σ_c |q_ic k_jc| + 4u·max_j |ℓ_ij| + 4u·max_{j∈S_i} |ln A_ij|)."""
  q, k, a = (np.asarray(m, np.float64) for m in (queries, keys, a))
  n = q.shape[1] + 2
  gamma = n * _U64 / (1 - n * _U64)
  magnitude = (np.abs(q) @ np.abs(k).T).max(1)
  log_a = np.abs(np.log(np.where(a > 0, a, 1.0))).max(1)
  return 2 * (gamma * magnitude + 4 * _U64 * (magnitude + log_a))


def float_row_ok(
  report, queries: np.ndarray, keys: np.ndarray, a: np.ndarray, eps1: float, eps2: float
) -> np.ndarray:
  """The row verdicts of a float64 ``dense_check`` report, refused (the test fails, naming the
  row) where a row's spread or gap lies within 4·``float64_margin`` of its threshold, plus the
  threshold's own rounding: there float64 does not resolve the verdict; use ``exact_row_ok``."""
  margin = 4 * float64_margin(queries, keys, a)
  for figure, threshold, name in (
    (report.spread, math.log1p(eps1), "spread"),
    (report.gap, math.log(eps2), "gap"),
  ):
    figure = np.asarray(figure, np.float64)
    close = np.abs(figure - threshold) <= margin + 4 * _U64 * abs(threshold)
    if np.any(close):
      row = int(np.flatnonzero(close)[0])
      pytest.fail(
        f"row {row}: its float64 {name} {figure[row]!r} lies within {margin[row]:.3g} "
        f"of the threshold {threshold!r}, below float64's accuracy: use exact_row_ok"
      )
  return (np.asarray(report.spread) <= math.log1p(eps1)) & (
    np.asarray(report.gap) <= math.log(eps2)
  )
