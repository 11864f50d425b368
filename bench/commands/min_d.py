"""``python -m bench min_d``: minimal d at one (family, L, N, ε1, ε2, a_min) point."""

from __future__ import annotations

import sys
import time

import jax

import jaxattn as ja
from jaxattn_bench import resources, runner
from jaxattn_bench.commands import add_matmul_option
from jaxattn_bench.errors import CommandError
from jaxattn_bench.grid import published_width


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser("min_d", help="minimal d of a method at one grid point")
  parser.add_argument(
    "--family",
    default="random_regular",
    metavar="NAME|SPEC",
    help=f"a generator ({', '.join(sorted(ja.patterns.GENERATORS))}) or a "
    "published family such as 'longformer(window=4,globals=1)' (choices: "
    f"{', '.join(sorted(ja.patterns.FAMILIES))}; default random_regular)",
  )
  parser.add_argument("--method", default="jl")
  parser.add_argument("--length", type=int, required=True, help="L")
  parser.add_argument(
    "--nnz", type=int, help="N (required for a generator; a published family derives it)"
  )
  parser.add_argument("--eps1", type=float, default=0.5)
  parser.add_argument("--eps2", type=float, default=0.5)
  parser.add_argument("--a-min", type=float, default=0.2)
  parser.add_argument("--trials", type=int, default=16)
  parser.add_argument("--delta", type=float, default=0.1)
  parser.add_argument("--d-max", type=int, default=8192, help="largest d of the geometric grid")
  parser.add_argument("--per-octave", type=int, default=4, help="grid points per doubling of d")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--schedule",
    choices=("full", "adaptive"),
    help="full: every (trial, d); adaptive: up by doublings until a trial "
    "verifies, then down to its first failure (default: the cheaper by the cost "
    "model, ja.schedule.choose_schedule)",
  )
  parser.add_argument(
    "--causal",
    action="store_true",
    help="judge in a causal layer (keys j > i masked before the softmax); the "
    "family must be causal, e.g. random_causal",
  )
  add_matmul_option(parser)
  parser.set_defaults(func=main)


def _value(d: float | None, top: int) -> str:
  """A grid d, or '> top' for a threshold above the grid (not reached); '-' without trials."""
  return "-" if d is None else f"> {top}" if d == float("inf") else str(int(d))


def _bound(d: float | None) -> str:
  """An interval end at grid resolution; ±∞ where the order statistics leave it unbounded."""
  return "-" if d is None else {float("inf"): "∞", float("-inf"): "-∞"}.get(d) or str(int(d))


def _thresholds(values, top: int) -> str:
  return " ".join(_value(v, top) for v in values)


def family_nnz(family: str, length: int, nnz: int | None) -> int:
  """N of ``family`` at ``length``: ``nnz`` for a generator (ValueError if missing); a published
  family's own width (``published_width``), which a given ``nnz`` must equal."""
  width = published_width(family, length)
  if width is None:
    if nnz is None:
      raise ValueError(f"--nnz is required for the generator {family!r}")
    return nnz
  if nnz is not None and nnz != width:
    raise ValueError(
      f"{family} at --length {length} has N = {width}; got --nnz {nnz} (leave it "
      "out to use the family's own)"
    )
  return width


def main(args) -> int:
  if args.d_max < 1 or args.per_octave < 1:
    raise CommandError("--d-max and --per-octave must be positive")
  try:
    args.nnz = family_nnz(args.family, args.length, args.nnz)
    sampler = ja.patterns.Sampler(args.family, length=args.length, nnz=args.nnz, a_min=args.a_min)
  except ValueError as error:
    raise CommandError(str(error)) from None
  grid = ja.geometric_grid(args.d_max, args.per_octave)
  plan = _plan(args, grid)
  start = time.perf_counter()
  try:
    result = ja.min_d(
      jax.random.PRNGKey(args.seed),
      sampler,
      grid,
      eps1=args.eps1,
      eps2=args.eps2,
      method=args.method,
      trials=args.trials,
      delta=args.delta,
      compute=ja.Compute(max_trial_batch=plan.max_trial_batch, schedule=args.schedule),
      matmul=args.matmul,
      causal=args.causal,
    )
    bound = ja.theory.jl_dim(
      args.length, args.nnz, eps1=args.eps1, eps2=args.eps2, a_min=args.a_min, delta=args.delta
    )
  except ValueError as error:
    raise CommandError(str(error)) from None
  _print_result(args, result, grid, bound, time.perf_counter() - start)
  return 0


def _print_result(
  args, result: ja.MinDResult, grid: tuple[int, ...], bound: int, seconds: float
) -> None:
  """The search's line, its success rates per grid d with their intervals, d_min, the
  per-trial thresholds and first successes, d_50 and d_{1−δ}, jl_dim and how it ran."""
  print(
    f"{args.family} L={args.length} N={args.nnz} eps1={args.eps1} eps2={args.eps2} "
    f"a_min={args.a_min} method={args.method} trials={args.trials} delta={args.delta} "
    f"seed={args.seed}{' layer=causal' if args.causal else ''} "
    f"({jax.devices()[0].device_kind}, {seconds:.1f} s)"
  )
  print(f"{'d':>6} {'success':>8} {'95% CI':>15}")
  for d, rate, low, high in zip(result.d_grid, result.success_rate, result.ci_low, result.ci_high):
    print(f"{d:>6} {rate:>8.3f}   [{low:.3f}, {high:.3f}]")
  print(
    f"d_min = {result.d_min if result.d_min is not None else f'not reached (> {grid[-1]})'}"
    f"  (first grid d where >= {1 - args.delta:g} of the trials verify)"
  )
  print(
    f"thresholds d*_t = {_thresholds(result.thresholds, grid[-1])}  (per trial: verifies at"
    " every grid d from d*_t on)"
  )
  print(
    f"first success   = {_thresholds(result.first_success, grid[-1])}  (per trial: the paper's"
    " ascending scan)"
  )
  for name, p, (value, low, high) in (
    ("d_50", 0.5, (result.d_median, result.d_median_low, result.d_median_high)),
    (
      f"d_{1 - args.delta:g}",
      1 - args.delta,
      (result.d_quantile, result.d_quantile_low, result.d_quantile_high),
    ),
  ):
    print(
      f"{name} = {_value(value, grid[-1])}  95% CI [{_bound(low)}, {_bound(high)}]  "
      f"({p:g}-quantile of the thresholds; interval from order statistics)"
    )
  print(f"jl_dim = {bound}  (provable d for jl at delta={args.delta})")
  if result.evaluated is not None:
    print(
      f"adaptive search: {int(result.evaluated.sum())} of {result.evaluated.size} (trial, d) "
      f"built; the others imputed by monotonicity, {result.non_monotone} trial(s) found "
      "non-monotone (ja.min_d, docs/practice.md)"
    )
  print(
    f"verdicts {'exact' if result.certified else 'computed (not certified)'}: products "
    f"{args.matmul}, {result.levels_on_host} (trial, d) settled on the host "
    "(docs/certified.md)"
  )


def _plan(args, grid: tuple[int, ...]) -> resources.Plan:
  """The memory plan of the search (CommandError if one trial cannot fit); its cost on stderr."""
  nested = args.method in ja.construct.NESTED
  adaptive = (
    args.schedule
    or ja.schedule.choose_schedule(args.method, args.length, args.nnz, grid, args.trials)
  ) == "adaptive"
  if args.trials < 1:
    raise CommandError(f"--trials must be >= 1, got {args.trials}")
  plan = resources.plan_search(
    f"min_d at L={args.length}, N={args.nnz}, d_max={grid[-1]}",
    length=args.length,
    nnz=args.nnz,
    width=grid[-1],
    levels=len(grid) if nested else 1,
    method=args.method,
    trials=args.trials,
    available=resources.available_memory(jax.devices()[0]),
    change="lower --length, --nnz or --d-max",
  )
  seconds = runner.search_seconds(
    args.method,
    args.length,
    args.nnz,
    grid,
    trials=args.trials,
    schedule="adaptive" if adaptive else "full",
    causal=args.causal,
  )
  what = (
    f"plan         {args.trials} trials ({plan.max_trial_batch} at most at once), "
    f"{len(grid)} grid d up to {grid[-1]}"
  )
  line = resources.cost_line(what, plan, seconds)
  if line:
    print(line, file=sys.stderr, flush=True)
  return plan
