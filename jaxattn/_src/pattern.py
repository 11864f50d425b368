"""Sparse attention patterns: at most N nonzeros in every row and every column.

A pattern A ∈ R^{L×L} is stored row-wise, padded to N slots per row:

  cols[i, k]    the column of the k-th nonzero of row i          int32 [L, N]
  weights[i, k] its value A[i, cols[i, k]] > 0                   float [L, N]
  valid[i, k]   whether slot k of row i holds a nonzero           bool  [L, N]

Padding slots (``valid == False``) repeat a column of their row with weight 1,
so every gather stays in bounds and ``log(weights)`` stays finite.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray


class SparsePattern(NamedTuple):
  """Row-padded sparse pattern A with ≤ N nonzeros per row and per column.

  S_i = {cols[i, k] : valid[i, k]} is the support of row i. Only ratios within
  a row matter, so rows need not be normalised.
  """

  cols: Int[Array, "L N"]
  weights: Float[Array, "L N"]
  valid: Bool[Array, "L N"]

  @property
  def length(self) -> int:
    """L, the sequence length."""
    return self.cols.shape[-2]

  @property
  def nnz(self) -> int:
    """N, the bound on nonzeros per row and per column."""
    return self.cols.shape[-1]

  @property
  def log_weights(self) -> Float[Array, "L N"]:
    """ln A_ij on the support, normalised so that each row's largest is 0; 0 on padding."""
    log_w = jnp.where(self.valid, jnp.log(self.weights), -jnp.inf)
    row_max = jnp.max(log_w, axis=-1, keepdims=True)
    return jnp.where(self.valid, log_w - row_max, 0.0)

  @property
  def row_a_min(self) -> Float[Array, " L"]:
    """min_{j∈S_i} A_ij / max_{j∈S_i} A_ij for every row i."""
    return jnp.exp(jnp.min(self.log_weights, axis=-1))

  @property
  def a_min(self) -> Float[Array, ""]:
    """a_min = min_i (smallest nonzero / largest nonzero in row i)."""
    return jnp.min(self.row_a_min, axis=-1)

  def to_dense(self) -> Float[Array, "L L"]:
    """The dense L×L matrix A (for small L)."""
    rows = jnp.broadcast_to(jnp.arange(self.length)[:, None], self.cols.shape)
    values = jnp.where(self.valid, self.weights, 0.0)
    dense = jnp.zeros((self.length, self.length), self.weights.dtype)
    return dense.at[rows, self.cols].add(values)

  def to_scipy(self) -> scipy.sparse.csr_array:
    """A as a ``scipy.sparse.csr_array`` (host copy)."""
    valid = np.asarray(self.valid)
    rows = np.broadcast_to(np.arange(self.length)[:, None], valid.shape)
    return scipy.sparse.csr_array(
        (np.asarray(self.weights)[valid], (rows[valid], np.asarray(self.cols)[valid])),
        shape=(self.length, self.length))

  def keep_top_n(self, top_n: int) -> tuple[SparsePattern, np.ndarray]:
    """The pattern keeping the ``top_n`` largest entries of every row, and each row's dropped share.

    Within a row, entries are ranked by weight, largest first, ties broken
    by the smaller column. Returns the new pattern (N = min(top_n, old N))
    and, per row, Σ(dropped weights) / Σ(weights). ValueError unless
    top_n ≥ 1. Host-side (NumPy).
    """
    if isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)) or top_n < 1:
      raise ValueError(f"top_n must be a positive integer, got {top_n!r}")
    cols, weights, valid = (np.asarray(x) for x in self)
    order = np.lexsort((cols, -weights, ~valid), axis=-1)
    cols, weights, valid = (np.take_along_axis(x, order, axis=-1) for x in (cols, weights, valid))
    total = np.sum(np.where(valid, weights, 0.0), axis=-1)
    kept = min(top_n, self.nnz)
    dropped = np.sum(np.where(valid[:, kept:], weights[:, kept:], 0.0), axis=-1) / total
    trimmed = SparsePattern(cols=jnp.asarray(cols[:, :kept]),
                            weights=jnp.asarray(weights[:, :kept]),
                            valid=jnp.asarray(valid[:, :kept]))
    return trimmed, dropped

  @classmethod
  def from_dense(cls, a: Any, nnz: int | None = None, *,
                 check_columns: bool = True) -> SparsePattern:
    """Pattern of a dense square matrix (NumPy or JAX); ValueError on bad input.

    With ``nnz=None``, N is the largest nonzero count over rows and columns.
    With ``check_columns=False``, N bounds the rows only and columns may hold
    more than N nonzeros (attention sinks: outside the theorem, but every
    kernel works, the layout being row-wise); ``nnz=None`` then gives the
    largest row count.
    """
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
      raise ValueError(f"A must be a square matrix, got shape {a.shape}")
    rows, cols = np.nonzero(a)
    return _from_coo(rows, cols, a[rows, cols], a.shape[0], nnz, check_columns, dense=a)

  @classmethod
  def from_scipy(cls, a: Any, nnz: int | None = None, *,
                 check_columns: bool = True) -> SparsePattern:
    """Pattern of any ``scipy.sparse`` matrix or array; ValueError on bad input.

    Duplicate entries are summed; stored zeros are ignored. ``nnz`` and
    ``check_columns`` as in ``from_dense``.
    """
    if not scipy.sparse.issparse(a):
      raise ValueError(f"expected a scipy.sparse matrix, got {type(a).__name__}")
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
      raise ValueError(f"A must be a square matrix, got shape {a.shape}")
    coo = scipy.sparse.coo_array(a)
    coo.sum_duplicates()
    _check_values(coo.row, coo.col, coo.data)
    keep = coo.data != 0
    return _from_coo(coo.row[keep], coo.col[keep], coo.data[keep], a.shape[0], nnz,
                     check_columns)


def _check_values(rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
  """ValueError naming the first entry that is NaN, infinite or negative."""
  if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
    raise ValueError(f"A must have real entries, got dtype {values.dtype}")
  bad = ~np.isfinite(values)
  if bad.any():
    k = np.flatnonzero(bad)[0]
    raise ValueError(f"A[{rows[k]}, {cols[k]}] = {values[k]}: entries must be finite")
  bad = values < 0
  if bad.any():
    k = np.flatnonzero(bad)[0]
    raise ValueError(f"A[{rows[k]}, {cols[k]}] = {values[k]}: entries must be >= 0")


def _from_coo(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, length: int,
              nnz: int | None, check_columns: bool = True,
              dense: np.ndarray | None = None) -> SparsePattern:
  """Validated SparsePattern from the nonzero entries of an L×L matrix."""
  if dense is not None:
    # Scan the whole matrix: NaN compares unequal to 0 and is found by nonzero(),
    # but report the first bad entry in row-major order either way.
    bad_rows, bad_cols = np.nonzero(~np.isfinite(dense) | (dense < 0))
    _check_values(bad_rows, bad_cols, dense[bad_rows, bad_cols])
  else:
    _check_values(rows, cols, values)
  if length < 1:
    raise ValueError("A must have at least one row")
  row_counts = np.bincount(rows, minlength=length)
  col_counts = np.bincount(cols, minlength=length)
  empty = np.flatnonzero(row_counts == 0)
  if empty.size:
    raise ValueError(f"row {empty[0]} of A has no nonzero entry; every row needs at least one")
  bounded = (("row", row_counts), ("column", col_counts))[:2 if check_columns else 1]
  if nnz is None:
    nnz = int(max(counts.max() for _, counts in bounded))
  elif isinstance(nnz, bool) or not isinstance(nnz, (int, np.integer)) or nnz < 1:
    raise ValueError(f"nnz must be a positive integer, got {nnz!r}")
  for axis, counts in bounded:
    over = np.flatnonzero(counts > nnz)
    if over.size:
      raise ValueError(f"{axis} {over[0]} of A has {counts[over[0]]} nonzeros, "
                       f"more than nnz={nnz}")
  order = np.lexsort((cols, rows))
  rows, cols, values = rows[order], cols[order], values[order]
  slot = np.arange(rows.size) - np.repeat(np.cumsum(row_counts) - row_counts, row_counts)
  pad_cols = np.repeat(cols[np.cumsum(row_counts) - row_counts][:, None], nnz, axis=1)
  pad_cols[rows, slot] = cols
  weights = np.ones((length, nnz), dtype=np.result_type(values.dtype, np.float32))
  weights[rows, slot] = values
  valid = np.zeros((length, nnz), dtype=bool)
  valid[rows, slot] = True
  return SparsePattern(cols=jnp.asarray(pad_cols, jnp.int32),
                       weights=jnp.asarray(weights, jnp.float32),  # whatever jax_enable_x64 says
                       valid=jnp.asarray(valid))


def from_rows(cols: Int[Array, "L N"], weights: Float[Array, "L N"],
              valid: Bool[Array, "L N"] | None = None) -> SparsePattern:
  """Pattern from row-padded arrays, with padding slots canonicalised.

  Generators use this: slots with ``valid == False`` get the column of the
  row's first valid slot and weight 1. jit-able; performs no validation.
  """
  if valid is None:
    valid = jnp.ones(cols.shape, bool)
  first = jnp.take_along_axis(cols, jnp.argmax(valid, axis=-1)[..., None], axis=-1)
  cols = jnp.where(valid, cols, first).astype(jnp.int32)
  weights = jnp.where(valid, weights, jnp.ones_like(weights))
  return SparsePattern(cols=cols, weights=weights, valid=valid)


def log_uniform(key: PRNGKeyArray, shape: tuple[int, ...], a_min: float) -> Float[Array, "..."]:
  """Samples exp(U(ln a_min, 0)) ∈ [a_min, 1] in float32, whether or not 64-bit JAX is enabled."""
  return jnp.exp(jax.random.uniform(key, shape, jnp.float32, minval=jnp.log(a_min), maxval=0.0))


__all__ = ["SparsePattern", "from_rows", "log_uniform"]
