"""Sparse attention patterns: at most N nonzeros in every row and every column.

A pattern A ∈ R^{L×L} is stored row-wise, padded to N slots per row:

  cols[i, k]    the column of the k-th nonzero of row i          int32 [L, N]
  weights[i, k] its value A[i, cols[i, k]] > 0                   float [L, N]
  valid[i, k]   whether slot k of row i holds a nonzero           bool  [L, N]

Padding slots (``valid == False``) repeat a column of their row with weight 1,
so every gather stays in bounds and ``log(weights)`` stays finite.

Dense rows are held apart in O(L): ``dense[i]`` flags a row whose support is
every key with A_ij = 1 for all j (a *binary* dense row, such as a global
token's). Its slots hold one placeholder (column i, weight 1, valid in slot 0
only), which kernels that read ``dense`` ignore; ``nnz`` then bounds the
sparse rows only (and the columns, dense rows counted), and memory is
O(L·N + L) instead of O(L²).
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
  dense: Bool[Array, " L"] | None = None  # rows whose support is every key (A_ij = 1); None: none

  @property
  def sparse_valid(self) -> Bool[Array, "L N"]:
    """``valid`` of the sparse rows: False on every slot of a dense row (its placeholder)."""
    return self.valid if self.dense is None else self.valid & ~self.dense[:, None]

  @property
  def length(self) -> int:
    """L, the sequence length."""
    return self.cols.shape[-2]

  @property
  def nnz(self) -> int:
    """N, the bound on nonzeros per sparse row and per column (dense rows apart)."""
    return self.cols.shape[-1]

  @property
  def log_weights(self) -> Float[Array, "L N"]:
    """ln A_ij on the support, normalised so that each row's largest is 0; 0 on padding (and on a
    dense row, whose L weights are ones)."""
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
    """The dense L×L matrix A (for small L); a dense row is L ones."""
    rows = jnp.broadcast_to(jnp.arange(self.length)[:, None], self.cols.shape)
    values = jnp.where(self.sparse_valid, self.weights, 0.0)
    dense = jnp.zeros((self.length, self.length), self.weights.dtype)
    dense = dense.at[rows, self.cols].add(values)
    return dense if self.dense is None else jnp.where(self.dense[:, None], 1.0, dense)

  def to_scipy(self) -> scipy.sparse.csr_array:
    """A as a ``scipy.sparse.csr_array`` (host copy); a dense row is L ones."""
    valid = np.asarray(self.sparse_valid)
    rows = np.broadcast_to(np.arange(self.length)[:, None], valid.shape)
    dense_rows = np.flatnonzero(self.dense_host)
    everywhere = np.arange(self.length)
    return scipy.sparse.csr_array(
      (
        np.concatenate([np.asarray(self.weights)[valid], np.ones(dense_rows.size * self.length)]),
        (
          np.concatenate([rows[valid], np.repeat(dense_rows, self.length)]),
          np.concatenate([np.asarray(self.cols)[valid], np.tile(everywhere, dense_rows.size)]),
        ),
      ),
      shape=(self.length, self.length),
    )

  def counts(self) -> tuple[np.ndarray, np.ndarray]:
    """(nonzeros per row, nonzeros per column), host-side int [L] each; a dense row counts L in
    its row and one in every column."""
    valid, dense = np.asarray(self.sparse_valid), self.dense_host
    rows = np.where(dense, self.length, valid.sum(-1))
    columns = np.bincount(np.asarray(self.cols)[valid], minlength=self.length) + dense.sum()
    return rows, columns

  @property
  def dense_host(self) -> np.ndarray:
    """``dense`` as a NumPy bool [L] (all False when None)."""
    return np.zeros(self.length, bool) if self.dense is None else np.asarray(self.dense, bool)

  def keep_top_n(self, top_n: int) -> tuple[SparsePattern, np.ndarray]:
    """The pattern keeping the ``top_n`` largest entries of every row, and each row's dropped share.

    Within a row, entries are ranked by weight, largest first, ties broken
    by the smaller column. Returns the new pattern (N = min(top_n, old N))
    and, per row, Σ(dropped weights) / Σ(weights). A dense row (L ones)
    keeps its columns 0 … top_n − 1 and drops (L − top_n)/L (it stays dense
    if top_n ≥ L; N is then top_n if it had to be cut). ValueError unless
    top_n ≥ 1. Host-side (NumPy).
    """
    if isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)) or top_n < 1:
      raise ValueError(f"top_n must be a positive integer, got {top_n!r}")
    cols, weights, valid = (np.asarray(x) for x in self[:3])
    dense = self.dense_host
    cut = dense.any() and top_n < self.length  # dense rows become sparse rows of top_n ones
    if cut:
      width = max(self.nnz, top_n)
      pad = ((0, 0), (0, width - self.nnz))
      cols, weights, valid = (np.pad(x, pad, mode="edge") for x in (cols, weights, valid))
      cols[dense], weights[dense] = np.arange(width) % self.length, 1.0
      valid[dense] = np.arange(width) < top_n
    order = np.lexsort((cols, -weights, ~valid), axis=-1)
    cols, weights, valid = (np.take_along_axis(x, order, axis=-1) for x in (cols, weights, valid))
    total = np.sum(np.where(valid, weights, 0.0), axis=-1)
    kept = min(top_n, cols.shape[-1])
    dropped = np.sum(np.where(valid[:, kept:], weights[:, kept:], 0.0), axis=-1) / total
    dropped[dense] = (self.length - min(top_n, self.length)) / self.length
    trimmed = SparsePattern(
      cols=jnp.asarray(cols[:, :kept]),
      weights=jnp.asarray(weights[:, :kept]),
      valid=jnp.asarray(valid[:, :kept]),
      dense=None if cut else self.dense,
    )
    return trimmed, dropped

  @classmethod
  def from_dense(
    cls, a: Any, nnz: int | None = None, *, check_columns: bool = True, dense_rows: str = "auto"
  ) -> SparsePattern:
    """Pattern of a dense square matrix (NumPy or JAX); ValueError on bad input.

    With ``nnz=None``, N is the largest nonzero count over the sparse rows
    and the columns. With ``check_columns=False``, N bounds the rows only and
    columns may hold more than N nonzeros (attention sinks: outside the
    theorem, but every kernel works, the layout being row-wise); ``nnz=None``
    then gives the largest row count. ``dense_rows="auto"`` holds a row of L
    equal nonzeros apart as a dense row (``dense``: A_ij = 1 for all j, only
    ratios within a row matter), so that N bounds the other rows;
    ``"pad"`` keeps every row in slots (N ≥ L if a row is full).
    """
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
      raise ValueError(f"A must be a square matrix, got shape {a.shape}")
    rows, cols = np.nonzero(a)
    return _from_coo(
      rows, cols, a[rows, cols], a.shape[0], nnz, check_columns, dense=a, dense_rows=dense_rows
    )

  @classmethod
  def from_scipy(
    cls, a: Any, nnz: int | None = None, *, check_columns: bool = True, dense_rows: str = "auto"
  ) -> SparsePattern:
    """Pattern of any ``scipy.sparse`` matrix or array; ValueError on bad input.

    Duplicate entries are summed; stored zeros are ignored. ``nnz``,
    ``check_columns`` and ``dense_rows`` as in ``from_dense``.
    """
    if not scipy.sparse.issparse(a):
      raise ValueError(f"expected a scipy.sparse matrix, got {type(a).__name__}")
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
      raise ValueError(f"A must be a square matrix, got shape {a.shape}")
    coo = scipy.sparse.coo_array(a)
    coo.sum_duplicates()
    _check_values(coo.row, coo.col, coo.data)
    keep = coo.data != 0
    return _from_coo(
      coo.row[keep],
      coo.col[keep],
      coo.data[keep],
      a.shape[0],
      nnz,
      check_columns,
      dense_rows=dense_rows,
    )


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


def _full_rows(
  rows: np.ndarray, values: np.ndarray, row_counts: np.ndarray, length: int, dense_rows: str
) -> np.ndarray:
  """bool [L]: the rows to hold apart as dense, L equal nonzeros each (``dense_rows="auto"``)."""
  if dense_rows not in ("auto", "pad"):
    raise ValueError(f"dense_rows must be 'auto' or 'pad', got {dense_rows!r}")
  if dense_rows == "pad":
    return np.zeros(length, bool)
  low, high = np.full(length, np.inf), np.full(length, -np.inf)
  np.minimum.at(low, rows, values)
  np.maximum.at(high, rows, values)
  return (row_counts == length) & (low == high)


def _from_coo(
  rows: np.ndarray,
  cols: np.ndarray,
  values: np.ndarray,
  length: int,
  nnz: int | None,
  check_columns: bool = True,
  dense: np.ndarray | None = None,
  dense_rows: str = "auto",
) -> SparsePattern:
  """Validated SparsePattern from the nonzero entries of an L×L matrix; full rows of equal
  entries held apart as dense rows with ``dense_rows="auto"`` (one placeholder slot each)."""
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
  col_counts = np.bincount(cols, minlength=length)  # dense rows count in their columns
  empty = np.flatnonzero(row_counts == 0)
  if empty.size:
    raise ValueError(f"row {empty[0]} of A has no nonzero entry; every row needs at least one")
  full = _full_rows(rows, values, row_counts, length, dense_rows)
  if full.any():  # one placeholder (column i, weight 1) per dense row
    keep = ~full[rows]
    placeholders = np.flatnonzero(full)
    rows, cols = (np.concatenate([x[keep], placeholders]) for x in (rows, cols))
    values = np.concatenate([values[keep], np.ones(placeholders.size, values.dtype)])
    row_counts = np.where(full, 1, row_counts)
  bounded = (("row", row_counts), ("column", col_counts))[: 2 if check_columns else 1]
  if nnz is None:
    nnz = int(max(counts.max() for _, counts in bounded))
  elif isinstance(nnz, bool) or not isinstance(nnz, (int, np.integer)) or nnz < 1:
    raise ValueError(f"nnz must be a positive integer, got {nnz!r}")
  for axis, counts in bounded:
    over = np.flatnonzero(counts > nnz)
    if over.size:
      raise ValueError(f"{axis} {over[0]} of A has {counts[over[0]]} nonzeros, more than nnz={nnz}")
  order = np.lexsort((cols, rows))
  rows, cols, values = rows[order], cols[order], values[order]
  slot = np.arange(rows.size) - np.repeat(np.cumsum(row_counts) - row_counts, row_counts)
  pad_cols = np.repeat(cols[np.cumsum(row_counts) - row_counts][:, None], nnz, axis=1)
  pad_cols[rows, slot] = cols
  weights = np.ones((length, nnz), dtype=np.result_type(values.dtype, np.float32))
  weights[rows, slot] = values
  valid = np.zeros((length, nnz), dtype=bool)
  valid[rows, slot] = True
  return SparsePattern(
    cols=jnp.asarray(pad_cols, jnp.int32),
    weights=jnp.asarray(weights, jnp.float32),  # whatever jax_enable_x64 says
    valid=jnp.asarray(valid),
    dense=jnp.asarray(full) if full.any() else None,
  )


def from_rows(
  cols: Int[Array, "L N"],
  weights: Float[Array, "L N"],
  valid: Bool[Array, "L N"] | None = None,
  dense: Bool[Array, " L"] | None = None,
) -> SparsePattern:
  """Pattern from row-padded arrays, with padding slots canonicalised.

  Generators use this: slots with ``valid == False`` get the column of the
  row's first valid slot and weight 1; rows flagged ``dense`` (support every
  key, A_ij = 1) get their placeholder, column i with weight 1 valid in slot 0
  only. jit-able; performs no validation.
  """
  if valid is None:
    valid = jnp.ones(cols.shape, bool)
  if dense is not None:
    first_slot = jnp.arange(cols.shape[-1]) == 0
    cols = jnp.where(dense[:, None], jnp.arange(cols.shape[0])[:, None], cols)
    valid = jnp.where(dense[:, None], first_slot, valid)
  first = jnp.take_along_axis(cols, jnp.argmax(valid, axis=-1)[..., None], axis=-1)
  cols = jnp.where(valid, cols, first).astype(jnp.int32)
  weights = jnp.where(valid, weights, jnp.ones_like(weights))
  if dense is not None:
    weights = jnp.where(dense[:, None], jnp.ones_like(weights), weights)
  return SparsePattern(cols=cols, weights=weights, valid=valid, dense=dense)


def check_dense(pattern: SparsePattern) -> None:
  """ValueError unless ``pattern.dense`` is None or a bool array of shape [L]."""
  dense = pattern.dense
  if dense is None:
    return
  shape, dtype = getattr(dense, "shape", None), getattr(dense, "dtype", None)
  if shape != (pattern.length,) or dtype != np.bool_:
    raise ValueError(
      f"pattern.dense must be a bool array of shape ({pattern.length},), got "
      f"shape {shape} and dtype {dtype}"
    )


def first_future_entry(pattern: SparsePattern) -> tuple[int, int] | None:
  """(i, j) of the first nonzero above the diagonal (j > i), row-major, or None if the pattern is
  causal: S_i ⊆ {0, …, i} for every row (a dense row reads as S_i = {0, …, i} in a causal layer)."""
  cols, valid = np.asarray(pattern.cols), np.asarray(pattern.sparse_valid)
  future = valid & (cols > np.arange(cols.shape[0])[:, None])
  if not future.any():
    return None
  row = int(np.flatnonzero(future.any(1))[0])
  return row, int(cols[row][future[row]].min())


def check_causal(pattern: SparsePattern) -> None:
  """ValueError naming the first row and column above the diagonal unless the pattern is causal
  (``first_future_entry``): a causal layer masks every key j > i before the softmax, so such a
  nonzero can never be approximated."""
  found = first_future_entry(pattern)
  if found is not None:
    row, col = found
    raise ValueError(
      f"the pattern is not causal: row {row} has a nonzero at column {col} > {row}, "
      "a key a causal layer masks (causal=True needs S_i within 0..i)"
    )


def log_uniform(key: PRNGKeyArray, shape: tuple[int, ...], a_min: float) -> Float[Array, "..."]:
  """Samples exp(U(ln a_min, 0)) ∈ [a_min, 1] in float32, whether or not 64-bit JAX is enabled."""
  return jnp.exp(jax.random.uniform(key, shape, jnp.float32, minval=jnp.log(a_min), maxval=0.0))


__all__ = [
  "SparsePattern",
  "check_causal",
  "check_dense",
  "first_future_entry",
  "from_rows",
  "log_uniform",
]
