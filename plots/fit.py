"""Least-squares fits of d_min against L: the log law and a power law (pure functions).

  log law    d = a · ln L + b         ordinary least squares of d on ln L
  power law  d = c · L^α              ordinary least squares of ln d on ln L

Both report R² of their predictions of d itself (not of ln d), so the two
numbers compare the laws on the same scale.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.stats


class LineFit(NamedTuple):
  """y = slope · x + intercept by ordinary least squares, with a t interval on the slope."""

  slope: float
  slope_low: float
  slope_high: float
  intercept: float
  r2: float           # 1 − SS_res / SS_tot of y
  n: int
  residual_sd: float  # s = √(SS_res / (n − 2))
  x_mean: float
  x_ss: float         # Σ (x − x̄)²
  t: float            # t quantile, n − 2 degrees of freedom

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
    raise ValueError(f"a line with a confidence interval needs >= 3 points and two distinct x, "
                     f"got n={n}")
  slope = float(np.sum((x - x_mean) * (y - y.mean())) / x_ss)
  intercept = float(y.mean() - slope * x_mean)
  residual_sd = float(np.sqrt(np.sum((y - slope * x - intercept) ** 2) / (n - 2)))
  t = float(scipy.stats.t.ppf(0.5 + confidence / 2, n - 2))
  half = float(t * residual_sd / np.sqrt(x_ss))
  return LineFit(slope=slope, slope_low=slope - half, slope_high=slope + half,
                 intercept=intercept, r2=r_squared(y, slope * x + intercept), n=n,
                 residual_sd=residual_sd, x_mean=float(x_mean), x_ss=x_ss, t=t)


class LawFit(NamedTuple):
  """One law fitted to (L, d): its exponent-like parameter with CI and R² on d."""

  law: str            # "log": d = a ln L + b;  "power": d = c L^α
  param: float        # a or α
  param_low: float
  param_high: float
  constant: float     # b or c
  r2: float           # R² of the law's prediction of d
  n: int
  line: LineFit       # the underlying line: d on ln L, or ln d on ln L

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
  return LawFit("log", line.slope, line.slope_low, line.slope_high, line.intercept, line.r2,
                line.n, line)


def fit_power_law(length: np.ndarray, d: np.ndarray, confidence: float = 0.95) -> LawFit:
  """d = c · L^α by OLS of ln d on ln L; α with its t interval, R² on d."""
  length, d = np.asarray(length, float), np.asarray(d, float)
  line = fit_line(np.log(length), np.log(d), confidence)
  fit = LawFit("power", line.slope, line.slope_low, line.slope_high, float(np.exp(line.intercept)),
               float("nan"), line.n, line)
  return fit._replace(r2=r_squared(d, fit.predict(length)))
