"""The solution file of ``python -m bench solve``, read back by ``python -m bench check``.

An uncompressed ``.npz`` (no pickles) holding

  X, params                            the solution: logits (X W_Q)(X W_K)ᵀ with
  [w_q, w_k]                           params "identity": W_Q = [I_d; 0], W_K = [0; I_d]
                                       (X is L×2d, no W stored: X W_Q = X[:, :d],
                                       X W_K = X[:, d:]), or "dense": W_Q, W_K stored
                                       as w_q, w_k [D, d] (any other parameters)
  pattern_cols, pattern_weights,       the pattern A, row-padded as in SparsePattern:
  pattern_valid                        A[i, cols[i,k]] = weights[i,k] where valid[i,k]
  pattern_dense                        only if A has dense rows: bool [L], A_ij = 1 for
                                       every j of a flagged row (its slots ignored)
  method, d, eps1, eps2, seed          how X was built (``ja.construct.build``)
  max_outside_mass                     η of the mass criterion, only if it was used
  causal                               True for a causal layer's certificate, only if so
  report_<field>                       every field of the ``ja.Report`` at solve time
  source, changes, jaxattn_version,    provenance: the input file, notes on what
  format, seconds                      was changed in it, versions, solve time

``format`` is "jaxattn-solution-2". Files of format 1 ("jaxattn-solution-1",
written before 2 existed) have no ``params`` and always hold dense w_q, w_k;
they are read as params "dense". So a file grows with L·d, not d², for the
identity parameters (the only ones ``solve`` uses). Parameters like
``params="random"`` are stored dense, not as their seed: regenerating them
needs JAX's PRNG, and the file must be checkable with NumPy alone.

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
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse

from jaxattn_bench import resources
from jaxattn_bench.errors import CommandError
from jaxattn_bench.pattern_file import npz_headers
import jaxattn as ja
from jaxattn import Report, Solution, SparsePattern

FORMAT = "jaxattn-solution-2"
FORMAT_1 = "jaxattn-solution-1"  # dense w_q, w_k always; no params
PARAMS_KEYS = ("w_q", "w_k")  # stored for params "dense" only
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


class Provenance(NamedTuple):
  """How a solution was made, as its file records it: the question (ε1, ε2, η, the layer), the
  method, d and seed, the pattern's source and the changes made to it, the time and version."""

  method: str
  d: int
  eps1: float
  eps2: float
  seed: int
  source: str
  changes: tuple[str, ...] = ()
  seconds: float = 0.0
  version: str = ja.__version__
  max_outside_mass: float | None = None  # stored only under the mass criterion
  causal: bool = False  # stored only for a causal layer


def save_solution(
  path: str, solution: Solution, pattern: SparsePattern, report: Report, made: Provenance
) -> None:
  """Writes the solution file atomically: a temporary file, then ``os.replace``."""
  check_destination(path)
  arrays: dict[str, Any] = solution_arrays(solution)
  arrays.update(zip(PATTERN_KEYS, map(np.asarray, pattern[:3])))
  if pattern.dense is not None:
    arrays.update(pattern_dense=np.asarray(pattern.dense))
  arrays.update(
    method=np.str_(made.method),
    d=np.int64(made.d),
    eps1=np.float64(made.eps1),
    eps2=np.float64(made.eps2),
    seed=np.int64(made.seed),
    source=np.str_(made.source),
    changes=np.array(made.changes, dtype=str),
    seconds=np.float64(made.seconds),
    jaxattn_version=np.str_(made.version),
    format=np.str_(FORMAT),
  )
  if made.max_outside_mass is not None:
    arrays.update(max_outside_mass=np.float64(made.max_outside_mass))
  if made.causal:
    arrays.update(causal=np.bool_(True))
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


def solution_arrays(solution: Solution) -> dict[str, np.ndarray]:
  """X and its parameters as stored: params "identity" (no W arrays) or "dense" (w_q, w_k)."""
  x = np.asarray(solution.X)
  if isinstance(solution.w_q, ja.construct.IdentityBlock) and (
    solution.w_q,
    solution.w_k,
  ) == ja.construct.identity_params(solution.d):
    return dict(X=x, params=np.asarray("identity"))
  return dict(
    X=x, params=np.asarray("dense"), w_q=np.asarray(solution.w_q), w_k=np.asarray(solution.w_k)
  )


def saved_params(arrays: dict[str, np.ndarray]) -> str:
  """The file's params: its ``params`` in format 2 ("" if missing), "dense" in format 1."""
  if str(arrays.get("format", FORMAT_1)) == FORMAT_1:
    return "dense"
  return str(arrays.get("params", ""))


def saved_factors(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Q = X W_Q and K = X W_K in float64 with NumPy alone, from the file's arrays (the recipe of
  docs/your-pattern.md)."""
  x, d = np.asarray(arrays["X"], np.float64), int(arrays["d"])
  if saved_params(arrays) == "identity":
    return x[:, :d], x[:, d:]
  return x @ np.asarray(arrays["w_q"], np.float64), x @ np.asarray(arrays["w_k"], np.float64)


def _temporary_name(path: str, pid: int) -> str:
  """``.NAME.PID.tmp`` beside ``path``: the temporary file of process ``pid`` writing ``path``."""
  folder, name = os.path.split(os.path.abspath(path))
  return os.path.join(folder, f".{name}.{pid}.tmp")


def _remove_stale_temporaries(path: str) -> None:
  """Removes the temporary files of ``path`` left by processes that no longer run."""
  folder, name = os.path.split(os.path.abspath(path))
  for temporary in glob.glob(os.path.join(glob.escape(folder), glob.escape(f".{name}.") + "*.tmp")):
    pid = temporary[: -len(".tmp")].rsplit(".", 1)[-1]
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
    raise CommandError(
      f"{path}: not a solution file of `python -m bench solve` (not a .npz archive)"
    )
  _check_fits(path, npz_headers(path), itemsize)
  try:
    with np.load(path, allow_pickle=False) as archive:
      arrays = {name: archive[name] for name in archive.files}
  except CommandError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
    raise CommandError(f"{path}: cannot read as .npz: {error or type(error).__name__}") from None
  _check_layout(arrays, path)
  return arrays


def _check_layout(arrays: dict[str, np.ndarray], path: str) -> None:
  """CommandError unless the arrays are a solution file of a known format and consistent."""
  found = str(arrays.get("format", FORMAT_1))
  if found not in (FORMAT_1, FORMAT):
    raise CommandError(
      f"{path}: solution file format {found!r} is not one this jaxattn reads ({FORMAT_1}, {FORMAT})"
    )
  missing = [k for k in _required_keys(arrays) if k not in arrays]
  if missing:
    raise CommandError(
      f"{path}: not a solution file of `python -m bench solve` (missing {', '.join(missing)})"
    )
  params, x, d = saved_params(arrays), arrays["X"], int(arrays["d"])
  if params not in ("identity", "dense"):
    raise CommandError(f"{path}: unknown params {params!r} (expected 'identity' or 'dense')")
  if params == "identity" and (x.ndim != 2 or x.shape[1] != 2 * d):
    raise CommandError(
      f"{path}: params 'identity' needs X of 2d = {2 * d} columns, got shape {x.shape}"
    )


def _required_keys(arrays: dict[str, np.ndarray]) -> tuple[str, ...]:
  """The arrays a solution file of its format and params holds."""
  keys: tuple[str, ...] = ("X",) + PATTERN_KEYS + SETTING_KEYS
  if str(arrays.get("format", FORMAT_1)) == FORMAT:
    keys += ("params",)
  return keys + (PARAMS_KEYS if saved_params(arrays) == "dense" else ())


def _check_fits(
  path: str, headers: dict[str, tuple[tuple[int, ...], np.dtype]], itemsize: int
) -> None:
  """CommandError if loading and verifying the solution whose array headers are given cannot fit."""
  shapes = {k: headers[k][0] for k in ("X", "w_q", "pattern_cols") if k in headers}
  if {"X", "pattern_cols"} - set(shapes) or any(len(shape) != 2 for shape in shapes.values()):
    return  # not a solution file: load_solution says so
  (length, depth), (_, nnz) = shapes["X"], shapes["pattern_cols"]
  params = "dense" if "w_q" in shapes else "identity"  # format 1 files: always w_q
  d = shapes["w_q"][1] if "w_q" in shapes else depth // 2
  stored = sum(math.prod(shape) * dtype.itemsize for shape, dtype in headers.values())
  resources.check_fits(
    f"{path}: checking this solution (L={length}, d={d}, X {length}x{depth})",
    stored + resources.verify_bytes(length, nnz, depth, d, itemsize, params),
    change="check it on a machine with more memory",
  )


def format_report(report: Report, d: int, seconds: float) -> list[str]:
  """Lines describing a ``Report``: verdict, figures against their limits, failing rows."""
  ok, eps1, eps2 = bool(report.ok), float(report.eps1), float(report.eps2)
  eta = float(report.max_outside_mass)
  row_ok = np.asarray(report.row_ok)
  lines = [
    f"ok           {ok}  ({'CERTIFIED' if ok else 'NOT certified'} at d={d})",
    f"ratio_error  {float(report.ratio_error):.6g}  (limit eps1={eps1:g})",
    f"leak         {float(report.leak):.6g}  (limit eps2={eps2:g})",
    f"outside mass max {float(report.outside_mass_max):.3g}"
    + (f" (limit {eta:g}, mass criterion)" if np.isfinite(eta) else "")
    + f", mean {float(report.outside_mass_mean):.3g};  max |logit| "
    f"{float(report.max_abs_logit):.4g}",
    f"time         {seconds:.2f} s",
  ]
  if bool(report.certified):
    lines.append(
      f"exact        yes: the verdict of exact arithmetic (rows settled: "
      f"{int(report.settled_by_bound)} by the bound, {int(report.settled_by_float32)} "
      f"by the float32 re-check, {int(report.settled_on_host)} on the host)"
    )
  else:
    lines.append(
      "exact        no: the verdict of the computed figures (docs/certified.md says "
      "when verdicts are not certified)"
    )
  failing = np.flatnonzero(~row_ok)
  if failing.size:
    ratio_error, leak = np.expm1(np.asarray(report.spread)), np.exp(np.asarray(report.gap))
    lines.append(
      f"failing rows {failing.size} of {row_ok.size}"
      + (f" (first {_SHOWN_ROWS} shown)" if failing.size > _SHOWN_ROWS else "")
      + ":"
    )
    lines += [
      f"  row {i}: ratio_error {ratio_error[i]:.4g}"
      + (" > eps1" if ratio_error[i] > eps1 else "")
      + f", leak {leak[i]:.4g}"
      + (" > eps2" if leak[i] > eps2 else "")
      for i in failing[:_SHOWN_ROWS]
    ]
  return lines


def saved_matrix(arrays: dict[str, np.ndarray], path: str) -> scipy.sparse.csr_array:
  """The L×L pattern A stored row-padded in a solution file (CommandError if malformed)."""
  cols, weights, valid = (arrays[k] for k in PATTERN_KEYS)
  if cols.ndim != 2 or cols.shape != weights.shape or cols.shape != valid.shape:
    raise CommandError(
      f"{path}: pattern arrays must share one [L, N] shape, got "
      f"{cols.shape}, {weights.shape}, {valid.shape}"
    )
  if valid.dtype != bool or not np.issubdtype(cols.dtype, np.integer):
    raise CommandError(f"{path}: pattern_valid must be bool and pattern_cols integer")
  length = cols.shape[0]
  bad = valid & ((cols < 0) | (cols >= length))
  if bad.any():
    row = np.flatnonzero(bad.any(axis=-1))[0]
    raise CommandError(f"{path}: pattern row {row} has a column outside [0, {length})")
  dense = np.asarray(arrays.get("pattern_dense", np.zeros(length, bool)))
  if dense.shape != (length,) or dense.dtype != bool:
    raise CommandError(f"{path}: pattern_dense must be bool of shape ({length},)")
  valid = valid & ~dense[:, None]
  rows = np.broadcast_to(np.arange(length)[:, None], cols.shape)
  flagged = np.flatnonzero(dense)
  return scipy.sparse.csr_array(
    (
      np.concatenate([weights[valid], np.ones(flagged.size * length)]),
      (
        np.concatenate([rows[valid], np.repeat(flagged, length)]),
        np.concatenate([cols[valid], np.tile(np.arange(length), flagged.size)]),
      ),
    ),
    shape=(length, length),
  )
