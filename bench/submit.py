"""``bench submit``'s work: a preset's shards as one job array through submitit, resubmitted while
points are pending, then merged (docs/clusters.md).

Each task runs ``bench run --preset P --shard I/N --manifest M`` in its own process (the
command's ``ShardTask``, a ``submitit.helpers.Checkpointable``: on SLURM's USR2 signal, sent
``signal_delay_s`` before the time limit or at preemption, submitit requeues it with the same
arguments; points are stored one by one, so the requeued task resumes its store). The split is
frozen in the manifest M (``shards.freeze``) before anything is submitted. SLURM gets one
``sbatch`` with ``--array=0-(N-1)%P``; submitit's local executor starts every task at once, so
``local`` submits at most P at a time itself, each with a timeout from the plan.
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import NamedTuple, Sequence

# Imported as it is, submitit runs logging.config.dictConfig, which closes every logging handler
# the process has (a user's, pytest's); NOCONFIG leaves logging alone (its records then reach
# the root logger). Its tasks inherit the setting.
os.environ.setdefault("SUBMITIT_LOG_LEVEL", "NOCONFIG")
import submitit  # noqa: E402

from jaxattn_bench import runner, shards
from jaxattn_bench.store import ResultsStore, canonical

# Seconds of a point on this project's 2-core CPU: ``runner.point_seconds``; a task's limit is
# SAFETY times its plan plus a start-up allowance, and its USR2 comes POINT_SAFETY times the
# longest point before that limit (a Python handler runs between XLA calls only). The model is
# within 7% on the presets' total but a single point took up to 5.6x its plan in the fit
# (python -m jaxattn_bench.cost_fit, docs/practice.md), hence the wider margin per point.
SAFETY, POINT_SAFETY, STARTUP_S = 2.0, 6.0, 300.0


def pending(results: pathlib.Path, keys: Sequence[shards.Key]) -> int:
  """How many of ``keys`` the store ``results`` does not hold (all when it does not exist)."""
  if not results.is_file():
    return len(keys)
  with ResultsStore(results, create=False) as store:
    done = store.finished()
  return sum(tuple(key) not in done for key in keys)


class Limits(NamedTuple):
  """A task's wall-time limit and the signal's lead on it, from the plan."""

  timeout_min: int
  signal_delay_s: int


def limits(points, shares: Sequence[Sequence[shards.Key]]) -> Limits:
  """SAFETY × the largest shard's planned seconds plus STARTUP_S, and POINT_SAFETY × the
  longest point (at least 90 s, submitit's default)."""
  by_key = {canonical(p.params()): runner.point_seconds(p) for p in points}
  longest_shard = max(sum(by_key[params] for params, _ in share) for share in shares)
  longest_point = max(by_key.values())
  return Limits(
    math.ceil((SAFETY * longest_shard + STARTUP_S) / 60),
    max(90, math.ceil(POINT_SAFETY * longest_point)),
  )


class Sweep(NamedTuple):
  """A sharded sweep: the preset spec and name, the frozen split and its manifest, the shards'
  stores and the ``bench run`` arguments every task shares."""

  spec: str
  name: str
  shares: list[list[shards.Key]]
  manifest: pathlib.Path
  stores: list[pathlib.Path]
  extra: tuple[str, ...]

  def argv(self, index: int) -> list[str]:
    """``bench run`` arguments of shard ``index``."""
    return [
      "run",
      "--preset",
      self.spec,
      "--shard",
      f"{index}/{len(self.shares)}",
      "--manifest",
      str(self.manifest),
      "--results",
      str(self.stores[index]),
      *self.extra,
    ]

  def left(self) -> list[int]:
    """The shards with points not yet in their store."""
    return [i for i, share in enumerate(self.shares) if pending(self.stores[i], share)]


def executor(
  kind: str,
  folder: pathlib.Path,
  limit: Limits,
  *,
  partition: str | None = None,
  time_min: int | None = None,
  gpus_per_task: int | None = None,
  parallelism: int = 1,
):
  """submitit's SlurmExecutor (one ``sbatch --array=0-(N-1)%P`` per batch, USR2
  ``signal_delay_s`` before the limit) or LocalExecutor (a process per task, the same limit)."""
  timeout = time_min or limit.timeout_min
  chosen: submitit.core.core.Executor
  if kind == "slurm":
    chosen = submitit.SlurmExecutor(folder=folder)
    chosen.update_parameters(
      time=timeout,
      signal_delay_s=limit.signal_delay_s,
      array_parallelism=parallelism,
      job_name="jaxattn-shard",
      **({"partition": partition} if partition else {}),
      **({"gpus_per_task": gpus_per_task} if gpus_per_task else {}),
    )
  else:
    chosen = submitit.LocalExecutor(folder=folder)
    chosen.update_parameters(
      timeout_min=timeout,
      signal_delay_s=limit.signal_delay_s,
      **({"gpus_per_node": gpus_per_task} if gpus_per_task else {}),
    )
  return chosen


def launch(chosen, tasks: Sequence, parallelism: int, wait: bool) -> list:
  """Submits ``tasks`` (callables): as one job array on SLURM; locally at most
  ``parallelism`` at once (submitit's local executor would start them all), waiting for each
  wave but the last unless ``wait``. Returns the jobs (``result()`` raises for a failed task)."""
  if isinstance(chosen, submitit.SlurmExecutor):
    with chosen.batch():
      jobs = [chosen.submit(task) for task in tasks]
    return jobs
  jobs = []
  for start in range(0, len(tasks), parallelism):
    wave = [chosen.submit(task) for task in tasks[start : start + parallelism]]
    if wait or start + parallelism < len(tasks):
      finish(wave)
    jobs += wave
  return jobs


def finish(jobs) -> list[str]:
  """Waits for ``jobs``; one line per job that failed (its points stay pending)."""
  failures = []
  for job in jobs:
    try:
      job.result()
    except (submitit.core.utils.UncompletedJobError, RuntimeError) as error:
      failures.append(f"task {job.job_id}: {' '.join(str(error).split())[:200]}")
  return failures
