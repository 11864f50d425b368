"""Sweeps as job arrays (docs/clusters.md): ``bench run --shard I/N`` and ``bench merge``."""

import shutil
import sqlite3

import pytest

from jaxattn_bench import grid, shards
from jaxattn_bench.cli import main as bench_main
from jaxattn_bench.merge import RESULT_FIELDS, differing_field
from jaxattn_bench.store import ResultsStore, record_key
from tests.test_bench_run import TINY


def _records(path):
  with ResultsStore(path, create=False) as store:
    return {record_key(r): r for r in store.records()}


def test_the_split_deals_every_pair_once_and_balanced():
  points = grid.parse_preset(TINY, "tiny").points
  split = shards.split(points, [0, 1], 4)
  keys = [key for share in split for key in share]
  assert len(keys) == len(set(keys)) == 2 * len(points)
  assert split == shards.split(points, [0, 1], 4)  # deterministic
  assert shards.select(points, split[1]) == shards.select(points, split[1])
  assert shards.parse_shard("3/4") == (3, 4)
  for bad in ("4/4", "1", "-1/2", "a/b"):
    with pytest.raises(Exception, match="--shard: expected I/N"):
      shards.parse_shard(bad)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
  """The tiny preset (seeds 3, 4) run whole, and as 4 shards into their default stores."""
  folder = tmp_path_factory.mktemp("sharded")
  preset = folder / "tiny.toml"
  preset.write_text(TINY)
  common = ["run", "--preset", str(preset), "--seeds", "3-4", "--no-figures"]
  assert bench_main([*common, "--results", str(folder / "whole.sqlite")]) == 0
  for index in range(4):
    assert bench_main([*common, "--shard", f"{index}/4", "--results",
                       str(shards.shard_path("tiny", index, 4, folder))]) == 0
  return folder


def test_four_shards_merged_equal_the_unsharded_run(sharded, capsys):
  parts = [shards.shard_path("tiny", i, 4, sharded) for i in range(4)]
  sizes = [len(_records(p)) for p in parts]
  assert sum(sizes) == 12 and min(sizes) >= 2
  out = sharded / "merged.sqlite"
  assert bench_main(["merge", str(out), str(sharded / "tiny.shard-*-of-4.sqlite")]) == 0
  assert "12 point(s) written, 0 already there" in capsys.readouterr().out
  whole, merged = _records(sharded / "whole.sqlite"), _records(out)
  assert whole.keys() == merged.keys()
  for key, record in whole.items():
    assert differing_field(record, merged[key]) is None, key
  runs = lambda path: sqlite3.connect(path).execute("SELECT * FROM runs").fetchall()
  merged_runs = runs(out)  # each distinct run of the shards once, with ids remapped
  assert {r[1:] for r in merged_runs} == {r[1:] for p in parts for r in runs(p)}
  assert len(merged_runs) == len({r[1:] for r in merged_runs})
  # merging again, and an overlap with the whole run: nothing new, nothing lost
  assert bench_main(["merge", str(out), str(parts[0]), str(sharded / "whole.sqlite")]) == 0
  assert f"0 point(s) written, {sizes[0] + 12} already there" in capsys.readouterr().out
  assert _records(out).keys() == whole.keys()
  # the merged store is complete: a plain run on it computes nothing
  preset = str(sharded / "tiny.toml")
  assert bench_main(["run", "--preset", preset, "--seeds", "3-4", "--results", str(out),
                     "--plan"]) == 0
  assert "progress: 6 of 6 points stored" in capsys.readouterr().out


def test_a_conflicting_point_is_named_and_nothing_is_written(sharded, tmp_path, capsys):
  part = shards.shard_path("tiny", 0, 4, sharded)
  flipped = tmp_path / "flipped.sqlite"
  shutil.copy(part, flipped)
  with sqlite3.connect(flipped) as db:  # one verdict flipped by hand
    point_id, blob = db.execute("SELECT id, verdicts FROM points LIMIT 1").fetchone()
    db.execute("UPDATE points SET verdicts = ? WHERE id = ?",
               (bytes([blob[0] ^ 0x80]) + blob[1:], point_id))
  out = tmp_path / "out.sqlite"
  assert bench_main(["merge", str(out), str(part), str(flipped)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "differs (verdicts) between" in err[0] and "flipped.sqlite" in err[0]
  assert not out.exists() or not _records(out)
  assert "verdicts" in RESULT_FIELDS and "wall_s" not in RESULT_FIELDS


def test_stores_of_different_device_kinds_are_refused(sharded, tmp_path, capsys):
  other = tmp_path / "gpu.sqlite"
  shutil.copy(shards.shard_path("tiny", 1, 4, sharded), other)
  with sqlite3.connect(other) as db:
    db.execute("UPDATE runs SET backend = 'gpu', device_kind = 'NVIDIA H100'")
  assert bench_main(["merge", str(tmp_path / "o.sqlite"),
                     str(shards.shard_path("tiny", 0, 4, sharded)), str(other)]) == 2
  assert "different device kinds" in capsys.readouterr().err


def test_a_shard_left_mid_write_is_merged_from_a_private_copy(sharded, tmp_path, capsys):
  """A hot journal (a killed writer's) beside an input: rolled back on a copy, the input and
  its journal unchanged."""
  part = tmp_path / "hot.sqlite"
  shutil.copy(shards.shard_path("tiny", 2, 4, sharded), part)
  before = _records(part)
  db = sqlite3.connect(part, isolation_level=None)
  db.execute("PRAGMA journal_mode = DELETE")
  db.execute("BEGIN IMMEDIATE")
  db.execute("DELETE FROM rates")
  db.execute("PRAGMA cache_size = 1")  # spill the change to the file before commit
  db.execute("DELETE FROM points")
  journal = part.with_name(part.name + "-journal")
  if not journal.exists():
    pytest.skip("SQLite kept the change in memory")
  saved = {p: p.read_bytes() for p in (part, journal)}
  out = tmp_path / "merged.sqlite"
  assert bench_main(["merge", str(out), str(part)]) == 0
  assert {p: p.read_bytes() for p in (part, journal)} == saved
  assert _records(out).keys() == before.keys()
  db.close()
