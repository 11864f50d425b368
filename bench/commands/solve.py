"""``python -m bench solve PATTERN --out OUT.npz``: inputs X that reproduce a user's own pattern.

Reads A from PATTERN (.npy, .npz dense or scipy.sparse, .mtx; see
``jaxattn_bench.pattern_file``), builds X for the fixed W_Q, W_K of the chosen
method at dimension d (``--d D``, or ``--search`` for the smallest grid d at
which the method verifies for this pattern and seed), verifies it
(``ja.verify``; with ``--max-outside-mass η`` under the mass criterion, every
row's outside softmax mass ≤ η too), prints the report and writes the
solution file. Exit status 0 if A is certified, 1 if not, 2 for bad input.
OUT is replaced (atomically) only by a certified solution, unless
``--save-uncertified``.
"""

from __future__ import annotations

import sys
import time

import jax

import jaxattn as ja
from jaxattn_bench import resources, runner
from jaxattn_bench.commands import add_matmul_option
from jaxattn_bench.errors import CommandError
from jaxattn_bench.pattern_file import load_pattern
from jaxattn_bench.solution_file import Provenance, check_destination, format_report, save_solution

# 1, 2, 3, 4, 6, 8, 11, 16, ..., 2896, 4096: two values per doubling of d.
DEFAULT_D_GRID = ja.geometric_grid(4096, per_octave=2)


# Methods that verify every pattern at d = L (one-hot keys): their default grid stops at L.
VERIFIES_AT_LENGTH = frozenset({"onehot"})


def default_grid(method: str, length: int) -> tuple[int, ...]:
  """``DEFAULT_D_GRID``, stopped at L for methods in ``VERIFIES_AT_LENGTH`` (nothing above L
  is needed there); every other method keeps the whole grid (jl needs d above L on small L)."""
  if method in VERIFIES_AT_LENGTH and length < DEFAULT_D_GRID[-1]:
    return ja.geometric_grid(length, per_octave=2)
  return DEFAULT_D_GRID


def _d_grid(text: str) -> tuple[int, ...]:
  try:
    grid = [int(d) for d in text.split(",")]
  except ValueError:
    raise CommandError(f"--d-grid {text!r}: d_grid must be integers") from None
  try:
    return ja.check_d_grid(grid)
  except ValueError as error:
    raise CommandError(f"--d-grid {text!r}: {error}") from None


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser(
    "solve",
    help="build and certify inputs X for your own pattern",
    description="Build inputs X for a fixed attention layer (W_Q, W_K) whose attention "
    "(eps1, eps2)-approximates the pattern A in PATTERN, verify, and save. Exit status 0 "
    "if certified, 1 if not, 2 for bad input.",
  )
  parser.add_argument(
    "pattern", metavar="PATTERN", help="A as .npy, .npz (dense, or scipy.sparse.save_npz) or .mtx"
  )
  parser.add_argument("--out", required=True, metavar="OUT.npz", help="solution file to write")
  parser.add_argument(
    "--method",
    default="jl",
    choices=sorted(ja.construct.METHODS),
    help="construction (default: jl, the paper's)",
  )
  _add_criterion(parser)
  size = parser.add_mutually_exclusive_group(required=True)
  size.add_argument("--d", type=int, help="query/key dimension d")
  size.add_argument(
    "--search",
    action="store_true",
    help="use the smallest d of --d-grid at which the method verifies",
  )
  parser.add_argument(
    "--d-grid",
    type=str,
    metavar="D1,D2,...",
    help=f"grid for --search (default {DEFAULT_D_GRID[0]}, "
    f"{DEFAULT_D_GRID[1]}, {DEFAULT_D_GRID[2]}, ..., {DEFAULT_D_GRID[-1]}; "
    "for onehot, which verifies at d = L, no d above L)",
  )
  parser.add_argument(
    "--top-n",
    type=int,
    metavar="N",
    help="keep only the N largest entries of every row (dense maps)",
  )
  parser.add_argument(
    "--causal",
    action="store_true",
    help="a causal layer (a decoder's: keys j > i masked before the softmax); "
    "the pattern must be causal (no nonzero above the diagonal)",
  )
  parser.add_argument("--seed", type=int, default=0, help="PRNG seed of the construction")
  parser.add_argument("--block-size", type=int, help="keys per streamed block in verification")
  add_matmul_option(parser)
  parser.add_argument(
    "--save-uncertified", action="store_true", help="write OUT even if the pattern is not certified"
  )
  parser.set_defaults(func=main)


def _add_criterion(parser) -> None:
  """What the solution must meet: ε1, ε2 and optionally η, the mass criterion's bound."""
  parser.add_argument("--eps1", type=float, default=0.5, help="ratio tolerance > 0 (default 0.5)")
  parser.add_argument(
    "--eps2", type=float, default=0.5, help="zero tolerance in (0, 1) (default 0.5)"
  )
  parser.add_argument(
    "--max-outside-mass",
    type=float,
    metavar="ETA",
    help="the mass criterion: also every row's softmax mass outside its "
    "support <= ETA in (0, 1) (default: the ratio criterion alone)",
  )


def main(args) -> int:
  """Reads the pattern, searches or takes d, builds and verifies (the certificate), writes OUT;
  0 if certified, 1 if not. Steps: ``_check_options``, ``_search``, ``_certify``."""
  d_grid = _check_options(args)
  check_destination(args.out)
  user = load_pattern(args.pattern, top_n=args.top_n)
  pattern = user.pattern
  print(
    f"pattern      {args.pattern}: L={pattern.length}, N={pattern.nnz} (largest row count), "
    f"{int(pattern.counts()[0].sum())} nonzeros, a_min={float(pattern.a_min):.4g}"
  )
  for change in user.changes:
    print(f"changed      {change}")
  if args.causal:
    try:
      ja.check_causal(pattern)
    except ValueError as error:
      raise CommandError(f"{args.pattern}: {error}") from None
  d_grid = default_grid(args.method, pattern.length) if args.d_grid is None else d_grid
  _plan(args, pattern, d_grid)
  key = jax.random.PRNGKey(args.seed)
  start = time.perf_counter()
  candidates = _search(args, key, pattern, d_grid, start) if args.search else [args.d]
  d, solution, report = _certify(args, key, pattern, candidates)
  seconds = time.perf_counter() - start
  criterion = (
    ""
    if args.max_outside_mass is None
    else f", criterion mass (outside mass <= {args.max_outside_mass:g})"
  )
  criterion += ", causal layer" if args.causal else ""
  print(
    f"method       {args.method}, d={d}, X {tuple(solution.X.shape)}, eps1={args.eps1:g}, "
    f"eps2={args.eps2:g}{criterion}, seed={args.seed}"
  )
  for line in format_report(report, d, seconds):
    print(line)
  if report.ok or args.save_uncertified:
    save_solution(
      args.out,
      solution,
      pattern,
      report,
      Provenance(
        args.method,
        d,
        args.eps1,
        args.eps2,
        args.seed,
        args.pattern,
        user.changes,
        seconds,
        ja.__version__,
        args.max_outside_mass,
        args.causal,
      ),
    )
    print(f"wrote        {args.out}   (re-verify: python -m bench check {args.out})")
  else:
    print(f"not written  {args.out} (not certified; --save-uncertified writes it anyway)")
  return 0 if report.ok else 1


def _check_options(args) -> tuple[int, ...]:
  """CommandError for a bad ε, η, d, block size or a --d-grid without --search; the d grid."""
  try:
    ja.check_eps(args.eps1, args.eps2)
    ja.check_outside_mass(args.max_outside_mass)
    if args.d is not None:
      ja.check_d(args.d)
    ja.check_block_size(args.block_size)
  except ValueError as error:
    raise CommandError(f"bad option: {error}") from None
  if args.d_grid is not None and not args.search:
    raise CommandError("--d-grid needs --search")
  return _d_grid(args.d_grid) if args.d_grid is not None else DEFAULT_D_GRID


def _search(
  args, key, pattern: ja.SparsePattern, d_grid: tuple[int, ...], start: float
) -> list[int]:
  """The grid d at which the method verifies for this pattern (``ja.verify_grid``, on the
  schedule ``ja.min_d`` runs: the cheaper by the cost model), smallest first, or the top of the
  grid if none; prints the search line."""
  schedule = ja.schedule.choose_schedule(args.method, pattern.length, pattern.nnz, d_grid)
  ok = ja.verify_grid(
    key,
    pattern,
    d_grid,
    eps1=args.eps1,
    eps2=args.eps2,
    method=args.method,
    max_outside_mass=args.max_outside_mass,
    matmul=args.matmul,
    causal=args.causal,
    compute=ja.Compute(block_size=args.block_size, schedule=schedule),
  )
  candidates = [d for d, passed in zip(d_grid, ok) if passed] or [d_grid[-1]]
  counted = (
    f"{int(ok.sum())} of {len(d_grid)} verify"
    if schedule == "full"
    else "the grid d not built imputed by monotonicity"
  )
  found = (
    f"smallest verifying d = {candidates[0]} ({counted})"
    if ok.any()
    else f"no d verifies; trying d = {d_grid[-1]}"
  )
  print(
    f"search       {args.method} on d in {d_grid[0]}..{d_grid[-1]}, {schedule} schedule: "
    f"{found}  [{time.perf_counter() - start:.2f} s]"
  )
  return candidates


def _certify(args, key, pattern: ja.SparsePattern, candidates: list[int]):
  """(d, solution, report) of the first candidate d whose solution, built alone, verifies, or of
  the last one. A grid d can, in rare borderline cases, pass in the nested-prefix pass and
  fail when built alone (rounding): the certificate is always the latter."""
  for d in candidates:
    resources.check_disk(
      args.out,
      resources.solution_file_bytes(pattern.length, pattern.nnz, d),
      change="lower --d or write --out to a folder with more space",
    )
    solution = ja.construct.build(
      args.method,
      key,
      pattern,
      d,
      eps1=args.eps1,
      eps2=args.eps2,
      max_outside_mass=args.max_outside_mass,
      causal=args.causal,
    )
    report = jax.block_until_ready(
      ja.verify(
        solution,
        pattern,
        eps1=args.eps1,
        eps2=args.eps2,
        max_outside_mass=args.max_outside_mass,
        causal=args.causal,
        matmul=args.matmul,
        compute=ja.Compute(block_size=args.block_size),
      )
    )
    if report.ok:
      break
  return d, solution, report


def _plan(args, pattern: ja.SparsePattern, d_grid: tuple[int, ...]) -> None:
  """CommandError if the search, solution or file cannot fit; a long search's cost on stderr."""
  available = resources.available_memory(jax.devices()[0])
  length, nnz = pattern.length, pattern.nnz
  d = d_grid[-1] if args.search else args.d
  resources.check_fits(
    f"solve at d={d} (L={length}, N={nnz}, X {length}x{2 * d})",
    resources.solve_bytes(length, nnz, d, args.method),
    available=available,
    change="lower --d" + (" (the largest of --d-grid)" if args.search else ""),
  )
  if not args.search:
    resources.check_disk(
      args.out,
      resources.solution_file_bytes(length, nnz, d),
      change="lower --d or write --out to a folder with more space",
    )
    return
  nested = args.method in ja.construct.NESTED
  resources.plan_search(
    f"solve --search up to d={d} (L={length}, N={nnz})",
    length=length,
    nnz=nnz,
    width=d,
    levels=len(d_grid) if nested else 1,
    method=args.method,
    trials=1,
    available=available,
    change="lower the largest d of --d-grid",
  )
  schedule = ja.schedule.choose_schedule(args.method, length, nnz, d_grid)
  seconds = runner.search_seconds(args.method, length, nnz, d_grid, schedule=schedule)
  if seconds >= resources.MENTION_S:
    print(
      f"plan         {args.method} on {len(d_grid)} grid d up to {d}, {schedule} schedule: "
      f"about {seconds:.0f} s on this project's 2-core CPU (runner.search_seconds)",
      file=sys.stderr,
      flush=True,
    )
