"""Fits of d against L: the log law and a power law (pure functions).

For d_min (no per-point uncertainty), ordinary least squares:

  log law    d = a · ln L + b         OLS of d on ln L
  power law  d = c · L^α              OLS of ln d on ln L

Both report R² of their predictions of d itself (not of ln d), so the two
numbers compare the laws on the same scale; ``ols_preference`` compares them
by AIC with an unknown common variance, ΔAIC = n · ln(RSS_power / RSS_log).

For the quantile estimators d_50 and d_{1−δ} (each with an order-statistic
interval), weighted least squares in d (``fit_weighted``): σ_i is the
interval's half-width, floored at half the local grid step (the intervals
are at grid resolution), and each law minimises χ² = Σ ((d_i − f(L_i))/σ_i)².
The goodness of fit is χ² with n − 2 degrees of freedom and its p-value;
parameter intervals are t_{n−2} · se · √ĉ with ĉ = max(1, χ²/(n − 2)), so
a poor fit widens them instead of leaving them overconfident.

The preferred law (``weighted_preference``): both laws have 2 parameters, so
ΔAIC = (χ²_power − χ²_log)/ĉ, with ĉ = max(1, χ²_best/(n − 2)) of the better
law (quasi-AIC: σ that are too small cannot manufacture a decision).
ΔAIC ≥ 10 prefers the log law, ≤ −10 the power law, anything between is
"undecided" (``PREFERENCE_THRESHOLD``).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import scipy.optimize
import scipy.stats

PREFERENCE_THRESHOLD = 10.0  # |ΔAIC| needed to prefer one law


class LineFit(NamedTuple):
  """y = slope · x + intercept by ordinary least squares, with a t interval on the slope."""

  slope: float
  slope_low: float
  slope_high: float
  intercept: float
  r2: float  # 1 − SS_res / SS_tot of y
  n: int
  residual_sd: float  # s = √(SS_res / (n − 2))
  x_mean: float
  x_ss: float  # Σ (x − x̄)²
  t: float  # t quantile, n − 2 degrees of freedom

  def predict(self, x: np.ndarray) -> np.ndarray:
    """slope · x + intercept."""
    return self.slope * np.asarray(x, float) + self.intercept

  def band(self, x: np.ndarray) -> np.ndarray:
    """Half-width of the confidence band of the mean line: t · s · √(1/n + (x − x̄)²/Σ(x − x̄)²)."""
    x = np.asarray(x, float)
    return self.t * self.residual_sd * np.sqrt(1 / self.n + (x - self.x_mean) ** 2 / self.x_ss)


def r_squared(y: np.ndarray, prediction: np.ndarray) -> float:
  """1 − Σ(y − ŷ)² / Σ(y − ȳ)²; nan when y is constant."""
  y = np.asarray(y, float)
  total = np.sum((y - y.mean()) ** 2)
  return float(1 - np.sum((y - prediction) ** 2) / total) if total > 0 else float("nan")


def fit_line(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> LineFit:
  """OLS of y on x: slope = Σ(x−x̄)(y−ȳ)/Σ(x−x̄)², CI slope ± t_{n−2} · s/√Σ(x−x̄)².

  Needs at least 3 points and two distinct x.
  """
  x, y = np.asarray(x, float), np.asarray(y, float)
  if x.shape != y.shape or x.ndim != 1:
    raise ValueError(f"x and y must be 1-d of equal length, got {x.shape} and {y.shape}")
  n = x.size
  x_mean = x.mean() if n else 0.0
  x_ss = float(np.sum((x - x_mean) ** 2))
  if n < 3 or x_ss == 0:
    raise ValueError(
      f"a line with a confidence interval needs >= 3 points and two distinct x, got n={n}"
    )
  slope = float(np.sum((x - x_mean) * (y - y.mean())) / x_ss)
  intercept = float(y.mean() - slope * x_mean)
  residual_sd = float(np.sqrt(np.sum((y - slope * x - intercept) ** 2) / (n - 2)))
  t = float(scipy.stats.t.ppf(0.5 + confidence / 2, n - 2))
  half = float(t * residual_sd / np.sqrt(x_ss))
  return LineFit(
    slope=slope,
    slope_low=slope - half,
    slope_high=slope + half,
    intercept=intercept,
    r2=r_squared(y, slope * x + intercept),
    n=n,
    residual_sd=residual_sd,
    x_mean=float(x_mean),
    x_ss=x_ss,
    t=t,
  )


class LawFit(NamedTuple):
  """One law fitted to (L, d): its exponent-like parameter with CI and R² on d."""

  law: str  # "log": d = a ln L + b;  "power": d = c L^α
  param: float  # a or α
  param_low: float
  param_high: float
  constant: float  # b or c
  r2: float  # R² of the law's prediction of d
  n: int
  line: LineFit  # the underlying line: d on ln L, or ln d on ln L

  def predict(self, length: np.ndarray) -> np.ndarray:
    """d predicted at sequence lengths L."""
    value = self.line.predict(np.log(np.asarray(length, float)))
    return value if self.law == "log" else np.exp(value)

  def band(self, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) confidence band of the fitted d at L."""
    x = np.log(np.asarray(length, float))
    centre, half = self.line.predict(x), self.line.band(x)
    if self.law == "log":
      return centre - half, centre + half
    return np.exp(centre - half), np.exp(centre + half)


def fit_log_law(length: np.ndarray, d: np.ndarray, confidence: float = 0.95) -> LawFit:
  """d = a · ln L + b by OLS; a with its t interval."""
  line = fit_line(np.log(np.asarray(length, float)), d, confidence)
  return LawFit(
    "log", line.slope, line.slope_low, line.slope_high, line.intercept, line.r2, line.n, line
  )


def fit_power_law(length: np.ndarray, d: np.ndarray, confidence: float = 0.95) -> LawFit:
  """d = c · L^α by OLS of ln d on ln L; α with its t interval, R² on d."""
  length, d = np.asarray(length, float), np.asarray(d, float)
  line = fit_line(np.log(length), np.log(d), confidence)
  fit = LawFit(
    "power",
    line.slope,
    line.slope_low,
    line.slope_high,
    float(np.exp(line.intercept)),
    float("nan"),
    line.n,
    line,
  )
  return fit._replace(r2=r_squared(d, fit.predict(length)))


class WeightedFit(NamedTuple):
  """One law fitted to (L, d ± σ) by weighted least squares (module docstring)."""

  law: str  # "log": d = a ln L + b;  "power": d = c L^α
  param: float  # a or α
  param_low: float
  param_high: float
  constant: float  # b or c
  constant_low: float
  constant_high: float
  r2: float  # unweighted R² of the prediction of d, for comparison with OLS
  n: int
  chi2: float  # Σ ((d_i − f(L_i)) / σ_i)²
  dof: int  # n − 2
  p_value: float  # P(χ²_dof ≥ chi2)

  def predict(self, length: np.ndarray) -> np.ndarray:
    """d predicted at sequence lengths L."""
    return _LAWS[self.law](np.asarray(length, float), self.param, self.constant)


_LAWS = {
  "log": lambda length, a, b: a * np.log(length) + b,
  "power": lambda length, alpha, c: c * length**alpha,
}


def fit_weighted(
  law: str, length: np.ndarray, d: np.ndarray, sigma: np.ndarray, confidence: float = 0.95
) -> WeightedFit:
  """Weighted least squares of ``law`` ("log" or "power") to d ± σ at L: min Σ ((d − f(L))/σ)².

  Intervals t_{n−2}(confidence) · se · √max(1, χ²/(n − 2)), se from the
  covariance (JᵀΣ⁻¹J)⁻¹. The power law starts from OLS of ln d on ln L.
  Needs ≥ 3 points, two distinct L, d > 0 and σ > 0.
  """
  length, d, sigma = (np.asarray(v, float) for v in (length, d, sigma))
  if not (length.shape == d.shape == sigma.shape and length.ndim == 1):
    raise ValueError(
      f"length, d and sigma must be 1-d of equal length, got {length.shape}, "
      f"{d.shape} and {sigma.shape}"
    )
  if length.size < 3 or np.ptp(length) == 0:
    raise ValueError(f"a weighted fit needs >= 3 points and two distinct L, got n={length.size}")
  if np.any(d <= 0) or np.any(sigma <= 0) or not np.all(np.isfinite(d * sigma)):
    raise ValueError("d and sigma must be positive and finite")
  if law == "log":
    start = tuple(np.polyfit(np.log(length), d, 1))
  elif law == "power":
    slope, intercept = np.polyfit(np.log(length), np.log(d), 1)
    start = (slope, np.exp(intercept))
  else:
    raise ValueError(f"unknown law {law!r}; choose 'log' or 'power'")
  with warnings.catch_warnings():  # an undetermined covariance (e.g. constant d): inf intervals
    warnings.simplefilter("ignore", scipy.optimize.OptimizeWarning)
    params, covariance = scipy.optimize.curve_fit(
      _LAWS[law], length, d, p0=start, sigma=sigma, absolute_sigma=True, maxfev=20000
    )
  n, dof = length.size, length.size - 2
  prediction = _LAWS[law](length, *params)
  chi2 = float(np.sum(((d - prediction) / sigma) ** 2))
  half = (
    scipy.stats.t.ppf(0.5 + confidence / 2, dof)
    * np.sqrt(np.diag(covariance))
    * np.sqrt(max(1.0, chi2 / dof))
  )
  return WeightedFit(
    law,
    float(params[0]),
    float(params[0] - half[0]),
    float(params[0] + half[0]),
    float(params[1]),
    float(params[1] - half[1]),
    float(params[1] + half[1]),
    r_squared(d, prediction),
    n,
    chi2,
    dof,
    float(scipy.stats.chi2.sf(chi2, dof)),
  )


def _verdict(delta_aic: float) -> str:
  if delta_aic >= PREFERENCE_THRESHOLD:
    return "log"
  return "power" if delta_aic <= -PREFERENCE_THRESHOLD else "undecided"


def weighted_preference(log_fit: WeightedFit, power_fit: WeightedFit) -> tuple[str, float]:
  """("log" | "power" | "undecided", ΔAIC) with ΔAIC = (χ²_power − χ²_log)/ĉ,
  ĉ = max(1, min(χ²_log, χ²_power)/(n − 2)); a verdict needs |ΔAIC| ≥ PREFERENCE_THRESHOLD."""
  scale = max(1.0, min(log_fit.chi2, power_fit.chi2) / log_fit.dof)
  delta = (power_fit.chi2 - log_fit.chi2) / scale
  return _verdict(delta), float(delta)


def ols_preference(
  length: np.ndarray, d: np.ndarray, log_fit: LawFit, power_fit: LawFit
) -> tuple[str, float]:
  """("log" | "power" | "undecided", ΔAIC) for OLS fits with unknown common variance:
  ΔAIC = n · ln(RSS_power / RSS_log), RSS of d; a verdict needs |ΔAIC| ≥ PREFERENCE_THRESHOLD."""
  d = np.asarray(d, float)
  rss = [
    max(float(np.sum((d - fit.predict(length)) ** 2)), 1e-12 * float(np.sum(d**2)))
    for fit in (log_fit, power_fit)
  ]
  delta = d.size * float(np.log(rss[1] / rss[0]))
  return _verdict(delta), delta
