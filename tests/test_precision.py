"""precision_bits against a brute-force rounding in NumPy, checked densely in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattn as ja
from jaxattn._src.precision import round_fixed_point
from tests.cases import noisy_target_solution
from tests.reference import logit_figures, reference_ok

EPS1 = EPS2 = 0.5
LENGTH = 32


def _matrix(nnz: int, seed: int = 0) -> np.ndarray:
  """A_{i, i + 5k mod L}, k < N, weights in [0.2, 1]: N per row and column."""
  rng = np.random.default_rng(seed)
  a = np.zeros((LENGTH, LENGTH))
  rows = np.arange(LENGTH)
  for k in range(nnz):
    a[rows, (rows + 5 * k) % LENGTH] = rng.uniform(0.2, 1.0, LENGTH)
  return a


def _rounded(matrix: np.ndarray, bits: int) -> np.ndarray:
  """The matrix in b-bit fixed point, by hand: the nearest multiple of max|entry|·2^(1−b)."""
  step = np.abs(matrix).max() * 2.0 ** (1 - bits)
  return np.round(matrix / step) * step


def _dense_checks(solution, a: np.ndarray, max_outside_mass=None) -> list[bool]:
  """For b = 1..24: whether Q, K of the solution rounded to b bits by hand verify, by the float64
  dense reference (ratio, leak and, with η, outside mass)."""
  x, w_q, w_k = (np.asarray(m, np.float64) for m in solution)
  queries, keys = x @ w_q, x @ w_k
  checks = []
  for bits in range(1, 25):
    figures = logit_figures(_rounded(queries, bits) @ _rounded(keys, bits).T, a)
    mass_ok = max_outside_mass is None or figures["outside_mass_max"] <= max_outside_mass
    checks.append(reference_ok(figures, EPS1, EPS2) and mass_ok)
  return checks


def _brute_threshold(checks: list[bool]) -> int | None:
  """min{b : the dense check passes at every b′ ∈ [b, 24]}, from the checks of every b."""
  if not checks[-1]:
    return None
  failing = [b for b, ok in zip(range(1, 25), checks) if not ok]
  return failing[-1] + 1 if failing else 1


@pytest.mark.parametrize("method, d, seed", [("jl", 768, 3), ("lstsq", 24, 1)])
def test_bits_are_the_brute_force_threshold(method, d, seed):
  """b* from every b′ checked by hand-rounding and the dense float64 check. The jl case is not
  monotone in b (b = 3 passes, 4 and 5 fail, 6.. pass): guards against a bisection, which
  assumes monotonicity (it would return 3), and against the step off by a power of two."""
  a = _matrix(2)
  pattern = ja.SparsePattern.from_dense(a)
  solution = ja.construct.build(method, jax.random.PRNGKey(seed), pattern, d, eps1=EPS1, eps2=EPS2)
  checks = _dense_checks(solution, a)
  bits = ja.precision_bits(solution, pattern, eps1=EPS1, eps2=EPS2)
  assert bits == _brute_threshold(checks) and bits >= 2
  if method == "jl":
    assert checks[bits - 4] and not checks[bits - 2]  # b* − 3 passes, b* − 1 fails


def test_mass_criterion_bits_and_none_when_nothing_verifies():
  """With η the threshold is that of the dense mass check, above the ratio one; a solution
  that does not verify at 24 bits (built for the ratio criterion) gets None."""
  a = _matrix(1)
  pattern = ja.SparsePattern.from_dense(a)
  solution = noisy_target_solution(pattern, 0.2, EPS1, EPS2, max_outside_mass=0.1)
  bits = ja.precision_bits(solution, pattern, eps1=EPS1, eps2=EPS2, max_outside_mass=0.1)
  assert bits is not None and bits == _brute_threshold(_dense_checks(solution, a, 0.1))
  assert bits > ja.precision_bits(solution, pattern, eps1=EPS1, eps2=EPS2)
  ratio_built = noisy_target_solution(pattern, 0.2, EPS1, EPS2)
  assert ja.precision_bits(ratio_built, pattern, eps1=EPS1, eps2=EPS2, max_outside_mass=0.1) is None
  assert _brute_threshold(_dense_checks(ratio_built, a, 0.1)) is None


def test_round_fixed_point_is_the_nearest_grid_point():
  x = jnp.asarray([[0.3, -1.0], [0.74, 0.0]], jnp.float32)
  np.testing.assert_allclose(round_fixed_point(x, 3), [[0.25, -1.0], [0.75, 0.0]])
  np.testing.assert_array_equal(round_fixed_point(jnp.zeros((2, 2)), 4), 0.0)


def test_bad_arguments():
  pattern = ja.SparsePattern.from_dense(_matrix(1))
  solution = noisy_target_solution(pattern, 0.0, EPS1, EPS2)
  for kwargs in ({"max_outside_mass": 1.0}, {"max_bits": 0}):
    with pytest.raises(ValueError):
      ja.precision_bits(solution, pattern, eps1=EPS1, eps2=EPS2, **kwargs)
  with pytest.raises(ValueError, match="length"):
    ja.precision_bits(solution, ja.SparsePattern.from_dense(np.eye(9)), eps1=EPS1, eps2=EPS2)
