"""The mass criterion (max_outside_mass = η) against a dense float64 softmax in NumPy."""

import jax
import numpy as np
import pytest

import jaxattn as ja
from jaxattn.construct import target_logits
from tests.cases import noisy_target_solution
from tests.reference import reference_figures

EPS1, EPS2 = 0.5, 0.5
LENGTH = 40


def _matrix(seed: int = 0) -> np.ndarray:
  """A_ii, and A_{i, i+7} in every other row: rows of 1 and 2 nonzeros, weights in [0.2, 1]."""
  rng = np.random.default_rng(seed)
  a = np.diag(rng.uniform(0.2, 1.0, LENGTH))
  rows = np.arange(0, LENGTH, 2)
  a[rows, (rows + 7) % LENGTH] = rng.uniform(0.2, 1.0, rows.size)
  return a


def _dense(logits: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(ratio and zeros conditions per row, outside mass per row) of row-softmax(ℓ), in float64."""
  support = a > 0
  p = np.exp(logits - logits.max(axis=1, keepdims=True))
  p /= p.sum(axis=1, keepdims=True)
  ratio = np.log(np.where(support, p / np.where(support, a, 1.0), np.nan))
  ratio_ok = np.expm1(np.nanmax(ratio, 1) - np.nanmin(ratio, 1)) <= EPS1
  leak_ok = np.where(support, -np.inf, p).max(1) <= EPS2 * np.where(support, p, np.inf).min(1)
  return ratio_ok & leak_ok, np.where(support, 0.0, p).sum(1)


@pytest.mark.parametrize("built_for", [None, 0.1])
@pytest.mark.parametrize("eta", [0.02, 0.1, 0.6])
def test_verify_under_mass_matches_dense_softmax(built_for, eta):
  """ok and row_ok under η against the dense softmax, row by row; guards a verdict or a row
  verdict that ignores the mass, and an outside mass that includes the support."""
  a = _matrix()
  pattern = ja.SparsePattern.from_dense(a)
  solution = noisy_target_solution(pattern, 0.15, EPS1, EPS2, max_outside_mass=built_for)
  conditions, mass = _dense(np.asarray(solution.logits(), np.float64), a)
  report = ja.verify(solution, pattern, eps1=EPS1, eps2=EPS2, max_outside_mass=eta)
  np.testing.assert_array_equal(report.row_ok, conditions & (mass <= eta))
  assert bool(report.ok) == bool(np.all(conditions & (mass <= eta)))
  np.testing.assert_allclose(float(report.outside_mass_max), mass.max(), rtol=1e-4)
  assert float(report.max_outside_mass) == pytest.approx(eta)


def test_ratio_passes_where_mass_fails():
  """A solution built for (ε1, ε2) alone passes them with most of its mass outside the support;
  the mass criterion rejects it, and the one built for η passes both (dense check agrees)."""
  a = _matrix()
  pattern = ja.SparsePattern.from_dense(a)
  ratio_built = noisy_target_solution(pattern, 0.05, EPS1, EPS2)
  mass_built = noisy_target_solution(pattern, 0.05, EPS1, EPS2, max_outside_mass=0.1)
  figures = reference_figures(*ratio_built, a)
  assert figures["ratio_error"] <= EPS1 and figures["leak"] <= EPS2
  assert figures["outside_mass_max"] > 0.9
  assert bool(ja.verify(ratio_built, pattern, eps1=EPS1, eps2=EPS2).ok)
  assert not bool(ja.verify(ratio_built, pattern, eps1=EPS1, eps2=EPS2, max_outside_mass=0.1).ok)
  assert not ja.reference.dense_check(
    *ratio_built, a, eps1=EPS1, eps2=EPS2, max_outside_mass=0.1
  ).ok
  assert bool(ja.verify(mass_built, pattern, eps1=EPS1, eps2=EPS2, max_outside_mass=0.1).ok)
  assert ja.reference.dense_check(*mass_built, a, eps1=EPS1, eps2=EPS2, max_outside_mass=0.1).ok
  assert float(ja.verify(ratio_built, pattern, eps1=EPS1, eps2=EPS2).max_outside_mass) == np.inf


@pytest.mark.parametrize("eta", [0.01, 0.1, 0.3])
def test_mass_shift_puts_exactly_the_designed_mass_outside(eta):
  """Exact target logits B: where the mass shift binds, the dense outside mass of row i is
  1/(1 + (1 + ε1)(1 − η)/η) (< η, the margin ln(1 + ε1)); elsewhere B is the ratio target.
  Guards L − |S_i| and w_i = Σ_{S_i} A_ij / max A in the shift."""
  a = _matrix()
  pattern = ja.SparsePattern.from_dense(a)
  ratio, mass = (np.asarray(target_logits(pattern, EPS1, EPS2, m)) for m in (None, eta))
  exact = noisy_target_solution(pattern, 0.0, EPS1, EPS2, max_outside_mass=eta)
  _, outside = _dense(np.asarray(exact.logits(), np.float64), a)
  binds = np.any(mass > ratio + 1e-6, axis=-1)
  designed = 1 / (1 + (1 + EPS1) * (1 - eta) / eta)
  np.testing.assert_allclose(outside[binds], designed, rtol=1e-4)
  np.testing.assert_allclose(mass[~binds], ratio[~binds])
  assert binds.any() and np.all(outside <= eta)
  assert ja.theory.jl_dim(
    LENGTH, 2, eps1=EPS1, eps2=EPS2, a_min=0.2, max_outside_mass=eta
  ) >= ja.theory.jl_dim(LENGTH, 2, eps1=EPS1, eps2=EPS2, a_min=0.2)


def test_min_d_verdicts_under_mass_are_the_dense_checks_of_built_solutions():
  """Every trial's verdict at every grid d (nested prefixes, one streamed pass with the outside
  log-sum-exp) equals the dense float64 check of jl built for η at that d alone; guards a
  search that does not stream the mass (every verdict would pass) or builds for the ratio."""
  sampler = ja.patterns.Sampler("banded", 16, 1, 0.2)
  grid, eta, key = (64, 256, 1024), 0.3, jax.random.PRNGKey(0)
  result = ja.min_d(
    key, sampler, grid, eps1=EPS1, eps2=EPS2, trials=2, delta=0.5, max_outside_mass=eta
  )
  dense = []
  for pattern_key, method_key in zip(*ja.trial_keys(key, 2)):
    pattern = sampler(pattern_key)
    a = np.asarray(pattern.to_dense())
    solutions = [
      ja.construct.jl(method_key, pattern, d, eps1=EPS1, eps2=EPS2, max_outside_mass=eta)
      for d in grid
    ]
    logits = [
      (x @ w_q) @ (x @ w_k).T
      for x, w_q, w_k in ((np.asarray(m, np.float64) for m in s) for s in solutions)
    ]
    dense.append([np.all(ok & (mass <= eta)) for ok, mass in (_dense(ell, a) for ell in logits)])
  np.testing.assert_array_equal(result.verdicts, dense)
  assert not np.all(dense) and np.any(dense)


def test_bad_eta():
  pattern = ja.SparsePattern.from_dense(_matrix())
  for eta in (0.0, 1.0, -0.1, 2.0):
    with pytest.raises(ValueError, match="max_outside_mass"):
      ja.verify(
        noisy_target_solution(pattern, 0.0, EPS1, EPS2),
        pattern,
        eps1=EPS1,
        eps2=EPS2,
        max_outside_mass=eta,
      )
    with pytest.raises(ValueError, match="max_outside_mass"):
      ja.min_d(
        jax.random.PRNGKey(0),
        ja.patterns.Sampler("banded", 8, 1),
        (4,),
        eps1=EPS1,
        eps2=EPS2,
        max_outside_mass=eta,
      )
