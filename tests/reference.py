"""Independent float64 NumPy reference of docs/definitions.md, written from the definitions.

It forms the dense attention P and compares probability ratios directly, so it
shares no code (and no log-domain shortcut) with ``jaxattn.verify``.
"""

from __future__ import annotations

import numpy as np
import pytest


def reference_figures(x, w_q, w_k, a) -> dict:
  """ratio_error, leak (overall, per row), outside mass of row-softmax((X W_Q)(X W_K)ᵀ) vs A."""
  x, w_q, w_k = (np.asarray(v, np.float64) for v in (x, w_q, w_k))
  return logit_figures((x @ w_q) @ (x @ w_k).T, a)


def logit_figures(logits, a) -> dict:
  """``reference_figures`` of row-softmax(ℓ) for given logits ℓ."""
  logits, a = np.asarray(logits, np.float64), np.asarray(a, np.float64)
  p = np.exp(logits - logits.max(axis=1, keepdims=True))
  p /= p.sum(axis=1, keepdims=True)
  row_ratio_error, row_leak, mass = [], [], []
  for i in range(a.shape[0]):
    support = a[i] > 0
    p_s, a_s = p[i, support], a[i, support]
    # max over j, j' of (P_ij/P_ij')/(A_ij/A_ij') = max_j (P/A) / min_j (P/A)
    row_ratio_error.append((p_s / a_s).max() / (p_s / a_s).min() - 1.0)
    row_leak.append(p[i, ~support].max() / p_s.min() if (~support).any() else 0.0)
    mass.append(p[i, ~support].sum())
  return dict(
    ratio_error=max(row_ratio_error),
    leak=max(row_leak),
    outside_mass_max=max(mass),
    outside_mass_mean=float(np.mean(mass)),
    max_abs_logit=np.abs(logits).max(),
    row_ratio_error=np.array(row_ratio_error),
    row_leak=np.array(row_leak),
  )


# A verdict within this margin, times the logits' size, of a threshold is refused: far above
# float64's rounding at the suite's sizes (γ_d·Σ|q k| ≤ 2⁻³³·max|ℓ| for d ≤ 4096 and
# Σ_c |q_c k_c| ≤ 256·max|ℓ|), but a guard, not a proof: for ε placed at a row's figure, use
# tests/exact_oracle.py (its ``float_row_ok`` bounds the margin from the factors).
SANITY_MARGIN = 2.0**-30


def reference_ok(figures: dict, eps1: float, eps2: float) -> bool:
  """ratio_error ≤ ε1 and leak ≤ ε2; the test fails where either figure lies within
  ``SANITY_MARGIN``·(1 + max|ℓ|) of its threshold in the log domain."""
  margin = SANITY_MARGIN * (1 + figures["max_abs_logit"])
  with np.errstate(divide="ignore"):  # a leak of 0 (no zeros) is −∞ in the log domain
    logs = np.log1p(figures["ratio_error"]), np.log(figures["leak"])
  for name, figure, threshold in (
    ("ratio_error", logs[0], np.log1p(eps1)),
    ("leak", logs[1], np.log(eps2)),
  ):
    if abs(figure - threshold) <= margin:
      pytest.fail(
        f"the float64 {name} lies within {margin:.3g} of its threshold in the log "
        "domain: float64 may not resolve it; use tests/exact_oracle.py"
      )
  return figures["ratio_error"] <= eps1 and figures["leak"] <= eps2
