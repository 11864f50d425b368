"""``python -m bench perf``: verification speed against the matmul ceiling, and peak memory.

One run, one set of inputs (a ``jl`` solution at L, d for a random N-regular
pattern), four ways to check it, timed round-robin after a warm-up so that a
loaded machine slows them alike; medians of ``--repeats``:

  (a) ``ja.verify``: streamed over key blocks, never an L×L array;
  (b) NumPy float32: dense logits, boolean support mask, row max (``numpy_check``);
  (c) dense JAX: the same dense computation, jitted;
  (d) bare ceiling: ℓ = Q Kᵀ and one row max, jitted: the matmul alone.

Throughput is 2·L²·d flops per check. Also timed: the whole-grid search
(every d of a geometric grid up to d_max in one nested pass, as ``ja.min_d``
runs it per trial) against one ``ja.verify`` at d_max. ``--memory`` verifies
once at a large L in a child process and reports its peak resident memory.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

import jaxattn as ja
from bench._cli import CommandError
from bench.min_d import geometric_grid
from jaxattn._src.construct import HIGHEST
from jaxattn._src.verify import row_stats

EPS1, EPS2, A_MIN = 0.5, 0.5, 0.2
MEMORY_LIMIT_GIB = 2.0


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser("perf", help="verification speed vs NumPy and the bare matmul")
  parser.add_argument("--length", type=int, default=4096, help="L")
  parser.add_argument("--d", type=int, default=256, help="d (also d_max of the search grid)")
  parser.add_argument("--nnz", type=int, default=4, help="N")
  parser.add_argument("--repeats", type=int, default=7, help="timed runs of each, after a warm-up")
  parser.add_argument("--per-octave", type=int, default=2,
                      help="search grid: geometric_grid(d, per_octave) (2 gives 16 values to 256)")
  parser.add_argument("--matmul-dtype", choices=("float32", "bfloat16"), default="float32",
                      help="operand dtype of the JAX matmuls (accumulation stays float32)")
  parser.add_argument("--memory", action="store_true",
                      help="also verify once at --memory-length in a child process: peak RSS")
  parser.add_argument("--memory-length", type=int, default=65536)
  parser.add_argument("--memory-d", type=int, default=128)
  parser.add_argument("--seed", type=int, default=0)
  parser.set_defaults(func=main)


def numpy_check(x, w_q, w_k, cols, weights, valid, eps1, eps2) -> tuple[bool, float, float]:
  """The check a user would write in NumPy float32: (ok, ratio_error, leak), densely.

  ℓ = (X W_Q)(X W_K)ᵀ; spread_i and gap_i of DESIGN §2 from a boolean L×L
  support mask; ratio_error = exp(max spread) − 1, leak = exp(max gap).
  """
  logits = (x @ w_q) @ (x @ w_k).T
  length = logits.shape[0]
  support = np.zeros((length, length), bool)
  rows = np.broadcast_to(np.arange(length)[:, None], cols.shape)
  support[rows[valid], cols[valid]] = True
  log_w = np.where(valid, np.log(weights), -np.inf)
  log_w = np.where(valid, log_w - log_w.max(1, keepdims=True), 0.0).astype(np.float32)
  shifted = np.take_along_axis(logits, cols, 1) - log_w
  spread = np.where(valid, shifted, -np.inf).max(1) - np.where(valid, shifted, np.inf).min(1)
  gap = (np.where(support, -np.inf, logits).max(1)
         - np.where(support, logits, np.inf).min(1))
  ratio_error, leak = np.expm1(spread.max()), np.exp(gap.max())
  return bool(ratio_error <= eps1 and leak <= eps2), float(ratio_error), float(leak)


def _dense_jax(solution, pattern, eps1, eps2, matmul_dtype):
  """``numpy_check`` in JAX: dense logits and mask, jitted."""
  queries, keys = (m.astype(matmul_dtype) for m in (solution.queries(), solution.keys()))
  logits = jnp.matmul(queries, keys.T, precision=HIGHEST, preferred_element_type=jnp.float32)
  rows = jnp.arange(pattern.length)[:, None]
  support = jnp.zeros(logits.shape, bool).at[rows, pattern.cols].max(pattern.valid)
  shifted = jnp.take_along_axis(logits, pattern.cols, 1) - pattern.log_weights
  spread = (jnp.max(jnp.where(pattern.valid, shifted, -jnp.inf), 1)
            - jnp.min(jnp.where(pattern.valid, shifted, jnp.inf), 1))
  gap = (jnp.max(jnp.where(support, -jnp.inf, logits), 1)
         - jnp.min(jnp.where(support, logits, jnp.inf), 1))
  ratio_error, leak = jnp.expm1(jnp.max(spread)), jnp.exp(jnp.max(gap))
  return (ratio_error <= eps1) & (leak <= eps2), ratio_error, leak


def _bare(queries, keys, matmul_dtype):
  """The ceiling: max_j (Q Kᵀ)_ij, the same matmul and one row max."""
  logits = jnp.matmul(queries.astype(matmul_dtype), keys.astype(matmul_dtype).T,
                      precision=HIGHEST, preferred_element_type=jnp.float32)
  return jnp.max(logits, axis=-1)


def _time_round_robin(fns: dict, repeats: int) -> dict:
  """Median wall seconds of each thunk, run in turn ``repeats`` times after one warm-up each."""
  for fn in fns.values():
    jax.block_until_ready(fn())
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
  return {name: float(np.median(t)) for name, t in times.items()}


def _problem(seed: int, length: int, d: int, nnz: int):
  key_p, key_x = jax.random.split(jax.random.PRNGKey(seed))
  pattern = ja.patterns.random_regular(key_p, length=length, nnz=nnz, a_min=A_MIN)
  return pattern, ja.construct.jl(key_x, pattern, d=d, eps1=EPS1, eps2=EPS2)


def _environment() -> str:
  device = jax.devices()[0]
  return (f"device: {device.platform} {device.device_kind} x{jax.local_device_count()} "
          f"({os.cpu_count()} host cores, {platform.machine()}); jax {jax.__version__}, "
          f"jaxlib {jaxlib.__version__}, "
          f"numpy {np.__version__}, python {platform.python_version()}")


def speed(args) -> None:
  length, d = args.length, args.d
  matmul_dtype = jnp.dtype(args.matmul_dtype)
  pattern, solution = _problem(args.seed, length, d, args.nnz)
  queries, keys = solution.queries(), solution.keys()
  host = [np.asarray(a) for a in (solution.X, solution.w_q, solution.w_k, pattern.cols,
                                  pattern.weights, pattern.valid)]
  dense = jax.jit(_dense_jax, static_argnames="matmul_dtype")
  bare = jax.jit(_bare, static_argnames="matmul_dtype")
  fns = {
      "(a) ja.verify": lambda: ja.verify(solution, pattern, EPS1, EPS2, matmul_dtype=(
          None if matmul_dtype == jnp.float32 else matmul_dtype)),
      "(b) NumPy float32": lambda: numpy_check(*host, EPS1, EPS2),
      "(c) dense JAX": lambda: dense(solution, pattern, EPS1, EPS2, matmul_dtype=matmul_dtype),
      "(d) bare matmul + row max": lambda: bare(queries, keys, matmul_dtype=matmul_dtype),
  }
  verdicts = {name: (bool(out[0]), float(out[2])) for name, out in (
      ("(a) ja.verify", (lambda r: (r.ok, r.ratio_error, r.leak))(fns["(a) ja.verify"]())),
      ("(b) NumPy float32", fns["(b) NumPy float32"]()),
      ("(c) dense JAX", fns["(c) dense JAX"]()))}
  grid = geometric_grid(d, args.per_octave)
  scales = d / jnp.asarray(grid, jnp.float32)
  search = jax.jit(lambda q, k, p: row_stats(q, k, p, grid, scales, full=False, matmul_dtype=(
      None if matmul_dtype == jnp.float32 else matmul_dtype)).gap)
  fns[f"(e) search, {len(grid)} d <= {d}"] = lambda: search(queries, keys, pattern)
  seconds = _time_round_robin(fns, args.repeats)

  flops = 2.0 * length * length * d
  print(_environment())
  print(f"L={length} d={d} N={args.nnz} matmul dtype {args.matmul_dtype}; medians of "
        f"{args.repeats} after warm-up, round-robin; GFLOP/s = 2·L²·d / time")
  print(f"{'check':<30} {'ms':>9} {'GFLOP/s':>9}  verdict (ok, leak)")
  for name, t in seconds.items():
    ok_leak = verdicts.get(name)
    note = f"  {ok_leak[0]}, {ok_leak[1]:.4g}" if ok_leak else ""
    print(f"{name:<30} {1e3 * t:>9.1f} {flops / t / 1e9:>9.1f}{note}")
  t_a, t_b, t_d = (seconds[k] for k in ("(a) ja.verify", "(b) NumPy float32",
                                        "(d) bare matmul + row max"))
  t_e = seconds[f"(e) search, {len(grid)} d <= {d}"]
  print(f"a/d  verify throughput / bare matmul throughput = {t_d / t_a:.2f}   (target >= 0.7)")
  print(f"b/a  NumPy time / verify time                   = {t_b / t_a:.2f}   (target >= 1.5)")
  print(f"e/a  whole-grid search / one verify at d_max     = {t_e / t_a:.2f}   (target <= 1.5); "
        f"grid {grid}")
  if len({v[0] for v in verdicts.values()}) != 1:
    raise CommandError(f"the checks disagree on ok: {verdicts}", status=1)


def _verify_once(length: int, d: int, nnz: int, seed: int) -> dict:
  """Child process: build and verify once at L; timings and verdict as a dict."""
  start = time.perf_counter()
  pattern, solution = _problem(seed, length, d, nnz)
  jax.block_until_ready(solution)
  built = time.perf_counter()
  report = jax.block_until_ready(ja.verify(solution, pattern, EPS1, EPS2))
  done = time.perf_counter()
  return dict(build_s=built - start, verify_s=done - built, ok=bool(report.ok),
              leak=float(report.leak), ratio_error=float(report.ratio_error),
              peak_rss_kib=_peak_rss_kib())


def _peak_rss_kib() -> int:
  """This process's peak resident memory in KiB: VmHWM of its own address space.

  ``getrusage(...).ru_maxrss`` is not used on Linux: across fork and exec it
  keeps the high-water mark of the parent's image, so a child started from a
  large process would report the parent's memory.
  """
  try:
    with open("/proc/self/status") as status:
      for line in status:
        if line.startswith("VmHWM:"):
          return int(line.split()[1])
  except OSError:
    pass
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB elsewhere


def memory(args) -> None:
  length, d = args.memory_length, args.memory_d
  command = [sys.executable, "-m", "bench.perf", str(length), str(d), str(args.nnz), str(args.seed)]
  child = subprocess.run(command, capture_output=True, text=True)
  if child.returncode != 0:
    raise CommandError(f"child verification failed: {child.stderr.strip().splitlines()[-1:]}",
                       status=1)
  result = json.loads(child.stdout.strip().splitlines()[-1])
  peak_gib = result["peak_rss_kib"] / 2**20
  dense_gib = 4.0 * length * length / 2**30
  print(f"memory: L={length} d={d} N={args.nnz}: build {result['build_s']:.1f} s, verify "
        f"{result['verify_s']:.1f} s ({2.0 * length * length * d / result['verify_s'] / 1e9:.1f} "
        f"GFLOP/s), ok={result['ok']} leak={result['leak']:.4g}; peak RSS of the process "
        f"{peak_gib:.2f} GiB (limit {MEMORY_LIMIT_GIB} GiB; a dense float32 ℓ alone: "
        f"{dense_gib:.0f} GiB)")
  if peak_gib >= MEMORY_LIMIT_GIB:
    raise CommandError(f"peak RSS {peak_gib:.2f} GiB >= {MEMORY_LIMIT_GIB} GiB", status=1)


def main(args) -> int:
  if min(args.length, args.d, args.nnz, args.repeats, args.memory_length, args.memory_d) < 1:
    raise CommandError("--length, --d, --nnz, --repeats and the memory sizes must be positive")
  if args.memory:
    memory(args)
  speed(args)
  return 0


if __name__ == "__main__":  # the --memory child: python -m bench.perf L d N seed
  print(json.dumps(_verify_once(*(int(a) for a in sys.argv[1:5]))))
