"""``python -m bench submit --preset P --shards N``: a sweep as one job array (submitit),
resubmitted while points are pending, then merged.

The split of the preset's (point, seed) pairs is frozen in ``results/P.shards-N.json`` before
anything is submitted (a later run of the command keeps it); task I runs ``bench run --preset
P --shard I/N --manifest ...`` into ``results/P.shard-I-of-N.sqlite``. On SLURM
(``--executor slurm``): one ``sbatch --array=0-(N-1)%P``, each task requeued by submitit on
USR2 (preemption, or ``signal_delay_s`` before its time limit) and resuming its store. With
``--executor local`` the tasks run as processes on this machine, at most P at once. Shards that
end with points pending are resubmitted (``--retries``), then the stores are merged into
``--results`` (``bench merge``), whose figures and fit are written as by ``bench run``
(``jaxattn_bench.submit``, docs/clusters.md).
"""

from __future__ import annotations

import pathlib
import shutil

from jaxattn_bench import grid, runner, shards
from jaxattn_bench.commands.run import parse_seeds
from jaxattn_bench.errors import CommandError
from jaxattn_bench.store import ResultsStore


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser("submit", help="run a preset as a job array of shards "
                                 "(SLURM or local, through submitit) and merge them",
                                 description=__doc__.splitlines()[0])
  parser.add_argument("--preset", required=True, metavar="NAME|PATH.toml",
                      help=f"one of {grid.preset_names()} or a TOML file")
  parser.add_argument("--shards", type=int, required=True, metavar="N", help="number of tasks")
  parser.add_argument("--seeds", metavar="A-B|A,B,...",
                      help="seeds to run (default: the preset's)")
  parser.add_argument("--executor", choices=("slurm", "local"), default="slurm",
                      help="SLURM job array (default) or processes on this machine")
  parser.add_argument("--partition", help="SLURM partition")
  parser.add_argument("--time", type=int, metavar="MIN",
                      help="time limit per task in minutes (default: twice the plan of the "
                           "largest shard, plus 5)")
  parser.add_argument("--gpus-per-task", type=int, metavar="G", help="GPUs per task")
  parser.add_argument("--array-parallelism", type=int, default=None, metavar="P",
                      help="tasks running at once (default: all on SLURM, 1 locally)")
  parser.add_argument("--retries", type=int, default=2, metavar="R",
                      help="resubmissions of shards left with pending points (default 2)")
  parser.add_argument("--no-wait", action="store_true",
                      help="submit and return; rerun the command later to resubmit and merge")
  parser.add_argument("--results", type=pathlib.Path, metavar="PATH",
                      help="the merged store (default results/<preset>.sqlite)")
  parser.add_argument("--folder", type=pathlib.Path, metavar="DIR",
                      help="submitit's logs and pickles (default results/<preset>.submitit; "
                           "on SLURM a folder the nodes share)")
  parser.add_argument("--allow-network-fs", action="store_true",
                      help="passed to each task's bench run (docs/clusters.md)")
  parser.add_argument("--no-figures", action="store_true",
                      help="skip the figures and fit of the merged store (written, as by bench "
                           "run, to the store's path without its suffix)")
  parser.set_defaults(func=main)


def main(args) -> int:
  try:  # submitit only here: importing it configures logging (bench/submit.py)
    from jaxattn_bench import merge, submit
    from jaxattn_bench.commands.shard_task import ShardTask
  except ModuleNotFoundError as error:
    raise CommandError(f"bench submit needs submitit ({error}): pip install "
                       "'jaxattn[cluster]'") from None
  if args.executor == "slurm" and shutil.which("srun") is None:
    raise CommandError("--executor slurm: no srun on PATH, so no SLURM here (use --executor "
                       "local on this machine)")
  preset = grid.load_preset(args.preset)
  seeds = parse_seeds(args.seeds) if args.seeds else [preset.seed]
  if args.shards < 1 or args.retries < 0 or (args.array_parallelism or 1) < 1:
    raise CommandError("--shards and --array-parallelism must be >= 1, --retries >= 0")
  folder = pathlib.Path("results").absolute()  # tasks may start in another directory
  spec = str(pathlib.Path(args.preset).absolute()) if pathlib.Path(args.preset).is_file() else (
      args.preset)
  manifest = shards.manifest_path(preset.name, args.shards, folder)
  shares = shards.freeze(manifest, preset.name, preset.points, seeds, args.shards)
  sweep = submit.Sweep(spec, preset.name, shares, manifest,
                       [shards.shard_path(preset.name, i, args.shards, folder)
                        for i in range(args.shards)],
                       ("--no-figures",) + (("--allow-network-fs",) if args.allow_network_fs
                                            else ()))
  parallelism = args.array_parallelism or (args.shards if args.executor == "slurm" else 1)
  limit = submit.limits(preset.points, shares)
  chosen = submit.executor(args.executor, args.folder or folder / f"{preset.name}.submitit",
                           limit, partition=args.partition, time_min=args.time,
                           gpus_per_task=args.gpus_per_task, parallelism=parallelism)
  print(f"preset {preset.name}: {sum(map(len, shares))} (point, seed) pairs in {args.shards} "
        f"shards (frozen in {manifest}); {args.executor} tasks of at most "
        f"{args.time or limit.timeout_min} "
        f"min, USR2 {limit.signal_delay_s} s before; plan about "
        f"{sum(map(runner.point_seconds, preset.points)) * len(seeds) / 60:.0f} min of 2-core "
        "CPU in all", flush=True)
  for attempt in range(args.retries + 1):
    left = sweep.left()
    if not left:
      break
    tasks = [ShardTask(sweep.argv(i), sweep.stores[i], shares[i]) for i in left]
    jobs = submit.launch(chosen, tasks, parallelism, wait=not args.no_wait)
    print(f"submitted shard(s) {left} as job(s) {', '.join(j.job_id for j in jobs)}"
          + (f" (resubmission {attempt})" if attempt else ""), flush=True)
    if args.no_wait:
      return 0
    for line in submit.finish(jobs):
      print(line)
  left = sweep.left()
  if left:
    raise CommandError(f"shard(s) {left} still have pending points after {args.retries} "
                       f"resubmission(s); see the logs in {chosen.folder} and rerun this command",
                       status=1)
  out = args.results or folder / f"{preset.name}.sqlite"
  report = merge.merge(out, sweep.stores)
  print(f"merged {len(report.inputs)} shard store(s) into {out}: {report.written} point(s) "
        f"written, {report.same} already there")
  if not args.no_figures:
    from jaxattn_plots import write_report  # matplotlib only when figures are wanted
    with ResultsStore(out, create=False) as store:
      records = store.records()
    print(write_report(records, out.with_suffix("")).text())
  return 0
