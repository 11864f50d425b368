"""Certified verdicts: a sound bound on every rounding of the streamed pass, and rows sorted into
certainly ok, certainly failing and undecided (docs/certified.md).

The truth is exact real arithmetic on the stored factors Q, K and the stored
weights A. The device computes, in floating point, ŝ_i ≈ spread_i and
ĝ_i ≈ gap_i (docs/definitions.md) together with bounds

  |ŝ_i − spread_i| ≤ σ_i,   |ĝ_i − gap_i| ≤ τ_i,

and a row is certainly ok when ŝ_i + σ_i < t1⁻ and ĝ_i + τ_i < t2⁻,
certainly failing when ŝ_i − σ_i > t1⁺ or ĝ_i − τ_i > t2⁺, and undecided
otherwise; t1 = ln(1 + ε1) and t2 = ln ε2 are computed on the host in
float64, widened by one ulp and rounded outwards to the device dtype
(``Thresholds``). The strict comparisons of rounded sums are sound under
round-to-nearest: fl(a + b) < t for a float t implies a + b < t.

The bound of one logit ℓ_ij = s_g Σ_{c<d} q_ic k_jc (scale s_g = d_max/d_g
of a nested level, 1 otherwise), with Q, K rounded to the matmul format
(unit roundoff u_in; 0 when the stored factors are used as they are) and d
products accumulated with unit roundoff u (Higham 2002, §3.1; Blanchard et
al. 2020 for rounded inputs):

  |fl(ℓ_ij) − ℓ_ij| ≤ s_g (β_d ‖q_i‖ κ + φ_d (1 + ‖q_i‖)(1 + κ)) (1 + u)² + 3u·s_g ‖q_i‖ κ,
  β_d = (1 + u_in)² − 1 + γ_{d+1}(u)(1 + u_in)²,   γ_n(u) = n u / (1 − n u),
  κ = max_j ‖k_j‖ (prefix norms of the stored keys),   φ_d = (d + 2)·2⁻¹²⁶ (subnormals flushed),

where γ_{d+1} covers the d − 1 additions in any order plus one rounding per
product (exact for bfloat16 inputs, rounded for float32 ones), and the
last terms the rounded scale fl(d_max/d_g) and its multiply. ln A is
XLA's ``log`` in the evaluation dtype, normalised per row; its error is
modelled as ``LOG_ULPS`` units of u of |ln w| per weight (validated per
backend in tests/test_certify.py). The spread and gap add the errors of
their operands and of their own subtractions; every norm and bound is
computed in the device dtype and inflated for its own rounding.

The model is per backend (``ROUNDING_MODELS``): the CPU rounds to nearest
in any summation order. GPU tensor cores truncate when accumulating and a
TPU's float32 product is a multi-pass bfloat16 product; they have no
validated model yet, and verdicts there report ``certified`` False.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

# Row states of the first passes.
CERTAIN_FAIL, CERTAIN_OK, UNDECIDED = 0, 1, -1
# The error of XLA's ``log`` in units of u·|ln w| (measured ≤ 1 on the CPU; tests/test_certify.py).
LOG_ULPS = 4
# Matmul formats of certified verification: the unit roundoff of the factors' rounding.
MATMUL_FORMATS = {"float32": None, "bfloat16": jnp.bfloat16}


class RoundingModel(NamedTuple):
  """How a backend rounds the products of the streamed pass.

  ``truncating``: accumulation rounds toward zero (an error of 2u per
  addition rather than u); ``validated``: the model has been checked
  against exact products on this backend (only then are verdicts certified).
  """

  truncating: bool
  validated: bool


ROUNDING_MODELS = {
  "cpu": RoundingModel(truncating=False, validated=True),
  # Tensor cores: truncated accumulation (Fasi, Higham, Mikaitis & Pranesh 2021); to be
  # validated by bench/device_check.sh.
  "gpu": RoundingModel(truncating=True, validated=False),
}


def rounding_model(backend: str | None = None) -> RoundingModel:
  """The backend's model (default: JAX's default backend); unlisted backends are unvalidated."""
  return ROUNDING_MODELS.get(
    backend or jax.default_backend(), RoundingModel(truncating=True, validated=False)
  )


def unit_roundoff(dtype) -> float:
  """u = 2^−p of a floating dtype with p significand bits (2⁻²⁴ float32, 2⁻⁸ bfloat16)."""
  return float(jnp.finfo(dtype).eps) / 2


def certifiable(dtype, max_outside_mass=None, backend: str | None = None) -> bool:
  """Whether verdicts in evaluation ``dtype`` can be certified: float32 or float64, the ratio
  criterion (the outside mass has no bound), and a validated rounding model on ``backend``."""
  return (
    jnp.dtype(dtype) in (jnp.float32, jnp.float64)
    and max_outside_mass is None
    and rounding_model(backend).validated
  )


class Thresholds(NamedTuple):
  """t1 = ln(1 + ε1) and t2 = ln ε2 bracketed in the device dtype: t1_below ≤ t1 ≤ t1_above."""

  ratio_below: Float[Array, ""]
  ratio_above: Float[Array, ""]
  gap_below: Float[Array, ""]
  gap_above: Float[Array, ""]


def _outward(value: float, dtype) -> tuple[np.floating, np.floating]:
  """(largest ``dtype`` number ≤ v⁻, smallest ≥ v⁺), v± = ``value`` widened by one float64 ulp."""
  below, above = np.nextafter(value, -np.inf), np.nextafter(value, np.inf)
  scalar = np.dtype(dtype).type
  low, high = scalar(below), scalar(above)  # round to nearest, then step outwards if needed
  if float(low) > below:
    low = np.nextafter(low, scalar(-np.inf))
  if float(high) < above:
    high = np.nextafter(high, scalar(np.inf))
  return low, high


def thresholds(eps1: float, eps2: float, dtype=jnp.float32) -> Thresholds:
  """``Thresholds`` of ln(1 + ε1) and ln ε2, computed on the host in float64. Traced ε (inside
  ``jit``) get the device's log1p and log in ``dtype`` instead, unwidened: fit for uncertified
  verdicts only."""
  if any(isinstance(x, jax.core.Tracer) for x in (eps1, eps2)):
    ratio, gap = jnp.log1p(jnp.asarray(eps1, dtype)), jnp.log(jnp.asarray(eps2, dtype))
    return Thresholds(ratio, ratio, gap, gap)
  ratio_below, ratio_above = _outward(math.log1p(float(eps1)), dtype)
  gap_below, gap_above = _outward(math.log(float(eps2)), dtype)
  return Thresholds(*(jnp.asarray(x) for x in (ratio_below, ratio_above, gap_below, gap_above)))


def gamma(n: Array | int, u: float) -> Array:
  """γ_n(u) = n u / (1 − n u); +inf once n u ≥ 1 (no bound)."""
  nu = jnp.asarray(n, jnp.float32) * u
  return jnp.where(nu < 1, nu / (1 - nu), jnp.inf)


def logit_factor(
  dims: Int[Array, " G"], u_in: float, u: float, truncating: bool
) -> Float[Array, " G"]:
  """β_d = (1 + u_in)² − 1 + γ_{d+1}(u')(1 + u_in)² per level, u' = 2u if accumulation truncates."""
  u_acc = 2 * u if truncating else u
  grow = (1 + u_in) ** 2
  return (grow - 1) + gamma(dims + 1, u_acc) * grow


class Bounds(NamedTuple):
  """Per-level norms the pass's bounds need: ‖q_i‖ per row and κ = max_j ‖k_j‖, of prefixes."""

  query_norms: Float[Array, "L G"]
  key_norm: Float[Array, " G"]


def prefix_norms(x: Float[Array, "L w"], splits: tuple[int, ...], u: float) -> Float[Array, "L G"]:
  """‖x_{i, :d_g}‖₂ for every row and split, inflated by (1 + (d_g + 4)·2u) for their own rounding.

  Each row is first divided, exactly, by the power of two 2^(e−1) ≤ max_c |x_ic| < 2^e (at
  least the smallest normal number), so that no square underflows or overflows: a square below
  the smallest normal number would count as 0 (XLA flushes subnormals) while the entry's
  products with large keys are normal and round (docs/certified.md). An entry that underflows
  after the division is below 2⁻¹²⁵ of the row's largest: its square is far inside the
  inflation.
  """
  x = x.astype(jnp.float32) if x.dtype != jnp.float64 else x
  _, exponent = jnp.frexp(jnp.max(jnp.abs(x), axis=-1, keepdims=True))
  smallest = jnp.finfo(x.dtype).minexp  # 2^minexp, the smallest normal number: the least scale
  scale = jnp.ldexp(jnp.ones((), x.dtype), jnp.maximum(exponent - 1, smallest))
  x = x / scale
  prefix = (jnp.arange(x.shape[-1])[:, None] < jnp.asarray(splits)).astype(x.dtype)
  squares = jax.lax.dot_general(
    x * x, prefix, (((1,), (0,)), ((), ())), precision=jax.lax.Precision.HIGHEST
  )
  inflate = 1 + (jnp.asarray(splits, x.dtype) + 4) * 2 * u
  return jnp.sqrt(squares) * scale * inflate


def spread_and_gap_bounds(
  spread: Float[Array, "G R"],
  gap: Float[Array, "G R"],
  query_norms: Float[Array, "G R"],
  key_norm: Float[Array, " G"],
  scales: Float[Array, " G"],
  factor: Float[Array, " G"],
  dims: Int[Array, " G"],
  log_abs_max: Float[Array, " R"],
  log_norm_abs: Float[Array, " R"],
  u: float,
) -> tuple[Float[Array, "G R"], Float[Array, "G R"]]:
  """(σ, τ): bounds on |ŝ − spread| and |ĝ − gap| (module docstring).

  With λ = s_g ‖q_i‖ κ (≥ every |ℓ_ij| of the row), e_ℓ the logit bound and
  e_ln = ``LOG_ULPS``·u·2 max|ln w| + u·max|l̂| the bound on the normalised ln A:

    σ = 2 (e_ℓ + e_ln + 2u (λ (1 + β) + e_ℓ + max|l̂|)) + 2u |ŝ|,
    τ = 2 e_ℓ + 2u |ĝ|          (0 for a row with no key outside its support),

  each inflated by (1 + 2⁻¹⁶) for the rounding of the bound itself.
  """
  scales = scales[:, None]
  reach = scales * query_norms * key_norm[:, None]
  tiny = (dims[:, None] + 2) * 2.0**-126 * (1 + query_norms) * (1 + key_norm[:, None])
  logit = (
    scales * (factor[:, None] * query_norms * key_norm[:, None] + tiny) * (1 + u) ** 2
    + 3 * u * reach
  )
  log_w = LOG_ULPS * u * 2 * log_abs_max + u * log_norm_abs
  shifted = logit + log_w + 2 * u * (reach * (1 + factor[:, None]) + logit + log_norm_abs)
  inflate = 1 + 2.0**-16
  sigma = (2 * shifted + 2 * u * jnp.abs(spread)) * inflate
  tau = jnp.where(jnp.isneginf(gap), 0.0, (2 * logit + 2 * u * jnp.abs(gap)) * inflate)
  return sigma, tau


def row_states(
  spread: Float[Array, "... L"],
  gap: Float[Array, "... L"],
  sigma: Float[Array, "... L"],
  tau: Float[Array, "... L"],
  limits: Thresholds,
) -> Int[Array, "... L"]:
  """``CERTAIN_OK``, ``CERTAIN_FAIL`` or ``UNDECIDED`` per row (int8).

  ok when ŝ + σ < t1⁻ and ĝ + τ < t2⁻ (a gap of −inf: nothing outside);
  failing when ŝ − σ > t1⁺ or ĝ − τ > t2⁺; NaN figures stay undecided.
  """
  gap_ok = jnp.isneginf(gap) | (gap + tau < limits.gap_below)
  ok = (spread + sigma < limits.ratio_below) & gap_ok
  fails = (spread - sigma > limits.ratio_above) | (gap - tau > limits.gap_above)
  return jnp.where(ok, CERTAIN_OK, jnp.where(fails, CERTAIN_FAIL, UNDECIDED)).astype(jnp.int8)


def level_states(states: Int[Array, "... G L"]) -> Int[Array, "... G"]:
  """A level's verdict from its rows: failing if any row certainly fails, ok if all are certainly
  ok, else undecided."""
  fails = jnp.any(states == CERTAIN_FAIL, -1)
  ok = jnp.all(states == CERTAIN_OK, -1)
  return jnp.where(fails, CERTAIN_FAIL, jnp.where(ok, CERTAIN_OK, UNDECIDED)).astype(jnp.int8)
