"""The reference method "onehot": K = I, Q_i = B_i verifies every pattern at d = L, none below."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattn as ja
from tests.reference import reference_figures, reference_ok

KEY = jax.random.PRNGKey(2)
EPS1, EPS2 = 0.5, 0.5
LENGTH = 32


def _patterns():
  yield "random_regular", ja.patterns.random_regular(KEY, length=LENGTH, nnz=3, a_min=0.1)
  yield "banded", ja.patterns.banded(KEY, length=LENGTH, nnz=5, a_min=0.3)
  yield "longformer+globals", ja.patterns.Longformer(window=2, globals=2)(KEY, LENGTH)
  yield "bigbird", ja.patterns.BigBird(block=2, random_blocks=1)(KEY, LENGTH, a_min=0.2)
  yield "fixed", ja.patterns.SparseTransformerFixed(block=4, summary=1)(KEY, LENGTH)
  yield "lsh", ja.patterns.ReformerLSH(chunk=4, buckets=4, hashes=2)(KEY, LENGTH)
  points = np.random.default_rng(0).normal(size=(LENGTH, 3))
  yield "knn", ja.patterns.knn(points, 3)


@pytest.mark.parametrize("name, pattern", list(_patterns()), ids=[n for n, _ in _patterns()])
def test_verifies_at_d_equal_length(name, pattern):
  sol = ja.construct.onehot(KEY, pattern, LENGTH, eps1=EPS1, eps2=EPS2)
  report = ja.verify(sol, pattern, eps1=EPS1, eps2=EPS2)
  assert bool(report.ok), name
  assert reference_ok(reference_figures(sol.X, sol.w_q, sol.w_k, pattern.to_dense()), EPS1, EPS2)
  target = np.zeros((LENGTH, LENGTH))
  logits = np.asarray(ja.construct.target_logits(pattern, EPS1, EPS2))
  rows = np.broadcast_to(np.arange(LENGTH)[:, None], logits.shape)
  valid = np.asarray(pattern.sparse_valid)  # a dense row (global tokens) has q_i = 0: ℓ_i = 0
  target[rows[valid], np.asarray(pattern.cols)[valid]] = logits[valid]
  np.testing.assert_array_equal(np.asarray(sol.logits()), target)  # ℓ = B exactly


def test_fails_below_length_and_pads_above():
  pattern = ja.patterns.banded(KEY, length=LENGTH, nnz=3, a_min=0.5)  # row L−1 attends key L−1
  assert not bool(
    ja.verify(
      ja.construct.onehot(KEY, pattern, LENGTH - 1, eps1=EPS1, eps2=EPS2),
      pattern,
      eps1=EPS1,
      eps2=EPS2,
    ).ok
  )
  queries, keys = ja.construct.METHODS["onehot"](
    KEY, pattern, jnp.asarray(LENGTH), LENGTH + 8, EPS1, EPS2
  )
  np.testing.assert_array_equal(np.asarray(keys), np.eye(LENGTH, LENGTH + 8))
  assert not np.asarray(queries)[:, LENGTH:].any()


def test_mass_criterion_at_d_equal_length():
  pattern = ja.patterns.random_regular(KEY, length=LENGTH, nnz=2, a_min=0.2)
  sol = ja.construct.onehot(KEY, pattern, LENGTH, eps1=EPS1, eps2=EPS2, max_outside_mass=0.01)
  assert bool(ja.verify(sol, pattern, eps1=EPS1, eps2=EPS2, max_outside_mass=0.01).ok)
  plain = ja.construct.onehot(KEY, pattern, LENGTH, eps1=EPS1, eps2=EPS2)
  assert not bool(ja.verify(plain, pattern, eps1=EPS1, eps2=EPS2, max_outside_mass=0.01).ok)
