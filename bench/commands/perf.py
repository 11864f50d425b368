"""``python -m bench perf``: verification speed against the matmul ceiling, and peak memory.

Times the checks of ``jaxattn_bench.perf`` round-robin after a warm-up, so
that a loaded machine slows them alike, and prints medians of ``--repeats``
with their throughput (2·L²·d flops per check) and the ratios a/d, b/a and
e/a. ``--no-numpy`` leaves out the NumPy check (and b/a), e.g. on an
accelerator host. ``--memory`` verifies once at a large L in a child process
and reports its peak resident memory. ``--sweep-tiles`` instead times
``ja.verify`` and the search for every (rows, keys) tile of ``--tile-rows`` ×
``--tile-keys`` and prints the fastest of each. ``--optimize`` instead times one
``optimize`` trial with hard negatives at ``--optimize-length`` (a child
process each, for its peak memory) against the dense loss at the same L
where it fits, and checks the result against the float64 dense reference.
Before anything is built, the peak memory of all this
(``jaxattn_bench.resources.perf_bytes``, and ``solve_bytes`` for the
children) is checked against what the device has: a job that cannot fit is
refused in one line, exit status 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxattn as ja
from jaxattn_bench import perf, resources
from jaxattn_bench.errors import CommandError

MEMORY_LIMIT_GIB = 2.0
OPTIMIZE_MEMORY_LIMIT_GIB = 4.0  # one optimize trial, hard negatives (the target at L = 65536)
DENSE_MAX_LENGTH = 4096  # the dense loss holds a few L×L×N arrays: the baseline up to here


def positive_ints(text: str) -> tuple[int, ...]:
  """Parses "256,512" as (256, 512): positive integers separated by commas."""
  try:
    values = tuple(int(v) for v in text.split(","))
  except ValueError:
    values = ()
  if not values or min(values) < 1:
    raise argparse.ArgumentTypeError(f"expected positive integers, comma-separated, got {text!r}")
  return values


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser("perf", help="verification speed vs NumPy and the bare matmul")
  parser.add_argument("--length", type=int, default=4096, help="L")
  parser.add_argument("--d", type=int, default=256, help="d (also d_max of the search grid)")
  parser.add_argument("--nnz", type=int, default=4, help="N")
  parser.add_argument("--repeats", type=int, default=7, help="timed runs of each, after a warm-up")
  parser.add_argument(
    "--per-octave",
    type=int,
    default=2,
    help="search grid: geometric_grid(d, per_octave) (2 gives 16 values to 256)",
  )
  parser.add_argument(
    "--layer-dtype",
    "--matmul-dtype",
    dest="layer_dtype",
    choices=("float32", "bfloat16"),
    default="float32",
    help="the layer's own dtype: Q, K rounded to it, accumulated in float32 "
    "(uncertified; --matmul-dtype is its name before 1.0)",
  )
  parser.add_argument(
    "--grid-start",
    type=int,
    default=1,
    help="search grid: from this d up (geometric_grid(d, per_octave, start))",
  )
  parser.add_argument(
    "--certified",
    action=argparse.BooleanOptionalAction,
    default=True,
    help="time the certified rows too (default; --no-certified leaves them out)",
  )
  parser.add_argument(
    "--no-numpy",
    action="store_true",
    help="leave out (b), the NumPy check, and b/a (e.g. on a GPU host)",
  )
  parser.add_argument("--seed", type=int, default=0)
  _add_modes(parser)
  parser.set_defaults(func=main)


def _add_modes(parser) -> None:
  """The options of perf's other measurements: peak memory, the tile sweep, optimize, causal."""
  parser.add_argument(
    "--memory",
    action="store_true",
    help="also verify once at --memory-length in a child process: peak RSS",
  )
  parser.add_argument("--memory-length", type=int, default=65536)
  parser.add_argument("--memory-d", type=int, default=128)
  parser.add_argument(
    "--sweep-tiles",
    action="store_true",
    help="instead of the table: time ja.verify and the search for every "
    "(rows, keys) tile and print the fastest",
  )
  parser.add_argument(
    "--tile-rows",
    type=positive_ints,
    default=(512, 1024, 2048),
    metavar="R,R,...",
    help="rows per tile to sweep (default 512,1024,2048)",
  )
  parser.add_argument(
    "--tile-keys",
    type=positive_ints,
    default=(256, 512, 1024, 2048),
    metavar="K,K,...",
    help="keys per tile to sweep (default 256,512,1024,2048)",
  )
  parser.add_argument(
    "--optimize",
    action="store_true",
    help="instead of the table: one optimize trial (hard negatives, and the "
    "dense loss where L <= %d), time, peak RSS, float64 check" % DENSE_MAX_LENGTH,
  )
  parser.add_argument(
    "--causal",
    action="store_true",
    help="instead of the table: a causal pattern, ja.verify and the search "
    "timed in a bidirectional and a causal layer (round-robin), and the "
    "speed-up of the causal layer",
  )
  parser.add_argument("--optimize-length", type=int, default=4096, help="L of --optimize")
  parser.add_argument("--optimize-d", type=int, default=16, help="d of --optimize")
  parser.add_argument("--optimize-nnz", type=int, default=2, help="N of --optimize")


def _ceiling_name(rows: int | None) -> str:
  return f"(d) ceiling, {'one product' if rows is None else f'{rows}-row blocks'}"


def speed(args) -> None:
  """The table: (a) ja.verify, (b) NumPy, (c) dense JAX, (d) the bare matmul ceilings and (e)
  the search, timed round-robin with their verdicts, and the certified rows."""
  pattern, solution = perf.problem(args.seed, args.length, args.d, args.nnz)
  queries, keys = solution.queries(), solution.keys()
  fns, verdicts = _speed_checks(args, pattern, solution, (queries, keys))
  grid = ja.geometric_grid(args.d, args.per_octave, start=min(args.grid_start, args.d))
  search_name = f"(e) search, {len(grid)} d <= {args.d}"
  fns[search_name] = perf.search_thunk(queries, keys, pattern, grid, _layer_dtype(args))
  certified = certified_checks(queries, keys, pattern, grid, args) if args.certified else {}
  fns.update({name: fn for name, (fn, _) in certified.items()})
  seconds = perf.time_round_robin(fns, args.repeats)
  _print_speed(args, seconds, verdicts, search_name, grid)
  if certified:
    print_certified(certified, seconds, search_name, grid, args.d)
  if len({v[0] for v in verdicts.values()}) != 1:
    raise CommandError(f"the checks disagree on ok: {verdicts}", status=1)


def _layer_dtype(args) -> jnp.dtype | None:
  """``--layer-dtype`` as the checks take it: None for float32 (the layer computes in float32)."""
  return None if args.layer_dtype == "float32" else jnp.dtype(args.layer_dtype)


def _speed_checks(
  args, pattern, solution, factors: tuple[jax.Array, jax.Array]
) -> tuple[dict[str, Callable[[], Any]], dict]:
  """The timed checks (a)–(d) of the table, name -> thunk, and each verdict, name -> (ok, leak),
  with the float64 dense reference's (not timed) where L ≤ ``REFERENCE_MAX_LENGTH``; ``factors``:
  the solution's (Q, K), computed once."""
  matmul_dtype = jnp.dtype(args.layer_dtype)
  x, w_q, w_k, cols, weights, valid = (
    np.asarray(a)
    for a in (solution.X, solution.w_q, solution.w_k, pattern.cols, pattern.weights, pattern.valid)
  )
  dense = jax.jit(perf.dense_jax, static_argnames="matmul_dtype")
  bare = jax.jit(perf.bare_ceiling, static_argnames=("matmul_dtype", "rows"))
  fns: dict[str, Callable[[], Any]] = {
    "(a) ja.verify": lambda: ja.verify(
      solution, pattern, eps1=perf.EPS1, eps2=perf.EPS2, layer_dtype=_layer_dtype(args)
    ),
    "(b) NumPy float32": lambda: perf.numpy_check(
      x, w_q, w_k, cols, weights, valid, perf.EPS1, perf.EPS2
    ),
    "(c) dense JAX": lambda: dense(
      solution, pattern, perf.EPS1, perf.EPS2, matmul_dtype=matmul_dtype
    ),
    **{
      _ceiling_name(rows): functools.partial(bare, *factors, matmul_dtype=matmul_dtype, rows=rows)
      for rows in perf.CEILING_ROWS
    },
  }
  if args.no_numpy:
    del fns["(b) NumPy float32"]
  report = fns["(a) ja.verify"]()
  verdicts = {"(a) ja.verify": (bool(report.ok), float(report.leak))}
  for name in ("(b) NumPy float32", "(c) dense JAX"):
    if name in fns:
      ok, _, leak = fns[name]()
      verdicts[name] = (bool(ok), float(leak))
  if args.length <= perf.REFERENCE_MAX_LENGTH:
    reference = ja.reference.dense_check(
      x, w_q, w_k, pattern.to_dense(), eps1=perf.EPS1, eps2=perf.EPS2
    )
    verdicts["float64 dense reference"] = (reference.ok, reference.leak)
  return fns, verdicts


def _print_speed(
  args, seconds: dict[str, float], verdicts: dict, search_name: str, grid: tuple[int, ...]
) -> None:
  """The table's rows (ms, GFLOP/s = 2·L²·d / time, verdict) and the ratios a/d, b/a, e/a."""
  flops = 2.0 * args.length * args.length * args.d
  print(perf.environment())
  print(
    f"L={args.length} d={args.d} N={args.nnz} matmul dtype {args.layer_dtype}; medians of "
    f"{args.repeats} after warm-up, round-robin; GFLOP/s = 2·L²·d / time"
  )
  print(f"{'check':<30} {'ms':>9} {'GFLOP/s':>9}  verdict (ok, leak)")
  for name, t in seconds.items():
    ok_leak = verdicts.get(name)
    note = f"  {ok_leak[0]}, {ok_leak[1]:.4g}" if ok_leak else ""
    print(f"{name:<30} {1e3 * t:>9.1f} {flops / t / 1e9:>9.1f}{note}")
  if "float64 dense reference" in verdicts:
    ok, leak = verdicts["float64 dense reference"]
    print(f"{'float64 dense reference':<30} {'':>9} {'':>9}  {ok}, {leak:.4g}  (not timed)")
  ceiling = min(map(_ceiling_name, perf.CEILING_ROWS), key=seconds.__getitem__)
  t_a, t_d, t_e = seconds["(a) ja.verify"], seconds[ceiling], seconds[search_name]
  print(
    f"a/d  verify throughput / bare matmul throughput = {t_d / t_a:.2f}   (target >= 0.7; "
    f"d: the fastest ceiling, {ceiling[13:]})"
  )
  native = perf.native_bfloat16() or (
    "none (bfloat16 operands converted to float32: no avx512_bf16, amx_bf16 or bf16)"
  )
  print(f"bfloat16 arithmetic of this device: {native}")
  if args.no_numpy:
    print("b/a  NumPy time / verify time                   = skipped (--no-numpy)")
  else:
    t_b = seconds["(b) NumPy float32"]
    print(f"b/a  NumPy time / verify time                   = {t_b / t_a:.2f}   (target >= 1.5)")
  print(
    f"e/a  whole-grid search / one verify at d_max     = {t_e / t_a:.2f}   (target <= 1.5); "
    f"grid {grid}"
  )


def certified_checks(queries, keys, pattern, grid, args) -> dict:
  """The certified rows: name -> (thunk, what it returns), verdict-only (a) and search (e)."""
  checks = {"(a0) verdict only, float32": perf.verdict_thunk(queries, keys, pattern, None)}
  for matmul in ja.certify.MATMUL_FORMATS:
    checks[f"(a) certified, {matmul}"] = perf.verdict_thunk(queries, keys, pattern, matmul)
  checks[f"(e1) search, 1 level d = {grid[-1]}"] = perf.search_thunk(
    queries, keys, pattern, (grid[-1],), None
  )
  for matmul in ja.certify.MATMUL_FORMATS:
    checks[f"(e) certified search, {matmul}"] = perf.certified_search_thunk(
      queries, keys, pattern, grid, matmul
    )
  return {name: (fn, fn()) for name, fn in checks.items()}


def print_certified(certified: dict, seconds: dict, search_name: str, grid, d: int) -> None:
  """The certified rows' times, verdicts and rows settled per stage, and their ratios."""
  print(
    "certified (docs/certified.md): rows settled by the bound / the float32 re-check / "
    "the host (search: left undecided, and the levels the host settled)"
  )
  for name, (_, result) in certified.items():
    t = seconds[name]
    if name.startswith("(a)"):
      ok, (bound, recheck, host) = result
      note = f"  {ok}; rows {bound} / {recheck} / {host} on the host"
    elif name.startswith("(e) certified"):
      levels, (bound, recheck, undecided, on_host) = result
      total = bound + recheck + undecided
      note = (
        f"  {int(levels.sum())} of {len(levels)} levels ok; rows {bound / total:.4%} / "
        f"{recheck / total:.4%} / {undecided / total:.4%}, {on_host} levels on the host"
      )
    else:
      note = f"  {result[0]}" if isinstance(result, tuple) else ""
    print(f"{name:<34} {1e3 * t:>9.1f}{note}")
  base_a, base_e = seconds["(a0) verdict only, float32"], seconds[search_name]
  a32, a16 = seconds["(a) certified, float32"], seconds["(a) certified, bfloat16"]
  e32, e16 = seconds["(e) certified search, float32"], seconds["(e) certified search, bfloat16"]
  print(f"certified float32 / float32, verdict only (a)  = {a32 / base_a:.3f}   (target <= 1.10)")
  print(f"certified float32 / float32, search (e)        = {e32 / base_e:.3f}   (target <= 1.10)")
  print(
    f"float32 / certified bfloat16, verdict only (a) = {base_a / a16:.2f}   "
    f"(certified float32 / bfloat16: {a32 / a16:.2f}; target >= 1.5)"
  )
  print(
    f"float32 / certified bfloat16, search (e)       = {base_e / e16:.2f}   "
    f"(certified float32 / bfloat16: {e32 / e16:.2f}; target >= 1.25)"
  )
  one = seconds[f"(e1) search, 1 level d = {grid[-1]}"]
  print(
    f"search cost per level: t_G / t_1 = {base_e / one:.2f} for G = {len(grid)}, so "
    f"t ∝ L²·(d_max + c·G) with c = {perf.level_cost(base_e, one, len(grid), d):.0f} "
    f"(the runner's cost model)"
  )


def causal_speed(args) -> None:
  """``--causal``: one ``random_causal`` pattern, its ``jl`` solution at d; the certified
  ``ja.verify`` and the nested search over the grid, each in both layers, timed round-robin.
  A causal pass skips the key tiles above the diagonal (docs/causal.md)."""
  pattern, solution = perf.problem(
    args.seed, args.length, args.d, args.nnz, ja.patterns.random_causal
  )
  queries, keys = solution.queries(), solution.keys()
  grid = ja.geometric_grid(args.d, args.per_octave, start=min(args.grid_start, args.d))
  fns, verdicts = {}, {}
  for layer, causal in (("bidirectional", False), ("causal", True)):
    fns[f"(a) ja.verify, {layer}"] = functools.partial(
      ja.verify, solution, pattern, eps1=perf.EPS1, eps2=perf.EPS2, causal=causal
    )
    verdicts[layer] = fns[f"(a) ja.verify, {layer}"]()
    fns[f"(e) search, {layer}"] = perf.search_thunk(
      queries, keys, pattern, grid, None, causal=causal
    )
  seconds = perf.time_round_robin(fns, args.repeats)
  print(perf.environment())
  print(
    f"L={args.length} d={args.d} N={args.nnz} random_causal; tiles {ja.default_tiles()} "
    f"(rows, keys); medians of {args.repeats} after warm-up, round-robin; search grid {grid}"
  )
  for name, t in seconds.items():
    layer = name.rsplit(", ", 1)[1]
    note = (
      f"  ok {bool(verdicts[layer].ok)}, certified {bool(verdicts[layer].certified)}"
      if name.startswith("(a)")
      else ""
    )
    print(f"{name:<30} {1e3 * t:>9.1f} ms{note}")
  for label, kind in (("verify (a)", "(a) ja.verify"), ("search (e)", "(e) search")):
    ratio = seconds[f"{kind}, bidirectional"] / seconds[f"{kind}, causal"]
    print(f"causal speed-up, {label:<11} = {ratio:.2f}   (bidirectional time / causal time)")


def sweep(args) -> None:
  length, d = args.length, args.d
  matmul_dtype = _layer_dtype(args)
  pattern, solution = perf.problem(args.seed, length, d, args.nnz)
  grid = ja.geometric_grid(d, args.per_octave)
  tiles = [(rows, keys) for rows in args.tile_rows for keys in args.tile_keys]
  times, oks = perf.sweep_tiles(solution, pattern, grid, tiles, matmul_dtype, args.repeats)
  flops = 2.0 * length * length * d
  print(perf.environment())
  print(
    f"tile sweep: L={length} d={d} N={args.nnz} matmul dtype {args.layer_dtype}, search over "
    f"{len(grid)} d <= {d}; medians of {args.repeats} after warm-up, round-robin; default "
    f"(rows, keys) on {jax.default_backend()}: {ja.default_tiles()}"
  )
  print(
    f"{'rows':>6} {'keys':>6} {'verify ms':>10} {'GFLOP/s':>9} {'search ms':>10} {'GFLOP/s':>9}"
  )
  for (rows, keys), (t_verify, t_search) in times.items():
    print(
      f"{rows:>6} {keys:>6} {1e3 * t_verify:>10.1f} {flops / t_verify / 1e9:>9.1f} "
      f"{1e3 * t_search:>10.1f} {flops / t_search / 1e9:>9.1f}"
    )
  for index, name in enumerate(("verify", "search")):
    rows, keys = min(times, key=lambda tile: times[tile][index])
    print(
      f"best {name} tile ({args.layer_dtype}): rows={rows} keys={keys} "
      f"({1e3 * times[rows, keys][index]:.1f} ms)"
    )
  if len(set(oks.values())) != 1:
    raise CommandError(f"the verdict depends on the tile: {oks}", status=1)


def _child(*arguments) -> dict:
  """The JSON figures of ``python -m jaxattn_bench.perf ARGUMENTS`` run in a child process."""
  command = [sys.executable, "-m", "jaxattn_bench.perf", *map(str, arguments)]
  child = subprocess.run(command, capture_output=True, text=True)
  if child.returncode != 0:
    raise CommandError(
      f"child {' '.join(command[2:])} failed: {child.stderr.strip().splitlines()[-1:]}", status=1
    )
  return json.loads(child.stdout.strip().splitlines()[-1])


def memory(args) -> None:
  length, d = args.memory_length, args.memory_d
  result = _child(length, d, args.nnz, args.seed)
  peak_gib = result["peak_rss_kib"] / 2**20
  dense_gib = 4.0 * length * length / 2**30
  print(
    f"memory: L={length} d={d} N={args.nnz}: build {result['build_s']:.1f} s, verify "
    f"{result['verify_s']:.1f} s ({2.0 * length * length * d / result['verify_s'] / 1e9:.1f} "
    f"GFLOP/s), ok={result['ok']} leak={result['leak']:.4g}; peak RSS of the process "
    f"{peak_gib:.2f} GiB (limit {MEMORY_LIMIT_GIB} GiB; a dense float32 ℓ alone: "
    f"{dense_gib:.0f} GiB)"
  )
  if peak_gib >= MEMORY_LIMIT_GIB:
    raise CommandError(f"peak RSS {peak_gib:.2f} GiB >= {MEMORY_LIMIT_GIB} GiB", status=1)


def optimize(args) -> None:
  """One optimize trial with hard negatives and, up to DENSE_MAX_LENGTH, with the dense loss."""
  length, d, nnz = args.optimize_length, args.optimize_d, args.optimize_nnz
  variants: dict[str, int | str] = {
    f"hard negatives (K={ja.construct.NEGATIVES})": ja.construct.NEGATIVES
  }
  if length <= DENSE_MAX_LENGTH:
    variants["dense loss"] = "dense"
  print(perf.environment())
  print(
    f"optimize: L={length} N={nnz} d={d}, eps1 = eps2 = {perf.EPS1}, a_min = {perf.A_MIN}, "
    f"trial 0 of seed {args.seed}; each variant in a child process"
  )
  print(
    f"{'variant':<24} {'compile s':>9} {'run s':>8} {'steps':>6} {'passes':>6}  "
    f"{'ja.verify (ok, leak)':<22} {'float64 reference':<20} {'peak RSS':>9}"
  )
  results = {}
  for name, negatives in variants.items():
    r = results[name] = _child("optimize", length, d, nnz, args.seed, negatives)
    reference = (
      "not run (L > %d)" % perf.REFERENCE_MAX_LENGTH
      if r["reference_ok"] is None
      else f"{r['reference_ok']}, {r['reference_leak']:.4g}"
    )
    print(
      f"{name:<24} {r['compile_s']:>9.1f} {r['run_s']:>8.2f} {r['steps']:>6} {r['passes']:>6}  "
      f"{str(r['ok']) + ', ' + format(r['leak'], '.4g'):<22} {reference:<20} "
      f"{r['peak_rss_kib'] / 2**20:>5.2f} GiB",
      flush=True,
    )
  hard = results[next(iter(variants))]
  if "dense loss" in results:
    dense = results["dense loss"]
    print(
      f"dense / hard negatives: run time {dense['run_s'] / hard['run_s']:.2f}x, "
      f"peak RSS {dense['peak_rss_kib'] / hard['peak_rss_kib']:.2f}x"
    )
  else:
    print(f"dense loss: not run (L > {DENSE_MAX_LENGTH}: its L×L×N arrays)")
  disagree = {
    n: (r["ok"], r["reference_ok"])
    for n, r in results.items()
    if r["reference_ok"] is not None and r["ok"] != r["reference_ok"]
  }
  if disagree:
    raise CommandError(f"ja.verify and the float64 reference disagree: {disagree}", status=1)
  peak_gib = hard["peak_rss_kib"] / 2**20
  if peak_gib >= OPTIMIZE_MEMORY_LIMIT_GIB:
    raise CommandError(f"peak RSS {peak_gib:.2f} GiB >= {OPTIMIZE_MEMORY_LIMIT_GIB} GiB", status=1)


def check_resources(args) -> None:
  """CommandError (one line, exit 2) unless the ``--memory`` child and the timed checks fit in
  the memory of JAX's default device (``jaxattn_bench.resources``), before anything is built."""
  available = resources.available_memory(jax.devices()[0])
  if args.optimize:
    length, nnz = args.optimize_length, args.optimize_nnz
    checks = [
      resources.REFERENCE_DENSE * length**2 if length <= perf.REFERENCE_MAX_LENGTH else 0,
      resources.optimize_dense_bytes(length, nnz) if length <= DENSE_MAX_LENGTH else 0,
    ]
    resources.check_fits(
      f"perf --optimize at L={length}, N={nnz}, d={args.optimize_d}",
      resources.solve_bytes(length, nnz, args.optimize_d, "optimize") + max(checks),
      available=available,
      change="lower --optimize-length or --optimize-d",
    )
  if args.memory:
    resources.check_fits(
      f"perf --memory at L={args.memory_length}, N={args.nnz}, d={args.memory_d}",
      resources.solve_bytes(args.memory_length, args.nnz, args.memory_d, "jl"),
      available=available,
      change="lower --memory-length or --memory-d",
    )
  if args.optimize:
    return
  levels = len(ja.geometric_grid(args.d, args.per_octave))
  shape = f"L={args.length}, N={args.nnz}, d={args.d}"
  if args.sweep_tiles:
    tiles = [(rows, keys) for rows in args.tile_rows for keys in args.tile_keys]
    resources.check_fits(
      f"perf --sweep-tiles at {shape}",
      resources.perf_bytes(args.length, args.nnz, args.d, levels, tiles=tiles),
      available=available,
      change="lower --length, --d or the largest --tile-rows, --tile-keys",
    )
    return
  dense = max(
    resources.JAX_DENSE,
    0 if args.no_numpy else resources.NUMPY_DENSE,
    resources.REFERENCE_DENSE if args.length <= perf.REFERENCE_MAX_LENGTH else 0,
  )
  resources.check_fits(
    f"perf at {shape} (dense L x L checks)",
    resources.perf_bytes(args.length, args.nnz, args.d, levels, dense=dense),
    available=available,
    change="lower --length or --d",
  )


def main(args) -> int:
  if (
    min(
      args.length,
      args.d,
      args.nnz,
      args.repeats,
      args.per_octave,
      args.grid_start,
      args.memory_length,
      args.memory_d,
      args.optimize_length,
      args.optimize_d,
      args.optimize_nnz,
    )
    < 1
  ):
    raise CommandError(
      "--length, --d, --nnz, --repeats, --per-octave and the memory and "
      "optimize sizes must be positive"
    )
  check_resources(args)
  if args.memory:
    memory(args)
  if args.optimize:
    optimize(args)
  elif args.sweep_tiles:
    sweep(args)
  elif args.causal:
    causal_speed(args)
  else:
    speed(args)
  return 0
