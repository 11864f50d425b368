"""``python -m bench check OUT.npz [--float64]``: re-verify a saved solution from scratch.

Rebuilds the pattern A from the file (validating it again), recomputes the
logits (X W_Q)(X W_K)ᵀ from the saved X and parameters (identity W_Q, W_K
from d, or the stored dense ones: ``jaxattn_bench.solution_file``; files of
format 1 too) and runs ``ja.verify``; nothing computed at solve time is
trusted. With ``--float64`` the check runs in float64 and, for L ≤
``DENSE_MAX_LENGTH``, also as an independent dense NumPy computation (the
logits by the NumPy recipe of docs/your-pattern.md, ``ja.reference.logits_check``) that must
agree. Exit status 0 if certified, 1 if not, 2 if the file is missing or not a
solution file.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import jaxattn as ja
from jaxattn_bench.commands import add_matmul_option
from jaxattn_bench.errors import CommandError
from jaxattn_bench.solution_file import (
  format_report,
  load_solution,
  saved_factors,
  saved_matrix,
  saved_params,
)

DENSE_MAX_LENGTH = 2048  # the dense reference holds a few L×L float64 matrices


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser(
    "check",
    help="re-verify a solution file written by `solve`",
    description="Re-verify a solution file of `python -m bench solve` from scratch. Exit "
    "status 0 if certified, 1 if not, 2 if the file cannot be used.",
  )
  parser.add_argument("solution", metavar="OUT.npz", help="solution file")
  parser.add_argument(
    "--float64",
    action="store_true",
    help="verify in float64, and for small L also with dense NumPy",
  )
  parser.add_argument("--block-size", type=int, help="keys per streamed block in verification")
  add_matmul_option(parser)
  parser.set_defaults(func=main)


def main(args) -> int:
  try:
    ja.check_block_size(args.block_size)
  except ValueError as error:
    raise CommandError(f"bad option: {error}") from None
  path = args.solution
  arrays = load_solution(path, itemsize=8 if args.float64 else 4)
  matrix = saved_matrix(arrays, path)
  method, d = str(arrays["method"]), int(arrays["d"])
  eps1, eps2 = float(arrays["eps1"]), float(arrays["eps2"])
  # η of the mass criterion if the solution was certified under it (files without it: ratio)
  eta = float(arrays["max_outside_mass"]) if "max_outside_mass" in arrays else None
  causal = bool(arrays["causal"]) if "causal" in arrays else False  # absent: bidirectional
  start = time.perf_counter()
  with ja.dtype_context("float64" if args.float64 else "float32"):
    dtype = jnp.float64 if args.float64 else jnp.float32
    try:
      pattern = ja.SparsePattern.from_scipy(matrix, check_columns=False)
      solution = _solution(arrays, d, dtype)
      report = jax.block_until_ready(
        ja.verify(
          solution,
          pattern,
          eps1=eps1,
          eps2=eps2,
          max_outside_mass=eta,
          causal=causal,
          matmul=args.matmul,
          compute=ja.Compute(block_size=args.block_size),
        )
      )
    except ValueError as error:
      raise CommandError(f"{path}: {error}") from None
  seconds = time.perf_counter() - start
  print(
    f"solution     {path}: {method}, d={d}, X {tuple(arrays['X'].shape)}, "
    f"params {saved_params(arrays)}, L={pattern.length}, N={pattern.nnz}, "
    f"from {arrays['source'] if 'source' in arrays else '?'}"
  )
  print(
    f"checked in   {'float64' if args.float64 else 'float32'} (ja.verify)"
    + (", causal layer" if causal else "")
  )
  for line in format_report(report, d, seconds):
    print(line)
  ok = bool(report.ok)
  if args.float64 and pattern.length <= DENSE_MAX_LENGTH:
    ok = _dense_agrees(arrays, matrix, ok, eps1=eps1, eps2=eps2, eta=eta, causal=causal)
  if "report_ok" in arrays and bool(arrays["report_ok"]) != bool(report.ok):
    print(f"note         the file's own report said ok={bool(arrays['report_ok'])}")
  return 0 if ok else 1


def _dense_agrees(
  arrays, matrix, ok: bool, *, eps1: float, eps2: float, eta: float | None, causal: bool
) -> bool:
  """Prints the dense float64 NumPy check of the file's logits (``ja.reference.logits_check``);
  whether it agrees with ``ok``, ja.verify's verdict, and that verdict holds."""
  queries, keys = saved_factors(arrays)
  a = matrix.toarray()  # a dense row is L ones; in a causal layer it is its prefix 0..i
  dense = ja.reference.logits_check(
    queries @ keys.T,
    np.tril(a) if causal else a,
    eps1=eps1,
    eps2=eps2,
    max_outside_mass=eta,
    causal=causal,
  )
  print(
    f"dense NumPy  float64: ok {dense.ok}, ratio_error {dense.ratio_error:.6g}, "
    f"leak {dense.leak:.6g}, outside mass max {dense.outside_mass_max:.3g}"
  )
  if dense.ok != ok:
    print("DISAGREE     the dense reference and ja.verify differ: not certified")
  return ok and bool(dense.ok) == ok


def _solution(arrays, d: int, dtype) -> ja.Solution:
  """The file's X with its parameters: identity W_Q, W_K (``IdentityBlock``s) or its dense ones."""
  if saved_params(arrays) == "identity":
    return ja.Solution(jnp.asarray(arrays["X"], dtype), *ja.construct.identity_params(d))
  return ja.Solution(*(jnp.asarray(arrays[k], dtype) for k in ("X", "w_q", "w_k")))
