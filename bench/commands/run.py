"""``python -m bench run``: minimal d over a preset grid -> results store -> figures -> fit.

Finished points are stored at once (``jaxattn_bench.store``); a rerun skips
them, so an interrupted run resumes where it stopped, and runs started
together on one store share its points (each computed once). A store that
already holds every point is only read (it may be a read-only file), and
the output paths are checked before any work. At the end: a summary
table, the figures and the fit table (``jaxattn_plots``), and optionally a
tidy CSV. ``--seeds 0-4`` (or ``0,2,7``) runs the preset at each seed into
the same store and reports the fitted slope and law verdict per seed, and
whether they agree. ``--causal`` judges every point in a causal layer
(docs/causal.md). The work itself: ``jaxattn_bench.runner``; several processes:
``jaxattn_bench.hosts``; independent shards of a job array: ``--shard I/N``
(``jaxattn_bench.shards``, docs/clusters.md).
"""

from __future__ import annotations

import pathlib
from typing import Mapping, Sequence

import jax

from jaxattn_bench import grid, hosts, resources, runner, shards
from jaxattn_bench.errors import CommandError
from jaxattn_bench.store import ResultsStore, check_output, export_csv


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser(
    "run", help="search the minimal d over a preset grid", description=__doc__.splitlines()[0]
  )
  parser.add_argument(
    "--preset",
    default="quick",
    metavar="NAME|PATH.toml",
    help=f"one of {grid.preset_names()} or a TOML file (default: quick)",
  )
  parser.add_argument(
    "--results",
    type=pathlib.Path,
    metavar="PATH",
    help="SQLite results file (default: results/<preset>.sqlite)",
  )
  parser.add_argument("--seed", type=int, help="seed of every point's key (default: the preset's)")
  parser.add_argument(
    "--seeds",
    metavar="A-B|A,B,...",
    help="run the preset at each of these seeds (a range or a comma list) into "
    "one store; report slope and law verdict per seed",
  )
  parser.add_argument(
    "--export-csv",
    type=pathlib.Path,
    metavar="PATH",
    help="also write every stored point as a tidy CSV, one row per (point, d)",
  )
  parser.add_argument(
    "--figures",
    type=pathlib.Path,
    metavar="DIR",
    help="folder for figures and fit files (default: results path without its suffix)",
  )
  parser.add_argument("--no-figures", action="store_true", help="skip figures and the fit")
  parser.add_argument(
    "--causal",
    action="store_true",
    help="judge every point in a causal layer (keys j > i masked before the "
    "softmax; docs/causal.md); every family must be causal",
  )
  parser.add_argument(
    "--plan",
    action="store_true",
    help="list the points and their work (and, if the results file exists, "
    "which are stored, with their seconds) and whether this machine would "
    "refuse a point, then stop (nothing is run)",
  )
  _add_cluster_options(parser)
  hosts.add_arguments(parser)
  parser.set_defaults(func=main)


def _add_cluster_options(parser) -> None:
  """A shard of a job array (``--shard``, ``--manifest``) and a store on a network filesystem."""
  parser.add_argument(
    "--shard",
    metavar="I/N",
    help="run shard I of N (0 <= I < N): a cost-balanced share of the preset's "
    "(point, seed) pairs, split from the whole preset, into its own store "
    "(default results/<preset>.shard-I-of-N.sqlite); join the stores with "
    "bench merge (docs/clusters.md)",
  )
  parser.add_argument(
    "--manifest",
    type=pathlib.Path,
    metavar="PATH.json",
    help="with --shard: take the shard's points from this frozen split "
    "(written by bench submit) instead of splitting the preset now",
  )
  parser.add_argument(
    "--allow-network-fs",
    action="store_true",
    help="let concurrent runs share a store on a network filesystem whose "
    "locks SQLite does not trust (NFS, SMB/CIFS; docs/clusters.md); "
    "by default a store there has one writer",
  )


def parse_seeds(spec: str) -> list[int]:
  """'0-4' -> [0, 1, 2, 3, 4]; '0,2,7' -> [0, 2, 7]; CommandError on anything else."""
  try:
    if "-" in spec and "," not in spec:
      first, last = (int(part) for part in spec.split("-"))
      seeds = list(range(first, last + 1))
      if last < first:
        raise ValueError
    else:
      seeds = [int(part) for part in spec.split(",")]
  except ValueError:
    raise CommandError(
      f"--seeds: expected A-B with 0 <= A <= B or a comma list of seeds >= 0, got {spec!r}"
    ) from None
  if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
    raise CommandError(f"--seeds: expected distinct seeds >= 0, got {spec!r}")
  return seeds


def plan(points, seed: int, results: pathlib.Path) -> None:
  """Prints each point's work; if ``results`` exists, its stored seconds and the share done."""
  stored = results.is_file()
  seconds: list[float | None] = [None] * len(points)
  if stored:
    with ResultsStore(results, create=False) as store:
      seconds = runner.stored_seconds(store, points, seed)
  names = runner.varying_axes(points)
  for point, wall in zip(points, seconds):
    status = "" if not stored else "  pending" if wall is None else f"  stored {wall:.1f} s"
    print(
      f"{runner.describe(point, names)} d_max={point.d_grid[-1]} G={len(point.d_grid)} "
      f"T={point.trials} work={runner.point_work(point):.3g}{status}"
    )
  work = sum(map(runner.point_work, points))
  print(
    f"{len(points)} points, total work Σ T·L²·d_max = {work:.3g} "
    f"multiply-adds, expected about {sum(map(runner.point_seconds, points)) / 60:.0f} min on "
    "this project's 2-core CPU (runner.point_seconds)"
  )
  if stored:
    done = [(p, wall) for p, wall in zip(points, seconds) if wall is not None]
    cost = sum(runner.point_seconds(p) for p, _ in done) / sum(map(runner.point_seconds, points))
    print(
      f"progress: {len(done)} of {len(points)} points stored in {results} for seed {seed}, "
      f"{cost:.1%} of the cost model's total, in {sum(w for _, w in done):.1f} s of point time"
    )


def check_outputs(args, results: pathlib.Path) -> None:
  """CommandError now, not after the work, if the CSV or the figures cannot be written."""
  if args.export_csv:
    check_output(args.export_csv, "--export-csv file")
  if not args.no_figures:
    check_output(args.figures or results.with_suffix(""), "figures folder (--figures)", folder=True)


def main(args) -> int:
  if args.manifest and not args.shard:
    raise CommandError("--manifest goes with --shard I/N")
  if args.shard and (args.distributed or args.num_processes is not None):
    raise CommandError("give --shard (independent tasks) or several processes, not both")
  processes = hosts.initialize(args)
  preset = grid.load_preset(args.preset)
  if args.causal:
    preset = grid.in_causal_layer(preset)
  work, results = _work(args, preset)
  available = resources.available_memory(jax.devices()[0])
  if args.plan:  # the plan is printed even for a preset this machine would refuse
    for seed, seed_points in work.items():
      plan(seed_points, seed, results)
    try:
      resources.check_points_fit(preset.points, available=available)
    except CommandError as refusal:
      print(f"refused here: {refusal}")
    return 0
  resources.check_points_fit(preset.points, available=available)
  lead = processes.rank == 0
  if lead:
    check_outputs(args, results)
  records, all_records = _run_seeds(args, preset, work, results, processes)
  if not lead:
    return 0
  if args.export_csv:
    export_csv(all_records, args.export_csv)
    print(f"wrote {len(all_records)} points to {args.export_csv}")
  if not args.no_figures:
    from jaxattn_plots import write_report  # matplotlib only when figures are wanted

    print(
      write_report(records, args.figures or results.with_suffix(""), reference=all_records).text()
    )
  return 0


def _work(args, preset: grid.Preset) -> tuple[Mapping[int, Sequence[grid.Point]], pathlib.Path]:
  """The points to run per seed (``--seed``, ``--seeds``; a shard's share with ``--shard``) and
  the store they go to."""
  if args.seeds is not None and args.seed is not None:
    raise CommandError("give --seed or --seeds, not both")
  seeds = (
    parse_seeds(args.seeds)
    if args.seeds is not None
    else [preset.seed if args.seed is None else args.seed]
  )
  if seeds[0] < 0:
    raise CommandError(f"--seed must be >= 0, got {seeds[0]}")
  points = preset.points
  if not args.shard:
    return (
      {seed: points for seed in seeds},
      args.results or pathlib.Path("results") / f"{preset.name}.sqlite",
    )
  index, count = shards.parse_shard(args.shard)
  split = (
    shards.read_manifest(args.manifest) if args.manifest else shards.split(points, seeds, count)
  )
  if len(split) != count:
    raise CommandError(f"--manifest {args.manifest} holds {len(split)} shards, not {count}")
  args.no_figures = True  # a shard's figures come from the merged store (bench merge)
  return (
    shards.select(points, split[index]),
    args.results or shards.shard_path(preset.name, index, count),
  )


def _run_seeds(
  args,
  preset: grid.Preset,
  work: Mapping[int, Sequence[grid.Point]],
  results: pathlib.Path,
  processes,
) -> tuple[list, list]:
  """Runs each seed's pending points into the store at ``results`` (the lead process reports
  and writes; the others compute their share), and the lead's records: the preset's points of
  every seed, and everything stored."""
  lead = processes.rank == 0
  records: list = []
  all_records: list = []
  opened = runner.open_store(results, work, args.allow_network_fs) if lead else runner.NoStore()
  with opened as store:
    for seed, seed_points in work.items():
      pending = runner.pending_points(seed_points, seed, store, processes)
      if lead:
        print(
          f"preset {preset.name}{f' shard {args.shard}' if args.shard else ''}, seed {seed}: "
          f"{len(seed_points)} points, {len(seed_points) - len(pending)} stored in "
          f"{results}, {len(pending)} to run on "
          f"{jax.default_backend()} ({jax.devices()[0].device_kind})"
          + (f", {processes.size} processes" if processes.size > 1 else ""),
          flush=True,
        )
      fresh = set()
      if pending:
        with runner.progress_bar(pending, lead) as bar:
          fresh = runner.run_pending(preset, pending, seed, store, processes, bar)
      if not lead:
        continue
      seed_records, all_records = runner.stored_records(store, seed_points, seed)
      records += seed_records
      print(runner.summary_table(seed_points, seed_records, fresh))
  return records, all_records
