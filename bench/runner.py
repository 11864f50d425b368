"""The grid runner: minimal d of each point of a preset, split over processes, into a store.

For every point (``grid.Point``), d_min comes from ``ja.min_d`` with T
vmapped trials, keyed by the seed and the point's parameters
(``grid.point_key``). With several processes (``hosts``) the pending points
are split by cost; each round every process runs its next point, the
results are all-gathered, and process 0 alone stores them.

Several runs may share one store (``jaxattn_bench.store``): process 0 claims
each round's points before they are computed and skips those another run
holds; when only such points are left it waits for them to be stored, or
takes them over if their claim lapses (its run was killed).
"""

from __future__ import annotations

import contextlib
import datetime
import pathlib
import platform
import subprocess
import sys
import time
from typing import Mapping, Sequence

import jax
import jaxlib
import numpy as np
from tqdm import tqdm

import jaxattn as ja
from jaxattn_bench import grid, hosts, resources
from jaxattn_bench.errors import CommandError
from jaxattn_bench.store import (
  InterruptedWrite,
  Record,
  ResultsStore,
  canonical,
  check_output,
  record_key,
  results_unwritable,
)

# The cost model is the library's (``ja.schedule.search_cost``: multiply-adds of the logit
# products plus a compilation per program), so that plans and the schedule a search chooses agree.
# Units of ``ja.schedule.search_cost`` per second on the 2-core CPU, fitted with the model's C and
# S to the stored wall times of the quick, long, practice and causal presets (docs/data/:
# `python -m jaxattn_bench.cost_fit docs/data/{quick,long,practice,causal}.sqlite`). In total
# the model is within 7% of the time taken, per point within a factor 2.7 above and 5.6 below
# (docs/practice.md, "Which schedule, when none is named").
COST_RATE = 7.98e10
# Seconds between looks at the store while other runs compute the points left.
POLL_S = 0.5


def point_work(point: grid.Point) -> float:
  """Σ over trials of the verification matmul size T·L²·d_max (multiply-adds)."""
  return float(point.trials) * point.length**2 * point.d_grid[-1]


def search_terms(
  method: str,
  length: int,
  nnz: int,
  d_grid: Sequence[int],
  *,
  trials: int = 1,
  schedule: str | None = None,
  causal: bool = False,
) -> ja.schedule.SearchTerms:
  """``ja.schedule.search_terms`` of a search on ``schedule`` (default: the one ``ja.min_d``
  chooses, ``ja.schedule.choose_schedule``), its work scaled by ``causal_share`` in a causal
  layer."""
  schedule = schedule or ja.schedule.choose_schedule(method, length, nnz, d_grid, trials)
  share = causal_share(length) if causal else 1.0
  return ja.schedule.search_terms(
    method, length, nnz, d_grid, schedule=schedule, trials=trials, causal_share=share
  )


def search_seconds(
  method: str,
  length: int,
  nnz: int,
  d_grid: Sequence[int],
  *,
  trials: int = 1,
  schedule: str | None = None,
  causal: bool = False,
) -> float:
  """Expected seconds of a search on this project's 2-core CPU: the cost of its
  ``search_terms`` over ``COST_RATE``. The one cost model of every plan: ``bench run --plan``,
  ``bench practice --plan``, ``bench submit``'s time limits and work split, and the plans
  ``bench min_d`` and ``bench solve --search`` print."""
  return (
    search_terms(method, length, nnz, d_grid, trials=trials, schedule=schedule, causal=causal).cost(
      method
    )
    / COST_RATE
  )


def point_seconds(point: grid.Point) -> float:
  """Expected seconds of a grid point (``search_seconds`` of its search)."""
  return search_seconds(
    point.method, point.length, point.nnz, point.d_grid, trials=point.trials, causal=point.causal
  )


def causal_share(length: int) -> float:
  """The share of the key tiles a causal pass runs (docs/causal.md, "Half the work"): row block
  r of R rows runs the key blocks of K keys up to its last row, ⌈min(L, (r+1)R)/K⌉ of ⌈L/K⌉,
  with the default tiles (R, K) of JAX's default backend (``ja.default_tiles``)."""
  rows, keys = ja.default_tiles()
  rows = min(rows, length)
  blocks, key_blocks = -(-length // rows), -(-length // keys)
  visited = sum(-(-min(length, (r + 1) * rows) // keys) for r in range(blocks))
  return visited / (blocks * key_blocks)


def _git_commit() -> str | None:
  root = pathlib.Path(__file__).resolve().parent.parent
  try:
    commit = subprocess.run(
      ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(
      ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None
  return commit + ("-dirty" if dirty else "")


def environment(preset: grid.Preset, seed: int) -> dict:
  """Run metadata for the store (``bench.store.RUN_FIELDS``)."""
  device = jax.devices()[0]
  return dict(
    started_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    preset=preset.name,
    preset_source=preset.source,
    seed=seed,
    argv=" ".join(sys.argv),
    jax_version=jax.__version__,
    jaxlib_version=jaxlib.__version__,
    backend=jax.default_backend(),
    device_kind=device.device_kind,
    device_count=jax.device_count(),
    git_commit=_git_commit(),
    python=platform.python_version(),
    platform=platform.platform(),
  )


def solve_point(point: grid.Point, seed: int) -> ja.MinDResult:
  """d_min of one point: ``ja.min_d`` with the point's key, sampler, settings and criterion, in
  its dtype."""
  with ja.dtype_context(point.dtype):
    return ja.min_d(
      grid.point_key(seed, point),
      point.sampler(),
      point.d_grid,
      eps1=point.eps1,
      eps2=point.eps2,
      method=point.method,
      trials=point.trials,
      delta=point.delta,
      dtype=point.dtype,
      max_outside_mass=point.max_outside_mass,
      matmul=point.matmul,
      causal=point.causal,
    )


def theory_dim(point: grid.Point) -> int | None:
  """``ja.theory.jl_dim`` of the point; None when δ = 0 (no finite bound)."""
  if point.delta == 0:
    return None
  return ja.theory.jl_dim(
    point.length,
    point.nnz,
    eps1=point.eps1,
    eps2=point.eps2,
    a_min=point.a_min,
    delta=point.delta,
    max_outside_mass=point.max_outside_mass,
  )


def describe(point: grid.Point, names: list[str]) -> str:
  return " ".join(f"{name}={getattr(point, name)}" for name in names)


def varying_axes(points) -> list[str]:
  names = [n for n in grid.AXES if len({getattr(p, n) for p in points}) > 1]
  return names or ["length"]


def _grid_d(d: float, bound: bool = True) -> str:
  """A grid d; an estimate of inf is '>top' (above the grid), an interval end '-' / 'inf'."""
  if not bound and d == float("inf"):
    return ">top"
  return {float("inf"): "inf", float("-inf"): "-"}.get(d) or str(int(d))


def summary_table(points, records, fresh: set) -> str:
  """Summary: one line per preset point (the axes that vary), d_min, d_50 [95% interval],
  d_{1−δ}, jl_dim, seconds. '>top': above the grid; '-'/'inf': an unbounded interval end."""
  names = varying_axes(points)
  widths = [max(len(n), *(len(str(getattr(p, n))) for p in points)) for n in names]
  header = " ".join(f"{n:>{w}}" for n, w in zip(names, widths))
  lines = [
    f"{header} {'d_min':>7} {'d_50 [95% CI]':>19} {'d_1-δ':>6} {'top d':>6} "
    f"{'jl_dim':>7} {'seconds':>8}  status"
  ]
  for point, record in zip(points, records):
    cells = " ".join(f"{str(getattr(point, n)):>{w}}" for n, w in zip(names, widths))
    d_min = str(record.d_min) if record.d_min is not None else "> top"
    status = "new" if record_key(record) in fresh else "stored"
    median = (
      ""
      if record.d_median is None
      else (
        f"{_grid_d(record.d_median, False)} [{_grid_d(record.d_median_low)}, "
        f"{_grid_d(record.d_median_high)}]"
      )
    )
    quantile = "" if record.d_quantile is None else _grid_d(record.d_quantile, False)
    lines.append(
      f"{cells} {d_min:>7} {median:>19} {quantile:>6} {int(record.d[-1]):>6} "
      f"{str(record.jl_dim):>7} "
      f"{record.wall_s:>8.1f}  {status}"
    )
  return "\n".join(lines)


def run_rounds(pending, seed: int, processes: hosts.Processes, store, run_id, bar, names) -> set:
  """Runs the ``pending`` points this run can claim, split over the processes: each round,
  process 0 claims the round's points (``ResultsStore.claim``; a point another run holds or
  has stored is skipped), every process runs its claimed point, and process 0 stores them.

  ``bar`` is a tqdm-like progress bar (``set_description``, ``update`` by cost).
  Returns the (canonical params, seed) of the points computed.
  """
  shares = hosts.split_work([point_seconds(p) for p in pending], processes.size)
  levels = max(len(p.d_grid) for p in pending)
  most_trials = max(p.trials for p in pending)
  computed = set()
  for round_ in range(max(map(len, shares))):
    picks = [share[round_] if round_ < len(share) else None for share in shares]
    claimed = hosts.broadcast(
      np.array(
        [
          store is not None
          and index is not None
          and store.claim((canonical(pending[index].params()), seed))
          for index in picks
        ]
      ),
      processes,
    )
    verdicts = np.zeros((processes.size, most_trials, levels), np.int8)
    walls = np.zeros(processes.size, np.float32)
    if claimed[processes.rank]:
      point = pending[picks[processes.rank]]
      bar.set_description(f"{round_ + 1}/{len(shares[processes.rank])} {describe(point, names)}")
      start = time.perf_counter()
      verdicts[processes.rank, : point.trials, : len(point.d_grid)] = solve_point(
        point, seed
      ).verdict_states()
      walls[processes.rank] = time.perf_counter() - start
    verdicts, walls = hosts.gather_sum(verdicts, processes), hosts.gather_sum(walls, processes)
    for process, index in enumerate(picks):
      if not claimed[process]:
        continue
      point = pending[index]
      computed.add((canonical(point.params()), seed))
      if store is not None:
        result = ja.MinDResult.from_verdicts(
          point.d_grid, verdicts[process, : point.trials, : len(point.d_grid)], point.delta
        )
        store.add(run_id, point.params(), seed, result, theory_dim(point), float(walls[process]))
        bar.update(point_seconds(point))
  return computed


class NoStore:
  """Stands in for the results store on processes other than 0: they neither read nor write it."""

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return None

  def finished(self) -> set:
    return set()


def open_store(
  results: pathlib.Path, work: Mapping[int, Sequence[grid.Point]], allow_network_fs: bool = False
) -> ResultsStore:
  """Process 0's results store: read-only when it already holds every point of ``work`` (seed ->
  points) (so
  a complete store is never changed and may be a read-only file), else open for writing (as
  is a file a killed run left mid-write, to roll that back); CommandError, before any work,
  when points are pending and the file cannot be written. On a network filesystem the store
  has one writer unless ``allow_network_fs`` (``ResultsStore``)."""
  if results.is_file():
    try:
      store = ResultsStore(results, create=False)
    except InterruptedWrite:  # a killed run's write: rolled back by opening it for writing
      return ResultsStore(results, allow_network_fs=allow_network_fs)
    done = store.finished()
    missing = sum(
      (canonical(p.params()), seed) not in done for seed, points in work.items() for p in points
    )
    if not missing:
      return store
    store.close()
    reason = results_unwritable(results)
    if reason:
      raise CommandError(
        f"{missing} point(s) pending, but results file {str(results)!r} "
        f"cannot be written ({reason}); make it writable or give --results "
        "another file"
      )
  return ResultsStore(results, allow_network_fs=allow_network_fs)


def pending_points(points, seed: int, store, processes: hosts.Processes) -> list[grid.Point]:
  """The points not yet stored for ``seed``, as process 0's store says (broadcast to all)."""
  done = store.finished()
  is_pending = hosts.broadcast(
    np.array([(canonical(p.params()), seed) not in done for p in points]), processes
  )
  return [p for p, flag in zip(points, is_pending) if flag]


def run_pending(
  preset: grid.Preset, pending, seed: int, store, processes: hosts.Processes, bar
) -> set:
  """Records the run's environment (process 0) and runs ``pending`` (``run_rounds``) until
  every point is stored: points other runs hold are waited for (``POLL_S``), and run here
  if their claim lapses. Process 0 renews its claims meanwhile (``ResultsStore.heartbeat``).
  Returns the (canonical params, seed) of the points computed by this run."""
  lead = processes.rank == 0
  run_id = store.start_run(environment(preset, seed)) if lead else None
  computed = set()
  with store.heartbeat() if lead else contextlib.nullcontext():
    while pending:
      fresh = run_rounds(
        pending, seed, processes, store if lead else None, run_id, bar, varying_axes(preset.points)
      )
      left = pending_points(pending, seed, store, processes)
      bar.update(
        sum(
          point_seconds(p)
          for p in pending  # stored by other runs
          if p not in left and (canonical(p.params()), seed) not in fresh
        )
      )
      if left and not fresh:
        bar.set_description(f"waiting for {len(left)} point(s) that other runs are computing")
        time.sleep(POLL_S)
      computed |= fresh
      pending = left
  return computed


def checked_seed(preset: grid.Preset, seed: int | None, out: pathlib.Path) -> int:
  """The seed of a one-process run of ``preset`` into the folder ``out`` (the preset's if None),
  after the checks made before any work: CommandError if it is negative, if the points do not
  fit in the default device's memory (``resources.check_points_fit``) or if ``out`` cannot be
  a folder written to."""
  seed = preset.seed if seed is None else seed
  if seed < 0:
    raise CommandError(f"--seed must be >= 0, got {seed}")
  resources.check_points_fit(preset.points, available=resources.available_memory(jax.devices()[0]))
  check_output(out, "output folder (--out)", folder=True)
  return seed


def run_in_process(preset: grid.Preset, seed: int, store) -> tuple[list[Record], list[Record], set]:
  """Runs the preset's pending points at ``seed`` in this process alone (progress bar on
  stderr); returns ``stored_records`` and the keys of the points stored now."""
  processes = hosts.Processes(0, 1)
  pending = pending_points(preset.points, seed, store, processes)
  fresh = set()
  if pending:
    with progress_bar(pending, True) as bar:
      fresh = run_pending(preset, pending, seed, store, processes, bar)
  return *stored_records(store, preset.points, seed), fresh


def stored_records(store, points, seed: int) -> tuple[list[Record], list[Record]]:
  """(the records of ``points`` at ``seed``, in order; every record in the store)."""
  by_key = {record_key(r): r for r in store.records()}
  return [by_key[(canonical(p.params()), seed)] for p in points], list(by_key.values())


def stored_seconds(store, points, seed: int) -> list[float | None]:
  """Wall seconds of each of ``points`` stored for ``seed``; None where it is pending."""
  by_key = {record_key(r): r.wall_s for r in store.records()}
  return [by_key.get((canonical(p.params()), seed)) for p in points]


def progress_bar(pending, shown: bool) -> tqdm:
  """A progress bar with ETA over the points' cost (``point_seconds``); on stderr."""
  return tqdm(
    total=sum(map(point_seconds, pending)),
    bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
    file=sys.stderr,
    dynamic_ncols=True,
    disable=not shown,
  )
