"""What ``python -m bench perf`` times: checks of one solution, the search, and peak memory.

One set of inputs (a ``jl`` solution at L, d for a random N-regular
pattern), four ways to check it:

  (a) ``ja.verify``: streamed over key blocks, never an L×L array;
  (b) NumPy float32: dense logits, boolean support mask, row max (``numpy_check``),
      the baseline a user would write;
  (c) dense JAX: the same dense computation, jitted (``dense_jax``);
  (d) bare ceiling: ℓ = Q Kᵀ and one row max, jitted, in one product or in row blocks
      (``CEILING_ROWS``): the matmul alone, the fastest tiling;

and (e) the whole-grid search (every d of a geometric grid up to d_max in
one nested pass of ``ja.row_stats``, as ``ja.min_d`` runs it per trial).
Certified rows (docs/certified.md) time the verdict alone, as the search
decides it (``verdict_thunk``), and the certified search
(``certified_search_thunk``), each with float32 and bfloat16 products,
against the computed float32 verdict of the same kernel; ``level_cost``
turns the search's time against one level into the per-level constant of
the runner's cost model.
``sweep_tiles`` times (a) and (e) over a set of tile sizes.
``python -m jaxattn_bench.perf L d N seed`` verifies once and prints its
figures and peak resident memory as JSON (the ``--memory`` child);
``python -m jaxattn_bench.perf optimize L d N seed K`` runs one ``optimize``
trial (K hard negatives per row, ``dense`` for the dense loss) and checks it
(``optimize_once``, the ``--optimize`` child).
"""

from __future__ import annotations

import fractions
import functools
import json
import os
import platform
import resource
import sys
import time

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

import jaxattn as ja
from jaxattn_bench import resources

EPS1, EPS2, A_MIN = 0.5, 0.5, 0.2
HIGHEST = jax.lax.Precision.HIGHEST
# The float64 dense reference verdict is computed up to this L (a few L×L float64 arrays).
REFERENCE_MAX_LENGTH = 4096


def numpy_check(x, w_q, w_k, cols, weights, valid, eps1, eps2) -> tuple[bool, float, float]:
  """The baseline: the check a user would write in NumPy float32, (ok, ratio_error, leak), densely.

  Timed, not trusted: ``ja.reference.dense_check`` is the float64 reference.
  ℓ = (X W_Q)(X W_K)ᵀ; spread_i and gap_i (docs/definitions.md) from a
  boolean L×L support mask; ratio_error = exp(max spread) − 1, leak = exp(max gap).
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
  gap = np.where(support, -np.inf, logits).max(1) - np.where(support, logits, np.inf).min(1)
  ratio_error, leak = np.expm1(spread.max()), np.exp(gap.max())
  return bool(ratio_error <= eps1 and leak <= eps2), float(ratio_error), float(leak)


def dense_jax(solution, pattern, eps1, eps2, matmul_dtype):
  """The dense JAX baseline: ``numpy_check`` in JAX, dense logits and mask (jit it)."""
  queries, keys = (m.astype(matmul_dtype) for m in (solution.queries(), solution.keys()))
  logits = jnp.matmul(queries, keys.T, precision=HIGHEST, preferred_element_type=jnp.float32)
  rows = jnp.arange(pattern.length)[:, None]
  support = jnp.zeros(logits.shape, bool).at[rows, pattern.cols].max(pattern.valid)
  shifted = jnp.take_along_axis(logits, pattern.cols, 1) - pattern.log_weights
  spread = jnp.max(jnp.where(pattern.valid, shifted, -jnp.inf), 1) - jnp.min(
    jnp.where(pattern.valid, shifted, jnp.inf), 1
  )
  gap = jnp.max(jnp.where(support, -jnp.inf, logits), 1) - jnp.min(
    jnp.where(support, logits, jnp.inf), 1
  )
  ratio_error, leak = jnp.expm1(jnp.max(spread)), jnp.exp(jnp.max(gap))
  return (ratio_error <= eps1) & (leak <= eps2), ratio_error, leak


def bare_ceiling(queries, keys, matmul_dtype, rows: int | None = None):
  """The ceiling: max_j (Q Kᵀ)_ij, the same matmul and one row max (jit it, ``rows`` static): in
  one L×L product, or in blocks of ``rows`` query rows (``lax.map``; the last block padded)."""

  def block_max(q):
    logits = jnp.matmul(
      q.astype(matmul_dtype),
      keys.astype(matmul_dtype).T,
      precision=HIGHEST,
      preferred_element_type=jnp.float32,
    )
    return jnp.max(logits, axis=-1)

  length = queries.shape[0]
  if rows is None or rows >= length:
    return block_max(queries)
  padded = jnp.pad(queries, ((0, -length % rows), (0, 0))).reshape(-1, rows, queries.shape[-1])
  return jax.lax.map(block_max, padded).reshape(-1)[:length]


# Row blocks the ceiling is timed at (None: one L×L product): the fastest is the ceiling, XLA's
# best matmul with a row max at these shapes (one product materialises the L×L logits).
CEILING_ROWS = (None, 1024, 256)


def native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> str | None:
  """The device's native bfloat16 arithmetic: "gpu"/"tpu" on those backends; on a CPU, the first
  of the flags avx512_bf16, amx_bf16 (x86) or bf16 (Arm) it reports; None if it has none (XLA
  then converts bfloat16 operands to float32, docs/certified.md)."""
  platform = jax.devices()[0].platform
  if platform != "cpu":
    return platform
  try:
    with open(cpuinfo, encoding="utf-8") as file:
      flags = set(file.read().split())
  except OSError:
    return None
  return next((flag for flag in ("avx512_bf16", "amx_bf16", "bf16") if flag in flags), None)


def time_round_robin(fns: dict, repeats: int) -> dict:
  """Median wall seconds of each thunk, run in turn ``repeats`` times after one warm-up each."""
  for fn in fns.values():
    jax.block_until_ready(fn())
  times: dict[str, list[float]] = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
  return {name: float(np.median(t)) for name, t in times.items()}


def problem(
  seed: int, length: int, d: int, nnz: int, generator=ja.patterns.random_regular
) -> tuple[ja.SparsePattern, ja.Solution]:
  """The inputs every check times: a pattern of ``generator`` (default a random N-regular one;
  ``random_causal`` for ``bench perf --causal``) and its ``jl`` solution at d."""
  key_p, key_x = jax.random.split(jax.random.PRNGKey(seed))
  pattern = generator(key_p, length=length, nnz=nnz, a_min=A_MIN)
  return pattern, ja.construct.jl(key_x, pattern, d=d, eps1=EPS1, eps2=EPS2)


def environment() -> str:
  """One line naming the device, host cores and versions."""
  device = jax.devices()[0]
  return (
    f"device: {device.platform} {device.device_kind} x{jax.local_device_count()} "
    f"({os.cpu_count()} host cores, {platform.machine()}); jax {jax.__version__}, "
    f"jaxlib {jaxlib.__version__}, "
    f"numpy {np.__version__}, python {platform.python_version()}"
  )


def search_thunk(
  queries,
  keys,
  pattern,
  grid: tuple[int, ...],
  matmul_dtype,
  block_size: int | None = None,
  row_block: int | None = None,
  causal: bool = False,
):
  """A thunk running the nested-prefix search over ``grid`` on Q, K (jitted, as ``ja.min_d`` does),
  in tiles of ``row_block`` × ``block_size`` (default: ``ja.default_tiles()``), in a causal
  layer with ``causal``."""
  scales = grid[-1] / jnp.asarray(grid, jnp.float32)
  search = jax.jit(
    lambda q, k, p: (
      ja.row_stats(
        q,
        k,
        p,
        grid,
        scales,
        block_size=block_size,
        row_block=row_block,
        full=False,
        matmul_dtype=matmul_dtype,
        causal=causal,
      ).gap
    )
  )
  return lambda: search(queries, keys, pattern)


def verdict_thunk(queries, keys, pattern, matmul: str | None):
  """A thunk deciding ℓ = Q Kᵀ as the search decides a level (the verdict alone, no outside mass;
  a row that certainly fails decides it): ``matmul`` None is the computed float32 verdict
  (uncertified, the former default); "float32" or "bfloat16" the certified one
  (``ja.certify``). Returns (ok, rows settled by the bound, by the float32 re-check, on the
  host), the counts None when uncertified."""
  d = queries.shape[1]
  limits = ja.certify.thresholds(EPS1, EPS2)
  form = None if matmul is None else ja.certify.MATMUL_FORMATS[matmul]

  @jax.jit
  def first(q, k, p):
    stats = jax.tree.map(
      lambda s: s[0], ja.row_stats(q, k, p, (d,), jnp.ones(1), full=False, matmul_dtype=form)
    )
    if matmul is None:
      return jnp.all((stats.spread <= limits.ratio_above) & (stats.gap <= limits.gap_above))
    return ja.certify.row_states(stats, limits)

  def run():
    out = np.asarray(first(queries, keys, pattern))
    if matmul is None:
      return bool(out), None
    if np.any(out == ja.certify.CERTAIN_FAIL):
      return False, (int(np.sum(out != ja.certify.UNDECIDED)), 0, 0)
    ok, settled = ja.certify.settle_rows(
      queries, keys, pattern, out, EPS1, EPS2, split=d, recheck=matmul == "bfloat16"
    )
    return bool(ok.all()), settled

  return run


def certified_search_thunk(queries, keys, pattern, grid: tuple[int, ...], matmul: str):
  """A thunk running the certified nested search over ``grid`` on Q, K (``ja.min_d``'s pass for
  one trial: bound, in-program float32 re-check after bfloat16, host for undecided levels).
  Returns (verdicts [G], rows decided by the bound, by the re-check, left undecided, levels
  settled on the host); rows count over all G levels."""
  scales = grid[-1] / jnp.asarray(grid, jnp.float32)
  limits = ja.certify.thresholds(EPS1, EPS2)
  form = ja.certify.MATMUL_FORMATS[matmul]
  host = [np.asarray(x) for x in (queries, keys, *pattern[:3])]

  @jax.jit
  def first(q, k, p):
    stats = ja.row_stats(q, k, p, grid, scales, full=False, matmul_dtype=form)
    states = ja.certify.row_states(stats, limits)
    after = (
      ja.certify.recheck_rows(q, k, p, states, grid, scales, limits)
      if matmul == "bfloat16"
      else states
    )
    decided = lambda x: jnp.sum(x != ja.certify.UNDECIDED)
    return (
      ja.certify.level_states(after),
      ja.certify.undecided_rows(after),
      jnp.stack([decided(states), decided(after) - decided(states), states.size - decided(after)]),
    )

  def run():
    levels, (rows, count), counts = jax.tree.map(np.array, first(queries, keys, pattern))
    undecided = np.flatnonzero(levels == ja.certify.UNDECIDED)
    for g in undecided:
      q, k, *arrays = host
      listed = rows[g, : count[g]] if count[g] <= rows.shape[1] else np.arange(len(q))
      levels[g] = ja.certify.rows_ok_exact(
        q[:, : grid[g]],
        k[:, : grid[g]],
        *arrays,
        listed,
        EPS1,
        EPS2,
        fractions.Fraction(grid[-1], grid[g]),
        dense=pattern.dense_host,
      ).all()
    return levels == ja.certify.CERTAIN_OK, (*counts.tolist(), len(undecided))

  return run


def level_cost(seconds_grid: float, seconds_one: float, levels: int, d_max: int) -> float:
  """c of the search's cost model t ∝ L²·(d_max + c·G), from the times of the search over G
  levels and of one level at d_max: t_G/t_1 = r = (d_max + cG)/(d_max + c), so
  c = d_max(r − 1)/(G − r)."""
  ratio = seconds_grid / seconds_one
  return d_max * (ratio - 1) / (levels - ratio) if levels > ratio else float("inf")


def sweep_tiles(
  solution, pattern, grid: tuple[int, ...], tiles, matmul_dtype, repeats: int
) -> tuple[dict, dict]:
  """Median seconds of ``ja.verify`` and of the search over ``grid`` for every (rows, keys) tile.

  Tiles are clamped to L (as ``row_stats`` does) and deduplicated; all are
  timed round-robin (``time_round_robin``). Returns ({tile: (verify s,
  search s)}, {tile: verify ok}): the verdict must not depend on the tile.
  """
  length = pattern.length
  tiles = sorted({(min(rows, length), min(keys, length)) for rows, keys in tiles})
  queries, keys = solution.queries(), solution.keys()
  fns = {}
  for rows, block in tiles:
    fns[rows, block, "verify"] = functools.partial(
      ja.verify,
      solution,
      pattern,
      eps1=EPS1,
      eps2=EPS2,
      layer_dtype=matmul_dtype,
      compute=ja.Compute(block_size=block, row_block=rows),
    )
    fns[rows, block, "search"] = search_thunk(
      queries, keys, pattern, grid, matmul_dtype, block_size=block, row_block=rows
    )
  seconds = time_round_robin(fns, repeats)
  times = {tile: (seconds[(*tile, "verify")], seconds[(*tile, "search")]) for tile in tiles}
  return times, {tile: bool(fns[(*tile, "verify")]().ok) for tile in tiles}


def verify_once(length: int, d: int, nnz: int, seed: int) -> dict:
  """Builds and verifies once at L (in the ``--memory`` child): timings, verdict, peak RSS."""
  start = time.perf_counter()
  pattern, solution = problem(seed, length, d, nnz)
  jax.block_until_ready(solution)
  built = time.perf_counter()
  report = jax.block_until_ready(ja.verify(solution, pattern, eps1=EPS1, eps2=EPS2))
  done = time.perf_counter()
  return dict(
    build_s=built - start,
    verify_s=done - built,
    ok=bool(report.ok),
    leak=float(report.leak),
    ratio_error=float(report.ratio_error),
    peak_rss_kib=peak_rss_kib(),
  )


def optimize_once(length: int, d: int, nnz: int, seed: int, negatives: int | None) -> dict:
  """One ``optimize`` trial at L (the ``--optimize`` child): compile and run seconds, Adam steps,
  streamed passes, peak RSS up to the end of the run, ``ja.verify`` of the result and the
  float64 dense reference's verdict (L ≤ ``REFERENCE_MAX_LENGTH``).

  The pattern and key are trial 0 of a search with key PRNGKey(seed)
  (``ja.trial_keys``); ``negatives`` None is the dense loss.
  """
  pattern_keys, method_keys = ja.trial_keys(jax.random.PRNGKey(seed), 1)
  pattern = ja.patterns.random_regular(pattern_keys[0], length=length, nnz=nnz, a_min=A_MIN)
  run = jax.jit(
    functools.partial(
      ja.construct.optimize_run,
      d=d,
      width=d,
      eps1=EPS1,
      eps2=EPS2,
      training=ja.construct.Training(negatives=negatives),
    )
  )
  start = time.perf_counter()
  compiled = run.lower(method_keys[0], pattern).compile()
  compiled_at = time.perf_counter()
  result = jax.block_until_ready(compiled(method_keys[0], pattern))
  done = time.perf_counter()
  peak = peak_rss_kib()  # before the checks: the dense float64 reference holds L×L arrays
  solution = ja.construct.solution_from_factors(result.queries, result.keys)
  report = ja.verify(solution, pattern, eps1=EPS1, eps2=EPS2)
  figures = dict(
    compile_s=compiled_at - start,
    run_s=done - compiled_at,
    steps=int(result.steps),
    passes=int(result.passes),
    passed=bool(result.passed),
    ok=bool(report.ok),
    leak=float(report.leak),
    ratio_error=float(report.ratio_error),
    reference_ok=None,
    reference_leak=None,
  )
  if length <= REFERENCE_MAX_LENGTH:
    reference = ja.reference.dense_check(
      solution.X, solution.w_q, solution.w_k, pattern.to_dense(), eps1=EPS1, eps2=EPS2
    )
    figures.update(reference_ok=reference.ok, reference_leak=reference.leak)
  return dict(figures, peak_rss_kib=peak)


def peak_rss_kib() -> int:
  """This process's peak resident memory in KiB: VmHWM of its own address space
  (``resources.peak_resident_bytes``).

  ``getrusage(...).ru_maxrss`` is only the fallback without /proc: on Linux,
  across fork and exec it keeps the high-water mark of the parent's image, so a
  child started from a large process would report the parent's memory.
  """
  peak = resources.peak_resident_bytes()
  if peak is not None:
    return peak // 1024
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB elsewhere


if __name__ == "__main__":  # the --memory and --optimize children (module docstring)
  if sys.argv[1] == "optimize":
    length, d, nnz, seed = (int(a) for a in sys.argv[2:6])
    negatives = None if sys.argv[6] == "dense" else int(sys.argv[6])
    print(json.dumps(optimize_once(length, d, nnz, seed, negatives)))
  else:
    print(json.dumps(verify_once(*(int(a) for a in sys.argv[1:5]))))
