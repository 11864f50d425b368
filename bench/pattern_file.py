"""A user's own attention pattern, read from a file into a ``SparsePattern``.

Formats, told apart by the file's suffix:

  .npy             a dense L×L array (``numpy.save``)
  .npz             one dense L×L array (``numpy.savez``), or a scipy.sparse
                   matrix saved with ``scipy.sparse.save_npz``
  .mtx, .mtx.gz    Matrix Market, coordinate or array (``scipy.io.mmwrite``)

Boolean masks are read as 0/1. Entries must be finite and ≥ 0 and every row
needs a nonzero (docs/definitions.md). Sizes are checked from the file's
header before its data are read (``check_header``): a matrix that is not
square, has fewer stored entries than rows, or would not fit in memory
(``jaxattn_bench.resources``) is refused without allocating it. A row of L equal
nonzeros (a global token's) is held apart as a dense row (``SparsePattern.dense``,
``dense_rows="auto"``). The pattern's N is its largest *row* count over the other rows;
columns with more than N nonzeros (attention sinks, global tokens) lie outside
the theorem and are reported, not refused. Every failure is a ``CommandError``
whose one line names the file and the problem.
"""

from __future__ import annotations

import math
import os
import zipfile
from typing import NamedTuple

import numpy as np
import scipy.io
import scipy.sparse

from jaxattn import SparsePattern
from jaxattn_bench import resources
from jaxattn_bench.errors import CommandError

SUFFIXES = (".npy", ".npz", ".mtx", ".mtx.gz")
# Keys that scipy.sparse.save_npz always writes.
_SAVE_NPZ_KEYS = frozenset({"format", "shape", "data"})
_SHOWN = 8  # rows or columns listed by name in a note
_NPY_MAGIC = b"\x93NUMPY"
_HEADER_READERS = {
  (1, 0): np.lib.format.read_array_header_1_0,
  (2, 0): np.lib.format.read_array_header_2_0,
}
_LOAD_COPIES = 3  # the stored arrays, their float/CSR conversion and the pattern built from them


class UserPattern(NamedTuple):
  """A validated pattern and what was done to it on the way in.

  ``changes`` are one-line notes (entries dropped by ``top_n``, columns with
  more than N nonzeros); ``dense_columns`` lists those columns.
  """

  pattern: SparsePattern
  changes: tuple[str, ...]
  dense_columns: np.ndarray  # int [k]: columns with more than pattern.nnz nonzeros


def _listed(indices: np.ndarray) -> str:
  shown = ", ".join(str(i) for i in indices[:_SHOWN])
  return shown + (f", ... ({indices.size} in all)" if indices.size > _SHOWN else "")


def read_matrix(path: str) -> np.ndarray | scipy.sparse.sparray:
  """The matrix stored in ``path``: a dense array or a scipy.sparse array.

  Checks only that the file exists and parses in the format its suffix names;
  shape and values are checked by ``load_pattern``.
  """
  if not os.path.exists(path):
    raise CommandError(f"{path}: no such file")
  if os.path.isdir(path):
    raise CommandError(f"{path}: is a directory, expected a pattern file")
  suffix = next((s for s in SUFFIXES if path.lower().endswith(s)), None)
  if suffix is None:
    raise CommandError(f"{path}: unknown format; expected one of {', '.join(SUFFIXES)}")
  check_header(path, suffix)
  try:
    if suffix == ".npy":
      matrix = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
      matrix = _read_npz(path)
    else:
      matrix = scipy.io.mmread(path)
  except CommandError:
    raise
  except (
    OSError,
    ValueError,
    EOFError,
    TypeError,
    IndexError,
    KeyError,
    zipfile.BadZipFile,
  ) as error:
    raise CommandError(
      f"{path}: cannot read as {suffix}: {error or type(error).__name__}"
    ) from None
  if scipy.sparse.issparse(matrix):
    matrix = scipy.sparse.csr_array(matrix)
  else:
    matrix = np.asarray(matrix)
  if matrix.dtype == bool:
    matrix = matrix.astype(np.float32)
  return matrix


def array_header(file, name: str) -> tuple[tuple[int, ...], np.dtype]:
  """(shape, dtype) from the header of the .npy data in ``file``, without reading the data.

  CommandError naming ``name`` if it does not start with NumPy's magic bytes
  or holds pickled objects.
  """
  if file.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
    raise CommandError(
      f"{name}: not a NumPy .npy file (it does not start with NumPy's magic bytes \\x93NUMPY)"
    )
  version = tuple(file.read(2))
  if version not in _HEADER_READERS:
    raise CommandError(f"{name}: cannot read as .npy: unsupported format version {version}")
  try:
    shape, _, dtype = _HEADER_READERS[version](file)
  except ValueError as error:
    raise CommandError(f"{name}: cannot read as .npy: {error}") from None
  if dtype.hasobject:
    raise CommandError(f"{name}: cannot read as .npy: it holds pickled Python objects, not numbers")
  return shape, dtype


def npz_headers(path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """name -> (shape, dtype) of every array in a .npz archive, read from the headers alone."""
  headers = {}
  try:
    with zipfile.ZipFile(path) as archive:
      for member in archive.namelist():
        if member.endswith(".npy"):
          with archive.open(member) as file:
            headers[member[:-4]] = array_header(file, f"{path}: {member}")
  except (OSError, zipfile.BadZipFile, EOFError) as error:
    raise CommandError(f"{path}: cannot read as .npz: {error}") from None
  return headers


def check_header(path: str, suffix: str) -> None:
  """CommandError, before any data are read, if the header declares a matrix that cannot be used.

  Refused: a shape that is not square (L×L), fewer stored entries than rows
  (some row has none; a symmetric .mtx entry fills at most two rows), and a
  matrix whose reading would not fit in memory (``_LOAD_COPIES`` × its bytes).
  """
  if suffix == ".npy":
    with open(path, "rb") as file:
      shape, dtype = array_header(file, path)
    stored = math.prod(shape)
    entries, nbytes = None, stored * dtype.itemsize
  elif suffix == ".npz":
    if not zipfile.is_zipfile(path):
      raise CommandError(f"{path}: cannot read as .npz: not a zip archive")
    headers = npz_headers(path)
    if _SAVE_NPZ_KEYS <= set(headers):  # scipy.sparse.save_npz: the shape is a small array
      with np.load(path, allow_pickle=False) as archive:
        shape = tuple(int(n) for n in np.ravel(archive["shape"]))
      entries = headers["data"][0][0] if headers["data"][0] else 0
      nbytes = sum(math.prod(s) * t.itemsize for s, t in headers.values())
    elif len(headers) == 1:
      ((shape, dtype),) = headers.values()
      entries, nbytes = None, math.prod(shape) * dtype.itemsize
    else:
      return  # _read_npz says what is wrong
  else:
    try:
      rows, cols, entries, layout, _, symmetry = scipy.io.mminfo(path)
    except (OSError, ValueError, IndexError) as error:
      raise CommandError(f"{path}: cannot read as .mtx: {error or type(error).__name__}") from None
    shape = (rows, cols)
    if layout == "array":
      entries = None
    elif symmetry != "general":
      entries *= 2  # (i, j) also stands for (j, i)
    nbytes = (rows * cols if entries is None else entries) * 24  # row, column, float64 value
  if len(shape) != 2 or shape[0] != shape[1]:
    raise CommandError(
      f"{path}: A must be a square matrix, got shape {tuple(shape)} (from the file's header)"
    )
  if entries is not None and entries < shape[0]:
    raise CommandError(
      f"{path}: {entries} stored entries for {shape[0]} rows: some row of A "
      "has no nonzero entry; every row needs at least one"
    )
  resources.check_fits(
    f"{path}: reading this {shape[0]}x{shape[1]} matrix",
    _LOAD_COPIES * nbytes,
    change="use a smaller pattern",
  )


def _read_npz(path: str) -> np.ndarray | scipy.sparse.sparray:
  """One dense array, or the scipy.sparse matrix that ``save_npz`` wrote."""
  if not zipfile.is_zipfile(path):
    raise CommandError(f"{path}: cannot read as .npz: not a zip archive")
  with np.load(path, allow_pickle=False) as archive:
    names = sorted(archive.files)
    if _SAVE_NPZ_KEYS <= set(names):
      return scipy.sparse.load_npz(path)
    if len(names) != 1:
      raise CommandError(
        f"{path}: holds {len(names)} arrays ({', '.join(names) or 'none'}); expected one "
        "dense array or a scipy.sparse matrix saved with scipy.sparse.save_npz"
      )
    return archive[names[0]]


def load_pattern(path: str, top_n: int | None = None) -> UserPattern:
  """The validated pattern in ``path``, with N its largest row count.

  With ``top_n``, every row keeps its ``top_n`` largest entries (the rest
  are dropped and the change is noted). Columns with more than N nonzeros
  are kept and noted. No printing: the notes are returned.
  """
  if top_n is not None and top_n < 1:
    raise CommandError(f"--top-n must be >= 1, got {top_n}")
  matrix = read_matrix(path)
  sparse = scipy.sparse.issparse(matrix)
  try:
    pattern = (SparsePattern.from_scipy if sparse else SparsePattern.from_dense)(
      matrix, check_columns=False, dense_rows="auto"
    )
  except ValueError as error:
    convention = (
      " (rows and columns counted from 0; the .mtx file numbers them from 1)"
      if ".mtx" in path.lower() and any(c.isdigit() for c in str(error))
      else ""
    )
    raise CommandError(f"{path}: {error}{convention}") from None
  changes = []
  if top_n is not None:
    row_counts = pattern.counts()[0]
    pattern, dropped_share = pattern.keep_top_n(top_n)
    cut = np.flatnonzero(row_counts > top_n)
    changes.append(
      f"--top-n {top_n}: kept the {top_n} largest entries of every row (ties: smaller column "
      f"first); dropped {int(np.sum(row_counts - np.minimum(row_counts, top_n)))} of "
      f"{int(row_counts.sum())} nonzeros from {cut.size} of {pattern.length} rows"
      + (
        f", at most {dropped_share.max():.3g} (mean {dropped_share[cut].mean():.3g}) of a "
        "row's total weight"
        if cut.size
        else ""
      )
    )
  col_counts = pattern.counts()[1]
  dense_columns = np.flatnonzero(col_counts > pattern.nnz)
  if dense_columns.size:
    changes.append(
      f"outside the theorem: {dense_columns.size} column(s) have more than N={pattern.nnz} "
      f"nonzeros (column {_listed(dense_columns)}; up to {col_counts.max()} nonzeros); "
      "kept as they are, N bounds the rows only"
    )
  return UserPattern(pattern, tuple(changes), dense_columns)
