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
from typing import TYPE_CHECKING

from jaxattn_bench import grid, runner, shards
from jaxattn_bench.commands.run import parse_seeds
from jaxattn_bench.errors import CommandError
from jaxattn_bench.store import ResultsStore

if TYPE_CHECKING:  # submitit is imported only when a sweep is submitted
  from jaxattn_bench.submit import Sweep


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser(
    "submit",
    help="run a preset as a job array of shards (SLURM or local, through submitit) and merge them",
    description=__doc__.splitlines()[0],
  )
  parser.add_argument(
    "--preset",
    required=True,
    metavar="NAME|PATH.toml",
    help=f"one of {grid.preset_names()} or a TOML file",
  )
  parser.add_argument("--shards", type=int, required=True, metavar="N", help="number of tasks")
  parser.add_argument("--seeds", metavar="A-B|A,B,...", help="seeds to run (default: the preset's)")
  _add_executor_options(parser)
  parser.add_argument(
    "--retries",
    type=int,
    default=2,
    metavar="R",
    help="resubmissions of shards left with pending points (default 2)",
  )
  parser.add_argument(
    "--no-wait",
    action="store_true",
    help="submit and return; rerun the command later to resubmit and merge",
  )
  parser.add_argument(
    "--results",
    type=pathlib.Path,
    metavar="PATH",
    help="the merged store (default results/<preset>.sqlite)",
  )
  parser.add_argument(
    "--folder",
    type=pathlib.Path,
    metavar="DIR",
    help="submitit's logs and pickles (default results/<preset>.submitit; "
    "on SLURM a folder the nodes share)",
  )
  parser.add_argument(
    "--allow-network-fs",
    action="store_true",
    help="passed to each task's bench run (docs/clusters.md)",
  )
  parser.add_argument(
    "--no-figures",
    action="store_true",
    help="skip the figures and fit of the merged store (written, as by bench "
    "run, to the store's path without its suffix)",
  )
  parser.set_defaults(func=main)


def _add_executor_options(parser) -> None:
  """Where the tasks run: SLURM (partition, time limit, GPUs) or local, and how many at once."""
  parser.add_argument(
    "--executor",
    choices=("slurm", "local"),
    default="slurm",
    help="SLURM job array (default) or processes on this machine",
  )
  parser.add_argument("--partition", help="SLURM partition")
  parser.add_argument(
    "--time",
    type=int,
    metavar="MIN",
    help="time limit per task in minutes (default: twice the plan of the largest shard, plus 5)",
  )
  parser.add_argument("--gpus-per-task", type=int, metavar="G", help="GPUs per task")
  parser.add_argument(
    "--array-parallelism",
    type=int,
    default=None,
    metavar="P",
    help="tasks running at once (default: all on SLURM, 1 locally)",
  )


def main(args) -> int:
  try:  # submitit only here: importing it configures logging (bench/submit.py)
    from jaxattn_bench import submit
    from jaxattn_bench.commands.shard_task import ShardTask
  except ModuleNotFoundError as error:
    raise CommandError(
      f"bench submit needs submitit ({error}): pip install 'jaxattn[cluster]'"
    ) from None
  _check_options(args)
  preset = grid.load_preset(args.preset)
  seeds = parse_seeds(args.seeds) if args.seeds else [preset.seed]
  folder = pathlib.Path("results").absolute()  # tasks may start in another directory
  sweep = _sweep(args, preset, seeds, folder)
  manifest, shares = sweep.manifest, sweep.shares
  parallelism = args.array_parallelism or (args.shards if args.executor == "slurm" else 1)
  limit = submit.limits(preset.points, shares)
  chosen = submit.executor(
    args.executor,
    args.folder or folder / f"{preset.name}.submitit",
    limit,
    partition=args.partition,
    time_min=args.time,
    gpus_per_task=args.gpus_per_task,
    parallelism=parallelism,
  )
  minutes = sum(map(runner.point_seconds, preset.points)) * len(seeds) / 60
  print(
    f"preset {preset.name}: {sum(map(len, shares))} (point, seed) pairs in {args.shards} "
    f"shards (frozen in {manifest}); {args.executor} tasks of at most "
    f"{args.time or limit.timeout_min} min, USR2 {limit.signal_delay_s} s before; plan "
    f"about {minutes:.0f} min of 2-core CPU in all",
    flush=True,
  )
  for attempt in range(args.retries + 1):
    left = sweep.left()
    if not left:
      break
    tasks = [ShardTask(sweep.argv(i), sweep.stores[i], shares[i]) for i in left]
    jobs = submit.launch(chosen, tasks, parallelism, wait=not args.no_wait)
    print(
      f"submitted shard(s) {left} as job(s) {', '.join(j.job_id for j in jobs)}"
      + (f" (resubmission {attempt})" if attempt else ""),
      flush=True,
    )
    if args.no_wait:
      return 0
    for line in submit.finish(jobs):
      print(line)
  left = sweep.left()
  if left:
    raise CommandError(
      f"shard(s) {left} still have pending points after {args.retries} "
      f"resubmission(s); see the logs in {chosen.folder} and rerun this command",
      status=1,
    )
  _merge(args.results or folder / f"{preset.name}.sqlite", sweep.stores, args.no_figures)
  return 0


def _check_options(args) -> None:
  """CommandError for SLURM without srun, or a count out of range."""
  if args.executor == "slurm" and shutil.which("srun") is None:
    raise CommandError(
      "--executor slurm: no srun on PATH, so no SLURM here (use --executor local on this machine)"
    )
  if args.shards < 1 or args.retries < 0 or (args.array_parallelism or 1) < 1:
    raise CommandError("--shards and --array-parallelism must be >= 1, --retries >= 0")


def _sweep(args, preset: grid.Preset, seeds: list[int], folder: pathlib.Path) -> Sweep:
  """The ``submit.Sweep`` of the preset's pairs over ``--shards`` tasks, its split frozen in the
  manifest under ``folder`` (kept from an earlier run), one store per shard there."""
  from jaxattn_bench import submit

  spec = (
    str(pathlib.Path(args.preset).absolute())
    if pathlib.Path(args.preset).is_file()
    else (args.preset)
  )
  manifest = shards.manifest_path(preset.name, args.shards, folder)
  shares = shards.freeze(manifest, preset.name, preset.points, seeds, args.shards)
  stores = [shards.shard_path(preset.name, i, args.shards, folder) for i in range(args.shards)]
  flags = ("--no-figures",) + (("--allow-network-fs",) if args.allow_network_fs else ())
  return submit.Sweep(spec, preset.name, shares, manifest, stores, flags)


def _merge(out: pathlib.Path, stores: list[pathlib.Path], no_figures: bool) -> None:
  """``bench merge`` of the shards' stores into ``out``, then its figures and fit (unless
  ``no_figures``)."""
  from jaxattn_bench import merge

  report = merge.merge(out, stores)
  print(
    f"merged {len(report.inputs)} shard store(s) into {out}: {report.written} point(s) "
    f"written, {report.same} already there"
  )
  if not no_figures:
    from jaxattn_plots import write_report  # matplotlib only when figures are wanted

    with ResultsStore(out, create=False) as store:
      records = store.records()
    print(write_report(records, out.with_suffix("")).text())
