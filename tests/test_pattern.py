"""SparsePattern: conversions and validation."""

import re

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse

import jaxattn as ja
from jaxattn import SparsePattern


def _example() -> np.ndarray:
  a = np.zeros((5, 5))
  a[0, [1, 3]] = [2.0, 0.5]
  a[1, 0] = 1.0
  a[2, [2, 4]] = [0.3, 0.6]
  a[3, 1] = 4.0
  a[4, [0, 3]] = [1.0, 1.0]
  return a


def test_from_dense_round_trip_numpy_and_jax():
  a = _example()
  for source in (a, jnp.asarray(a)):
    p = SparsePattern.from_dense(source)
    assert (p.length, p.nnz) == (5, 2)
    np.testing.assert_allclose(p.to_dense(), a, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(p.valid).sum(1), (a > 0).sum(1))


def test_nnz_is_max_over_rows_and_columns():
  a = np.zeros((4, 4))
  a[:, 0] = 1.0  # column 0 has 4 nonzeros, rows have 1
  assert SparsePattern.from_dense(a).nnz == 4
  assert SparsePattern.from_dense(a, nnz=5).nnz == 5


def test_a_min_is_min_row_ratio():
  p = SparsePattern.from_dense(_example())
  # row ratios: 0.25, 1, 0.5, 1, 1
  np.testing.assert_allclose(float(p.a_min), 0.25, rtol=1e-6)
  np.testing.assert_allclose(p.row_a_min, [0.25, 1, 0.5, 1, 1], rtol=1e-6)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dok", "bsr", "dia"])
def test_scipy_round_trip_every_format(fmt):
  a = _example()
  sparse = scipy.sparse.csr_matrix(a).asformat(fmt)
  p = SparsePattern.from_scipy(sparse)
  np.testing.assert_allclose(p.to_dense(), a, rtol=1e-6)
  np.testing.assert_allclose(p.to_scipy().toarray(), a, rtol=1e-6)
  assert isinstance(p.to_scipy(), scipy.sparse.csr_array)


def test_from_scipy_ignores_stored_zeros_and_sums_duplicates():
  a = scipy.sparse.coo_array(([1.0, 0.0, 0.5, 0.5], ([0, 0, 1, 1], [1, 0, 0, 0])), shape=(2, 2))
  p = SparsePattern.from_scipy(a)
  np.testing.assert_allclose(p.to_dense(), [[0, 1], [1, 0]])
  assert p.nnz == 1


@pytest.mark.parametrize(
  "entry, message",
  [
    ((2, 4, -0.5), "A[2, 4] = -0.5: entries must be >= 0"),
    ((1, 3, np.nan), "A[1, 3] = nan: entries must be finite"),
    ((3, 0, np.inf), "A[3, 0] = inf: entries must be finite"),
  ],
)
@pytest.mark.parametrize("convert", [np.asarray, scipy.sparse.csr_array])
def test_bad_values_name_the_entry(entry, message, convert):
  a = _example()
  a[entry[0], entry[1]] = entry[2]
  loader = SparsePattern.from_scipy if convert is not np.asarray else SparsePattern.from_dense
  with pytest.raises(ValueError, match=re.escape(message)):
    loader(convert(a))


def test_empty_row_named():
  a = _example()
  a[3] = 0
  with pytest.raises(ValueError, match="row 3 of A has no nonzero"):
    SparsePattern.from_dense(a)
  with pytest.raises(ValueError, match="row 3 of A has no nonzero"):
    SparsePattern.from_scipy(scipy.sparse.csr_array(a))


@pytest.mark.parametrize("shape", [(3, 4), (5,), (2, 2, 2)])
def test_not_square(shape):
  with pytest.raises(ValueError, match="square"):
    SparsePattern.from_dense(np.ones(shape))


def test_row_and_column_over_nnz_named():
  a = np.eye(4)
  a[2, [0, 1]] = 1.0  # row 2 has 3 nonzeros
  with pytest.raises(ValueError, match=r"row 2 of A has 3 nonzeros, more than nnz=2"):
    SparsePattern.from_dense(a, nnz=2)
  b = np.eye(4)
  b[[0, 2, 3], 1] = 1.0  # column 1 has 4 nonzeros
  with pytest.raises(ValueError, match=r"column 1 of A has 4 nonzeros, more than nnz=3"):
    SparsePattern.from_dense(b, nnz=3)


@pytest.mark.parametrize("nnz", [0, -1, 1.5, True])
def test_bad_nnz(nnz):
  with pytest.raises(ValueError, match="nnz"):
    SparsePattern.from_dense(np.eye(3), nnz=nnz)


def test_from_scipy_rejects_dense_input():
  with pytest.raises(ValueError, match="scipy.sparse"):
    SparsePattern.from_scipy(np.eye(3))


def test_from_rows_canonicalises_padding():
  cols = jnp.array([[3, 1], [2, 0], [0, 1], [1, 2]])
  weights = jnp.array([[0.5, 9.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
  valid = jnp.array([[True, False], [False, True], [True, True], [True, True]])
  p = ja.patterns.from_rows(cols, weights, valid)
  np.testing.assert_array_equal(p.cols[:2], [[3, 3], [0, 0]])
  np.testing.assert_array_equal(p.weights[:2], [[0.5, 1.0], [1.0, 1.0]])
  np.testing.assert_allclose(p.to_dense()[:2], [[0, 0, 0, 0.5], [1, 0, 0, 0]])
