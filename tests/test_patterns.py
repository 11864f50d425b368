"""Generators: row/column bounds, weights, determinism, jit/vmap."""

import chex
import jax
import numpy as np
import pytest

import jaxattn as ja

GENERATORS = sorted(ja.patterns.GENERATORS)


def _counts(p):
  dense = np.asarray(p.to_dense()) > 0
  return dense.sum(1), dense.sum(0)


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("length, nnz", [(12, 3), (17, 4), (8, 1), (6, 6)])
def test_row_and_column_bounds(name, length, nnz):
  p = ja.patterns.GENERATORS[name](jax.random.PRNGKey(length), length=length, nnz=nnz, a_min=0.2)
  chex.assert_shape([p.cols, p.weights, p.valid], (length, nnz))
  rows, cols = _counts(p)
  assert rows.min() >= 1 and rows.max() <= nnz and cols.max() <= nnz
  # the dense matrix holds every valid slot: no two valid slots share a column
  assert rows.sum() == int(np.asarray(p.valid).sum())
  if name in ("random_regular", "strided"):
    np.testing.assert_array_equal(rows, nnz)
    np.testing.assert_array_equal(cols, nnz)
  weights = np.asarray(p.weights)[np.asarray(p.valid)]
  assert weights.min() >= 0.2 * (1 - 1e-6) and weights.max() <= 1.0


@pytest.mark.parametrize("name", GENERATORS)
def test_deterministic_and_vmappable(name):
  generator = ja.patterns.GENERATORS[name]
  keys = jax.random.split(jax.random.PRNGKey(3), 4)
  batch = jax.vmap(lambda k: generator(k, length=16, nnz=3, a_min=0.1))(keys)
  chex.assert_shape(batch.cols, (4, 16, 3))
  single = generator(keys[2], length=16, nnz=3, a_min=0.1)
  chex.assert_trees_all_equal(jax.tree.map(lambda x: x[2], batch), single)
  chex.assert_trees_all_equal(single, generator(keys[2], length=16, nnz=3, a_min=0.1))


def test_random_regular_differs_across_keys():
  a = ja.patterns.random_regular(jax.random.PRNGKey(0), length=64, nnz=2)
  b = ja.patterns.random_regular(jax.random.PRNGKey(1), length=64, nnz=2)
  assert not np.array_equal(a.to_dense() > 0, b.to_dense() > 0)


def test_banded_window():
  p = ja.patterns.banded(jax.random.PRNGKey(0), length=6, nnz=3, a_min=1.0)
  np.testing.assert_array_equal(
    np.asarray(p.to_dense()) > 0, np.abs(np.subtract.outer(np.arange(6), np.arange(6))) <= 1
  )


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(length=4, nnz=5), "nnz <= length"),
    (dict(length=4, nnz=0), "nnz <= length"),
    (dict(length=4, nnz=2, a_min=0.0), "a_min"),
    (dict(length=4, nnz=2, a_min=1.5), "a_min"),
  ],
)
@pytest.mark.parametrize("name", GENERATORS)
def test_bad_arguments(name, kwargs, message):
  with pytest.raises(ValueError, match=message):
    ja.patterns.GENERATORS[name](jax.random.PRNGKey(0), **kwargs)


def test_strided_rejects_repeated_offsets():
  with pytest.raises(ValueError, match="stride"):
    ja.patterns.strided(jax.random.PRNGKey(0), length=8, nnz=3, stride=4)
