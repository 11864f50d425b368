"""The task of one shard in a ``bench submit`` job array: a submitit ``Checkpointable``
(imported only by ``bench submit``, which needs the extra ``cluster``)."""

from __future__ import annotations

import pathlib

from jaxattn_bench import shards, submit  # submit first: it keeps submitit from configuring logging
from submitit.helpers import Checkpointable


class ShardTask(Checkpointable):
  """One shard in a task's process: ``bench run ARGV`` (``--shard I/N --manifest M``); returns
  how many of its points are still pending. A submitit ``Checkpointable``: on USR2 submitit
  requeues the same call, which resumes the shard's store."""

  def __init__(self, argv: list[str], results: pathlib.Path, keys: list[shards.Key]):
    self.argv, self.results, self.keys = argv, results, keys

  def __call__(self) -> int:
    from jaxattn_bench.cli import main as bench_main

    status = bench_main(self.argv)
    if status != 0:
      raise RuntimeError(f"bench {' '.join(self.argv)} ended with exit status {status}")
    return submit.pending(self.results, self.keys)
