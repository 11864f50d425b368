"""The solution file of ``python -m bench solve``, read back by ``python -m bench check``.

An uncompressed ``.npz`` (no pickles) holding

  X, w_q, w_k                          the solution: logits (X W_Q)(X W_K)ᵀ
  pattern_cols, pattern_weights,       the pattern A, row-padded as in SparsePattern:
  pattern_valid                        A[i, cols[i,k]] = weights[i,k] where valid[i,k]
  method, d, eps1, eps2, seed          how X was built (``ja.construct.build``)
  report_<field>                       every field of the ``ja.Report`` at solve time
  source, changes, jaxattn_version,    provenance: the input file, notes on what
  format, seconds                      was changed in it, versions, solve time

It is written to a temporary file ``.NAME.PID.tmp`` beside the destination
and renamed over it (``os.replace``, atomic on POSIX and Windows), so an
existing file is never half-overwritten; it gets the mode a new file gets
under the umask (0644 for umask 022). Temporary files of the same
destination whose process is gone (a killed ``solve``) are removed.
"""

from __future__ import annotations

import glob
import math
import os
import zipfile
from typing import Any

import numpy as np
import scipy.sparse

from jaxattn_bench import resources
from jaxattn_bench.errors import CommandError
from jaxattn_bench.pattern_file import npz_headers
from jaxattn import Report, Solution, SparsePattern

FORMAT = "jaxattn-solution-1"
SOLUTION_KEYS = ("X", "w_q", "w_k")
PATTERN_KEYS = ("pattern_cols", "pattern_weights", "pattern_valid")
SETTING_KEYS = ("method", "d", "eps1", "eps2", "seed")
_SHOWN_ROWS = 10


def check_destination(path: str) -> None:
  """CommandError unless ``path`` can be (re)placed: its folder exists and it is no folder."""
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise CommandError(f"{path}: folder {folder} does not exist")
  if os.path.isdir(path):
    raise CommandError(f"{path}: is a directory")


def save_solution(path: str, solution: Solution, pattern: SparsePattern, report: Report, *,
                  method: str, d: int, eps1: float, eps2: float, seed: int, source: str,
                  changes: tuple[str, ...], seconds: float, version: str) -> None:
  """Writes the solution file atomically: a temporary file, then ``os.replace``."""
  check_destination(path)
  arrays: dict[str, Any] = dict(zip(SOLUTION_KEYS, map(np.asarray, solution)))
  arrays.update(zip(PATTERN_KEYS, map(np.asarray, pattern)))
  arrays.update(method=np.str_(method), d=np.int64(d), eps1=np.float64(eps1),
                eps2=np.float64(eps2), seed=np.int64(seed), source=np.str_(source),
                changes=np.array(changes, dtype=str), seconds=np.float64(seconds),
                jaxattn_version=np.str_(version), format=np.str_(FORMAT))
  arrays.update({f"report_{name}": np.asarray(value) for name, value in report._asdict().items()})
  _remove_stale_temporaries(path)
  temporary = _temporary_name(path, os.getpid())
  try:
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # umask applies
  except OSError as error:
    raise CommandError(f"{path}: cannot write: {error}") from None
  try:
    with os.fdopen(handle, "wb") as file:
      np.savez(file, **arrays)
      file.flush()
      os.fsync(file.fileno())
    os.replace(temporary, path)
  except BaseException as error:
    os.unlink(temporary)
    if isinstance(error, OSError):
      raise CommandError(f"{path}: cannot write: {error}") from None
    raise


def _temporary_name(path: str, pid: int) -> str:
  """``.NAME.PID.tmp`` beside ``path``: the temporary file of process ``pid`` writing ``path``."""
  folder, name = os.path.split(os.path.abspath(path))
  return os.path.join(folder, f".{name}.{pid}.tmp")


def _remove_stale_temporaries(path: str) -> None:
  """Removes the temporary files of ``path`` left by processes that no longer run."""
  folder, name = os.path.split(os.path.abspath(path))
  for temporary in glob.glob(os.path.join(glob.escape(folder), glob.escape(f".{name}.") + "*.tmp")):
    pid = temporary[:-len(".tmp")].rsplit(".", 1)[-1]
    if pid.isdigit() and not _running(int(pid)):
      try:
        os.unlink(temporary)
      except OSError:
        pass  # another process removed it first


def _running(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # someone else's process
  return True


def load_solution(path: str, itemsize: int = 4) -> dict[str, np.ndarray]:
  """The arrays of a solution file; CommandError (one line) if it is missing or not one.

  Also CommandError, before its arrays are read, if they and their
  verification in ``itemsize``-byte floats would not fit in memory.
  """
  if os.path.isdir(path):
    raise CommandError(f"{path}: is a directory, expected a solution file")
  if not os.path.isfile(path):
    raise CommandError(f"{path}: no such file")
  if not zipfile.is_zipfile(path):
    raise CommandError(f"{path}: not a solution file of `python -m bench solve` "
                       "(not a .npz archive)")
  _check_fits(path, npz_headers(path), itemsize)
  try:
    with np.load(path, allow_pickle=False) as archive:
      arrays = {name: archive[name] for name in archive.files}
  except CommandError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
    raise CommandError(f"{path}: cannot read as .npz: {error or type(error).__name__}"
                       ) from None
  missing = [k for k in SOLUTION_KEYS + PATTERN_KEYS + SETTING_KEYS if k not in arrays]
  if missing:
    raise CommandError(f"{path}: not a solution file of `python -m bench solve` "
                       f"(missing {', '.join(missing)})")
  return arrays


def _check_fits(path: str, headers: dict[str, tuple[tuple[int, ...], np.dtype]],
                itemsize: int) -> None:
  """CommandError if loading and verifying the solution whose array headers are given cannot fit."""
  shapes = {k: headers[k][0] for k in ("X", "w_q", "pattern_cols") if k in headers}
  if len(shapes) < 3 or any(len(shape) != 2 for shape in shapes.values()):
    return  # not a solution file: load_solution says so
  (length, depth), (_, d), (_, nnz) = shapes["X"], shapes["w_q"], shapes["pattern_cols"]
  stored = sum(math.prod(shape) * dtype.itemsize for shape, dtype in headers.values())
  resources.check_fits(f"{path}: checking this solution (L={length}, d={d}, X {length}x{depth})",
                       stored + resources.verify_bytes(length, nnz, depth, d, itemsize),
                       change="check it on a machine with more memory")


def format_report(report: Report, d: int, seconds: float) -> list[str]:
  """Lines describing a ``Report``: verdict, figures against their limits, failing rows."""
  ok, eps1, eps2 = bool(report.ok), float(report.eps1), float(report.eps2)
  row_ok = np.asarray(report.row_ok)
  lines = [
      f"ok           {ok}  ({'CERTIFIED' if ok else 'NOT certified'} at d={d})",
      f"ratio_error  {float(report.ratio_error):.6g}  (limit eps1={eps1:g})",
      f"leak         {float(report.leak):.6g}  (limit eps2={eps2:g})",
      f"outside mass max {float(report.outside_mass_max):.3g}, mean "
      f"{float(report.outside_mass_mean):.3g};  max |logit| {float(report.max_abs_logit):.4g}",
      f"time         {seconds:.2f} s",
  ]
  failing = np.flatnonzero(~row_ok)
  if failing.size:
    ratio_error, leak = np.expm1(np.asarray(report.spread)), np.exp(np.asarray(report.gap))
    lines.append(f"failing rows {failing.size} of {row_ok.size}"
                 + (f" (first {_SHOWN_ROWS} shown)" if failing.size > _SHOWN_ROWS else "") + ":")
    lines += [f"  row {i}: ratio_error {ratio_error[i]:.4g}"
              + (" > eps1" if ratio_error[i] > eps1 else "")
              + f", leak {leak[i]:.4g}" + (" > eps2" if leak[i] > eps2 else "")
              for i in failing[:_SHOWN_ROWS]]
  return lines


def saved_matrix(arrays: dict[str, np.ndarray], path: str) -> scipy.sparse.csr_array:
  """The L×L pattern A stored row-padded in a solution file (CommandError if malformed)."""
  cols, weights, valid = (arrays[k] for k in PATTERN_KEYS)
  if cols.ndim != 2 or cols.shape != weights.shape or cols.shape != valid.shape:
    raise CommandError(f"{path}: pattern arrays must share one [L, N] shape, got "
                       f"{cols.shape}, {weights.shape}, {valid.shape}")
  if valid.dtype != bool or not np.issubdtype(cols.dtype, np.integer):
    raise CommandError(f"{path}: pattern_valid must be bool and pattern_cols integer")
  length = cols.shape[0]
  bad = valid & ((cols < 0) | (cols >= length))
  if bad.any():
    row = np.flatnonzero(bad.any(axis=-1))[0]
    raise CommandError(f"{path}: pattern row {row} has a column outside [0, {length})")
  rows = np.broadcast_to(np.arange(length)[:, None], cols.shape)
  return scipy.sparse.csr_array((weights[valid], (rows[valid], cols[valid])),
                                shape=(length, length))
