"""``python -m bench run``: minimal d over a preset grid -> results store -> figures -> fit.

For every point of the preset (``bench.grid``), d_min comes from ``ja.min_d``
with T vmapped trials, keyed by the seed and the point's parameters. Finished
points are stored at once (``bench.store``); a rerun skips them, so an
interrupted run resumes where it stopped. At the end: a summary table, the
figures and the fit table (``plots``), and optionally a tidy CSV.

With several processes (``bench.hosts``: ``--coordinator``, ``--num-processes``,
``--process-id``, or ``--distributed``) the pending points are split by cost;
each round every process runs its next point, the results are all-gathered,
and process 0 alone stores them and reports.
"""

from __future__ import annotations

import contextlib
import datetime
import pathlib
import platform
import subprocess
import sys
import time

import jax
import jaxlib
import numpy as np
from tqdm import tqdm

import jaxattn as ja
from bench import grid, hosts
from bench._cli import CommandError
from bench.store import ResultsStore, canonical, export_csv, record_key

# Rough cost model for the progress bar: seconds ∝ T·L²·(d_max + 330·G) + a compile.
_LEVEL_COST, _COMPILE_COST = 330, 7e10


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser("run", help="search the minimal d over a preset grid",
                                 description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="quick", metavar="NAME|PATH.toml",
                      help=f"one of {grid.preset_names()} or a TOML file (default: quick)")
  parser.add_argument("--results", type=pathlib.Path, metavar="PATH",
                      help="SQLite results file (default: results/<preset>.sqlite)")
  parser.add_argument("--seed", type=int, help="seed of every point's key (default: the preset's)")
  parser.add_argument("--export-csv", type=pathlib.Path, metavar="PATH",
                      help="also write every stored point as a tidy CSV, one row per (point, d)")
  parser.add_argument("--figures", type=pathlib.Path, metavar="DIR",
                      help="folder for figures and fit files (default: results path without "
                           "its suffix)")
  parser.add_argument("--no-figures", action="store_true", help="skip figures and the fit")
  parser.add_argument("--plan", action="store_true",
                      help="list the points and their work, then stop (nothing is run)")
  hosts.add_arguments(parser)
  parser.set_defaults(func=main)


def point_work(point: grid.Point) -> float:
  """Σ over trials of the verification matmul size T·L²·d_max (multiply-adds)."""
  return float(point.trials) * point.length**2 * point.d_grid[-1]


def _cost(point: grid.Point) -> float:
  levels = len(point.d_grid)
  return point.trials * point.length**2 * (point.d_grid[-1] + _LEVEL_COST * levels) + _COMPILE_COST


def _git_commit() -> str | None:
  root = pathlib.Path(__file__).resolve().parent.parent
  try:
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                            "--untracked-files=no"], capture_output=True, text=True,
                           check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None
  return commit + ("-dirty" if dirty else "")


def environment(preset: grid.Preset, seed: int) -> dict:
  """Run metadata for the store (``bench.store.RUN_FIELDS``)."""
  device = jax.devices()[0]
  return dict(started_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              preset=preset.name, preset_source=preset.source, seed=seed,
              argv=" ".join(sys.argv), jax_version=jax.__version__,
              jaxlib_version=jaxlib.__version__, backend=jax.default_backend(),
              device_kind=device.device_kind, device_count=jax.device_count(),
              git_commit=_git_commit(), python=platform.python_version(),
              platform=platform.platform())


def precision(dtype: str):
  """Context in which a point of ``dtype`` runs: 64-bit JAX for float64 only, for its duration."""
  return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def solve_point(point: grid.Point, seed: int) -> ja.MinDResult:
  """d_min of one point: ``ja.min_d`` with the point's key, sampler and settings, in ``precision``."""
  with precision(point.dtype):
    return ja.min_d(grid.point_key(seed, point), point.sampler(), point.d_grid, eps1=point.eps1,
                    eps2=point.eps2, method=point.method, trials=point.trials, delta=point.delta,
                    dtype=point.dtype)


def theory_dim(point: grid.Point) -> int | None:
  """``ja.theory.jl_dim`` of the point; None when δ = 0 (no finite bound)."""
  if point.delta == 0:
    return None
  return ja.theory.jl_dim(point.length, point.nnz, point.eps1, point.eps2, point.a_min,
                          point.delta)


def _describe(point: grid.Point, names: list[str]) -> str:
  return " ".join(f"{name}={getattr(point, name)}" for name in names)


def _varying_axes(points) -> list[str]:
  names = [n for n in grid.AXES if len({getattr(p, n) for p in points}) > 1]
  return names or ["length"]


def _table(points, records, fresh: set) -> str:
  """Summary: one line per preset point (the axes that vary), d_min, jl_dim, seconds."""
  names = _varying_axes(points)
  widths = [max(len(n), *(len(str(getattr(p, n))) for p in points)) for n in names]
  header = " ".join(f"{n:>{w}}" for n, w in zip(names, widths))
  lines = [f"{header} {'d_min':>7} {'top d':>6} {'jl_dim':>7} {'seconds':>8}  status"]
  for point, record in zip(points, records):
    cells = " ".join(f"{str(getattr(point, n)):>{w}}" for n, w in zip(names, widths))
    d_min = str(record.d_min) if record.d_min is not None else "> top"
    status = "new" if record_key(record) in fresh else "stored"
    lines.append(f"{cells} {d_min:>7} {int(record.d[-1]):>6} {str(record.jl_dim):>7} "
                 f"{record.wall_s:>8.1f}  {status}")
  return "\n".join(lines)


def _run_rounds(pending, seed: int, processes: hosts.Processes, store, run_id, bar, names):
  """Runs ``pending`` split over the processes; process 0 stores each round's results."""
  shares = hosts.split_work([_cost(p) for p in pending], processes.count)
  levels = max(len(p.d_grid) for p in pending)
  fresh = set()
  for round_ in range(max(map(len, shares))):
    counts = np.zeros((processes.count, levels), np.int32)
    walls = np.zeros(processes.count, np.float32)
    mine = shares[processes.index][round_:round_ + 1]
    for index in mine:
      point = pending[index]
      count = len(shares[processes.index])
      bar.set_description(f"{round_ + 1}/{count} {_describe(point, names)}")
      start = time.perf_counter()
      counts[processes.index, :len(point.d_grid)] = solve_point(point, seed).successes
      walls[processes.index] = time.perf_counter() - start
    counts, walls = hosts.gather_sum(counts, processes), hosts.gather_sum(walls, processes)
    for process, share in enumerate(shares):
      if round_ < len(share) and store is not None:
        point = pending[share[round_]]
        result = ja.MinDResult.from_counts(point.d_grid, counts[process, :len(point.d_grid)],
                                           point.trials, point.delta)
        store.add(run_id, point.params(), seed, result, theory_dim(point), float(walls[process]))
        fresh.add((canonical(point.params()), seed))
        bar.update(_cost(point))
  return fresh


class _NoStore:
  """Stands in for the results store on processes other than 0: they neither read nor write it."""

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return None

  def finished(self) -> set:
    return set()


def main(args) -> int:
  processes = hosts.initialize(args)
  preset = grid.load_preset(args.preset)
  seed = preset.seed if args.seed is None else args.seed
  if seed < 0:
    raise CommandError(f"--seed must be >= 0, got {seed}")
  points = preset.points
  if args.plan:
    names = _varying_axes(points)
    for point in points:
      print(f"{_describe(point, names)} d_max={point.d_grid[-1]} G={len(point.d_grid)} "
            f"T={point.trials} work={point_work(point):.3g}")
    print(f"{len(points)} points, total work Σ T·L²·d_max = {sum(map(point_work, points)):.3g} "
          "multiply-adds")
    return 0
  results = args.results or pathlib.Path("results") / f"{preset.name}.sqlite"
  lead = processes.index == 0
  with (ResultsStore(results) if lead else _NoStore()) as store:
    done = store.finished()
    is_pending = hosts.broadcast(np.array(
        [(canonical(p.params()), seed) not in done for p in points]), processes)
    pending = [p for p, flag in zip(points, is_pending) if flag]
    if lead:
      print(f"preset {preset.name}: {len(points)} points, {len(points) - len(pending)} stored in "
            f"{results}, {len(pending)} to run on {jax.default_backend()} "
            f"({jax.devices()[0].device_kind})"
            + (f", {processes.count} processes" if processes.count > 1 else ""), flush=True)
    fresh = set()
    if pending:
      run_id = store.start_run(environment(preset, seed)) if lead else None
      bar_format = "{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"
      with tqdm(total=sum(map(_cost, pending)), bar_format=bar_format, file=sys.stderr,
                dynamic_ncols=True, disable=not lead) as bar:
        fresh = _run_rounds(pending, seed, processes, store if lead else None, run_id, bar,
                            _varying_axes(points))
    if not lead:
      return 0
    by_key = {record_key(r): r for r in store.records()}
    all_records = list(by_key.values())
  records = [by_key[(canonical(p.params()), seed)] for p in points]
  print(_table(points, records, fresh))
  if args.export_csv:
    export_csv(all_records, args.export_csv)
    print(f"wrote {len(all_records)} points to {args.export_csv}")
  if not args.no_figures:
    from plots import write_report  # matplotlib only when figures are wanted
    print(write_report(records, args.figures or results.with_suffix("")).text())
  return 0
