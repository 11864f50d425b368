"""``bench merge``'s work: the stores of a sharded sweep (or any stores) joined into one, losing
nothing (docs/clusters.md).

Every point of the inputs is copied into the output in one transaction (``ResultsStore.insert``:
run ids remapped, a run's metadata stored once). A point whose key (canonical params, seed) is
already there is skipped when its results are the same (``RESULT_FIELDS``: verdict matrices,
rates, thresholds, estimators; not timings, run ids or timestamps) and is an error naming the
point and both files when they differ: then nothing is written. Stores computed on different
device kinds are refused (their bits may legitimately differ: not a conflict). Inputs are
opened read-only and never changed; one a killed writer left mid-transaction is rolled back on
a private copy. Older schemas are read as they are (``ResultsStore``) and written at the
current one.
"""

from __future__ import annotations

import glob
import math
import pathlib
import shutil
import tempfile
from typing import NamedTuple, Sequence

import numpy as np

from jaxattn_bench.errors import CommandError
from jaxattn_bench.store import ESTIMATORS, InterruptedWrite, Record, ResultsStore, record_key

RESULT_FIELDS = (
  "d_min",
  "jl_dim",
  "trials",
  "d",
  "successes",
  "rate",
  "ci_low",
  "ci_high",
  "verdicts",
  "thresholds",
  "first_success",
  *ESTIMATORS,
  "evaluated",
)


class MergeReport(NamedTuple):
  """What ``merge`` did: points written, points already there with the same results, inputs."""

  written: int
  same: int
  inputs: tuple[pathlib.Path, ...]


def _equal(a, b) -> bool:
  if a is None or b is None:
    return a is b
  if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
    return np.shape(a) == np.shape(b) and bool(np.array_equal(a, b))
  return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def differing_field(a: Record, b: Record) -> str | None:
  """The first of ``RESULT_FIELDS`` where two records of one point differ; None when equal."""
  return next(
    (name for name in RESULT_FIELDS if not _equal(getattr(a, name), getattr(b, name))), None
  )


def expand(patterns: Sequence[str]) -> list[pathlib.Path]:
  """Paths and globs (``results/long.shard-*.sqlite``) to sorted distinct files; CommandError
  for a pattern that matches no file."""
  paths: dict[pathlib.Path, None] = {}
  for pattern in patterns:
    matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    files = [pathlib.Path(m) for m in matches if pathlib.Path(m).is_file()]
    if not files:
      raise CommandError(f"no results file {pattern!r}")
    paths.update(dict.fromkeys(files))
  return list(paths)


def read_records(path: pathlib.Path) -> list[Record]:
  """Every point of a store, read-only; a store left mid-write is rolled back on a private
  copy (the file itself is not changed)."""
  try:
    with ResultsStore(path, create=False) as store:
      return store.records()
  except InterruptedWrite:
    with tempfile.TemporaryDirectory(prefix="jaxattn-merge-") as folder:
      copy = pathlib.Path(folder) / path.name
      shutil.copy2(path, copy)
      shutil.copy2(path.with_name(path.name + "-journal"), copy.with_name(copy.name + "-journal"))
      with ResultsStore(copy) as store:  # opening for writing rolls the interrupted write back
        return store.records()


def _device_kinds(sources: dict[pathlib.Path, list[Record]]) -> dict[str, pathlib.Path]:
  kinds: dict[str, pathlib.Path] = {}
  for path, records in sources.items():
    for record in records:
      kinds.setdefault(f"{record.run.get('backend')} ({record.run.get('device_kind')})", path)
  return kinds


def merge(out: pathlib.Path, inputs: Sequence[pathlib.Path]) -> MergeReport:
  """Copies every point of ``inputs`` into the store ``out`` (created if need be): see the
  module docstring. CommandError, with nothing written, on a conflict or mixed device kinds."""
  sources = {
    path: read_records(path)
    for path in inputs
    if not (out.exists() and path.resolve() == out.resolve())
  }
  if len(sources) < len(inputs):
    raise CommandError(f"{str(out)!r} is both the output and an input")
  if out.exists():
    sources = {out: read_records(out), **sources}
  kinds = _device_kinds(sources)
  if len(kinds) > 1:
    raise CommandError(
      "stores computed on different device kinds: "
      + ", ".join(f"{kind} in {str(path)!r}" for kind, path in kinds.items())
      + "; merge each kind into a store of its own"
    )
  seen: dict[tuple[str, int], tuple[Record, pathlib.Path]] = {}
  new, same = [], 0
  for path, records in sources.items():
    for record in records:
      key = record_key(record)
      if key not in seen:
        seen[key] = (record, path)
        if path != out:  # out's own points are there already
          new.append(record)
        continue
      field = differing_field(seen[key][0], record)
      if field is not None:
        raise CommandError(
          f"point {key[0]} seed {key[1]} differs ({field}) between "
          f"{str(seen[key][1])!r} and {str(path)!r}; nothing written"
        )
      same += 1
  with ResultsStore(out) as store:
    written = store.insert(new)
  return MergeReport(written, same, tuple(p for p in sources if p != out))
