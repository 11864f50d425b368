"""Shards of a preset for job arrays (docs/clusters.md): a frozen, cost-balanced split of all its
(point, seed) pairs, each shard run into a store of its own.

``split`` deals the pairs of the whole preset (never of what is pending, which differs per shard)
to N shards by the runner's cost model (``runner.point_seconds``, longest first:
``hosts.split_work``); a pair's key is (canonical params, seed), the same as in an unsharded
store. ``bench submit`` computes the split once and hands each task its list of keys, so a
later change of the cost model cannot reshuffle a running sweep. ``run_shard`` runs the pairs
of one list not yet in its store (resumable like any store); ``bench merge`` joins the stores.
"""

from __future__ import annotations

import json
import pathlib
import re

from jaxattn_bench import grid, hosts, runner
from jaxattn_bench.errors import CommandError
from jaxattn_bench.store import canonical

Key = tuple[str, int]  # (canonical params, seed): a point's identity in a store


def parse_shard(spec: str) -> tuple[int, int]:
  """'I/N' -> (I, N) with 0 <= I < N; CommandError on anything else."""
  match = re.fullmatch(r"(\d+)/(\d+)", spec)
  if not match or not int(match.group(1)) < int(match.group(2)):
    raise CommandError(f"--shard: expected I/N with 0 <= I < N, got {spec!r}")
  return int(match.group(1)), int(match.group(2))


def shard_path(
  preset: str, index: int, count: int, folder: pathlib.Path = pathlib.Path("results")
) -> pathlib.Path:
  """The default store of shard I of N: ``results/P.shard-I-of-N.sqlite``."""
  return folder / f"{preset}.shard-{index}-of-{count}.sqlite"


def split(points, seeds, count: int) -> list[list[Key]]:
  """The keys of each of ``count`` shards: every (point, seed) pair of the preset in exactly
  one, balanced by ``runner.point_seconds`` (the largest shard costs at most the mean plus the
  largest point). Pure and deterministic."""
  pairs = [(point, seed) for seed in seeds for point in points]
  shares = hosts.split_work([runner.point_seconds(point) for point, _ in pairs], count)
  return [[(canonical(pairs[i][0].params()), pairs[i][1]) for i in share] for share in shares]


def select(points, keys) -> dict[int, list[grid.Point]]:
  """The preset's points of each seed among ``keys``; CommandError naming a key that is not a
  point of the preset (a list frozen from another preset)."""
  by_key = {canonical(p.params()): p for p in points}
  chosen: dict[int, list[grid.Point]] = {}
  for params, seed in keys:
    if params not in by_key:
      raise CommandError(f"shard point {params} (seed {seed}) is not a point of this preset")
    chosen.setdefault(seed, []).append(by_key[params])
  return chosen


def manifest_path(
  preset: str, count: int, folder: pathlib.Path = pathlib.Path("results")
) -> pathlib.Path:
  """Where ``bench submit`` freezes a split: ``results/P.shards-N.json``."""
  return folder / f"{preset}.shards-{count}.json"


def freeze(path: pathlib.Path, preset: str, points, seeds, count: int) -> list[list[Key]]:
  """The split of ``path`` if it exists (a sweep keeps its split however the cost model
  changes), else ``split`` written there; CommandError if the file is of another sweep."""
  if path.is_file():
    shares = read_manifest(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if (data["preset"], data["seeds"], len(shares)) != (preset, list(seeds), count):
      raise CommandError(
        f"{str(path)!r} freezes preset {data['preset']} seeds {data['seeds']} "
        f"in {len(shares)} shards, not {preset} seeds {list(seeds)} in {count}: "
        "move it away to split anew"
      )
    return shares
  shares = split(points, seeds, count)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(
    json.dumps({"preset": preset, "seeds": list(seeds), "shards": shares}, indent=0) + "\n",
    encoding="utf-8",
  )
  return shares


def read_manifest(path: pathlib.Path) -> list[list[Key]]:
  """The frozen key lists of a manifest (``freeze``); CommandError if unreadable."""
  try:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [[(str(params), int(seed)) for params, seed in share] for share in data["shards"]]
  except (OSError, ValueError, KeyError, TypeError) as error:
    raise CommandError(f"cannot read shard manifest {str(path)!r}: {error}") from None
