"""``python -m bench check OUT.npz [--float64]``: re-verify a saved solution from scratch.

Rebuilds the pattern A from the file (validating it again), recomputes the
logits (X W_Q)(X W_K)ᵀ from the saved X, W_Q, W_K and runs ``ja.verify``;
nothing computed at solve time is trusted. With ``--float64`` the check runs
in float64 and, for L ≤ ``DENSE_MAX_LENGTH``, also as an independent dense
NumPy computation that must agree. Exit status 0 if certified, 1 if not, 2 if
the file is missing or not a solution file.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

import jaxattn as ja
from bench._cli import CommandError
from bench._solution_file import PATTERN_KEYS, SOLUTION_KEYS, format_report, load_solution
from bench.run import precision

DENSE_MAX_LENGTH = 2048  # the dense reference holds a few L×L float64 matrices


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser(
      "check", help="re-verify a solution file written by `solve`",
      description="Re-verify a solution file of `python -m bench solve` from scratch. Exit "
      "status 0 if certified, 1 if not, 2 if the file cannot be used.")
  parser.add_argument("solution", metavar="OUT.npz", help="solution file")
  parser.add_argument("--float64", action="store_true",
                      help="verify in float64, and for small L also with dense NumPy")
  parser.add_argument("--block-size", type=int, help="keys per streamed block in verification")
  parser.set_defaults(func=main)


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


def dense_figures(x: np.ndarray, w_q: np.ndarray, w_k: np.ndarray, a: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
  """spread_i and gap_i of DESIGN §2 from dense float64 logits: an independent reference.

  ℓ = (X W_Q)(X W_K)ᵀ; spread_i = max_{S_i}(ℓ − ln A) − min_{S_i}(ℓ − ln A);
  gap_i = max_{j∉S_i} ℓ_ij − min_{j∈S_i} ℓ_ij (−inf for a full row).
  """
  x, w_q, w_k, a = (np.asarray(m, np.float64) for m in (x, w_q, w_k, a))
  logits = (x @ w_q) @ (x @ w_k).T
  support = a > 0
  shifted = logits - np.log(np.where(support, a, 1.0))
  spread = (np.max(np.where(support, shifted, -np.inf), axis=-1)
            - np.min(np.where(support, shifted, np.inf), axis=-1))
  gap = (np.max(np.where(support, -np.inf, logits), axis=-1)
         - np.min(np.where(support, logits, np.inf), axis=-1))
  return spread, gap


def main(args) -> int:
  if args.block_size is not None and args.block_size < 1:
    raise CommandError(f"--block-size must be >= 1, got {args.block_size}")
  path = args.solution
  arrays = load_solution(path)
  matrix = saved_matrix(arrays, path)
  method, d = str(arrays["method"]), int(arrays["d"])
  eps1, eps2 = float(arrays["eps1"]), float(arrays["eps2"])
  start = time.perf_counter()
  with precision("float64" if args.float64 else "float32"):
    dtype = jnp.float64 if args.float64 else jnp.float32
    try:
      pattern = ja.SparsePattern.from_scipy(matrix, check_columns=False)
      solution = ja.Solution(*(jnp.asarray(arrays[k], dtype) for k in SOLUTION_KEYS))
      report = jax.block_until_ready(
          ja.verify(solution, pattern, eps1, eps2, block_size=args.block_size))
    except ValueError as error:
      raise CommandError(f"{path}: {error}") from None
  seconds = time.perf_counter() - start
  print(f"solution     {path}: {method}, d={d}, X {tuple(arrays['X'].shape)}, L={pattern.length}, "
        f"N={pattern.nnz}, from {arrays['source'] if 'source' in arrays else '?'}")
  print(f"checked in   {'float64' if args.float64 else 'float32'} (ja.verify)")
  for line in format_report(report, d, seconds):
    print(line)
  ok = bool(report.ok)
  if args.float64 and pattern.length <= DENSE_MAX_LENGTH:
    spread, gap = dense_figures(*(arrays[k] for k in SOLUTION_KEYS), matrix.toarray())
    ratio_error, leak = np.expm1(spread.max()), np.exp(gap.max())
    dense_ok = bool(ratio_error <= eps1 and leak <= eps2)
    print(f"dense NumPy  float64: ok {dense_ok}, ratio_error {ratio_error:.6g}, leak {leak:.6g}")
    if dense_ok != ok:
      print("DISAGREE     the dense reference and ja.verify differ: not certified")
      ok = False
  if "report_ok" in arrays and bool(arrays["report_ok"]) != bool(report.ok):
    print(f"note         the file's own report said ok={bool(arrays['report_ok'])}")
  return 0 if ok else 1
