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
_U64 = 2.0 ** -53


def exp_at_most(delta: Fraction, bound: Fraction) -> bool:
  """e^Δ ≤ R, exactly, for rationals Δ and R (R ≤ 0: False)."""
  if bound <= 0:
    return False
  if delta == 0 or bound == 1:
    return delta <= 0 if bound == 1 else bound >= 1
  log_bound, approx = math.log(bound.numerator) - math.log(bound.denominator), float(delta)
  slack = 1e-9 * (1 + abs(log_bound) + abs(approx))  # float64 logs and quotients err ≪ slack
  if abs(approx - log_bound) > slack:
    return approx < log_bound
  precision = 40
  while True:
    with decimal.localcontext() as context:
      context.prec = precision
      log_num = decimal.Decimal(bound.numerator).ln()
      log_den = decimal.Decimal(bound.denominator).ln()
      log_bound = Fraction(log_num) - Fraction(log_den)
      # each ln is correctly rounded: error ≤ ½ ulp ≤ 10^(1−p)·|value|
      error = Fraction(1, 10 ** (precision - 1)) * (abs(Fraction(log_num)) + abs(Fraction(log_den))
                                                    + 1)
    if delta < log_bound - error:
      return True
    if delta > log_bound + error:
      return False
    precision *= 2


def exact_dot(q: np.ndarray, k: np.ndarray) -> Fraction:
  """Σ_c q_c k_c in exact rational arithmetic."""
  return sum((Fraction(float(a)) * Fraction(float(b)) for a, b in zip(q, k)), Fraction(0))


def _interval_extreme(queries: np.ndarray, keys: np.ndarray, largest: bool) -> Fraction:
  """max (or min) over the rows of ``keys`` of the exact q·k_j, from float64 intervals."""
  q64, k64 = queries.astype(np.float64), keys.astype(np.float64)
  values = k64 @ q64
  bound = 1.01 * (keys.shape[-1] + 1) * _U64 * (np.abs(k64) @ np.abs(q64)) + 2.0 ** -1000
  if largest:
    candidates = np.flatnonzero(values + bound >= np.max(values - bound))
  else:
    candidates = np.flatnonzero(values - bound <= np.min(values + bound))
  exact = [exact_dot(queries, keys[j]) for j in candidates]
  return max(exact) if largest else min(exact)


def row_ok_exact(query: np.ndarray, keys: np.ndarray, cols: Sequence[int],
                 weights: Sequence[float], eps1: float, eps2: float,
                 scale: Fraction = Fraction(1)) -> bool:
  """Whether row i of ℓ = s Q Kᵀ meets both conditions exactly (module docstring).

  Args:
    query: q_i, the first d entries of the stored query row (float32 or float64).
    keys: K[:, :d] for all L keys.
    cols: the row's support S_i (distinct columns).
    weights: A_ij for j in ``cols``, as stored.
    eps1, eps2: the tolerances as given.
    scale: s, the nested level's d_max/d (a rational), 1 otherwise.
  """
  if not (np.all(np.isfinite(query)) and np.all(np.isfinite(keys))):
    return False
  cols = np.asarray(cols)
  support = [scale * exact_dot(query, keys[j]) for j in cols]
  one_plus = 1 + Fraction(eps1)
  a_weights = [Fraction(float(w)) for w in weights]
  for a, (logit_a, weight_a) in enumerate(zip(support, a_weights)):
    for b, (logit_b, weight_b) in enumerate(zip(support, a_weights)):
      if a != b and not exp_at_most(logit_a - logit_b, one_plus * weight_a / weight_b):
        return False
  outside = np.ones(keys.shape[0], bool)
  outside[cols] = False
  if not outside.any():
    return True
  largest = scale * _interval_extreme(query, keys[outside], largest=True)
  return exp_at_most(largest - min(support), Fraction(eps2))
