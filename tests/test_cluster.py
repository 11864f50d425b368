"""Sweeps as job arrays (docs/clusters.md): ``bench run --shard I/N`` and ``bench merge``."""

import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from jaxattn_bench import filesystems, grid, shards
from jaxattn_bench.cli import main as bench_main
from jaxattn_bench.merge import RESULT_FIELDS, differing_field
from jaxattn_bench.store import ResultsStore, record_key
from tests.test_bench_run import ROOT, TINY, stored
from tests.test_store_migration import TINY as V1_TINY
from tests.test_store_migration import write_v1


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


def test_a_tasks_limits_are_its_plan_with_their_margins():
  """A task's time limit is 2 × its shard's planned seconds plus 300 s; USR2 comes 6 × the
  longest point before it (a single point took up to 5.6 × its plan in the cost fit)."""
  from jaxattn_bench import runner, submit
  from jaxattn_bench.store import canonical

  points = grid.load_preset("long").points
  split = shards.split(points, [0], 4)
  seconds = {canonical(p.params()): runner.point_seconds(p) for p in points}
  largest = max(sum(seconds[params] for params, _ in share) for share in split)
  limits = submit.limits(points, split)
  assert limits.timeout_min == math.ceil((2 * largest + 300) / 60)
  assert limits.signal_delay_s == math.ceil(6 * max(seconds.values())) > 90


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
  """The tiny preset (seeds 3, 4) run whole, and as 4 shards into their default stores."""
  folder = tmp_path_factory.mktemp("sharded")
  preset = folder / "tiny.toml"
  preset.write_text(TINY)
  common = ["run", "--preset", str(preset), "--seeds", "3-4", "--no-figures"]
  assert bench_main([*common, "--results", str(folder / "whole.sqlite")]) == 0
  for index in range(4):
    assert (
      bench_main(
        [
          *common,
          "--shard",
          f"{index}/4",
          "--results",
          str(shards.shard_path("tiny", index, 4, folder)),
        ]
      )
      == 0
    )
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
  assert (
    bench_main(["run", "--preset", preset, "--seeds", "3-4", "--results", str(out), "--plan"]) == 0
  )
  assert "progress: 6 of 6 points stored" in capsys.readouterr().out


def test_a_conflicting_point_is_named_and_nothing_is_written(sharded, tmp_path, capsys):
  part = shards.shard_path("tiny", 0, 4, sharded)
  flipped = tmp_path / "flipped.sqlite"
  shutil.copy(part, flipped)
  with sqlite3.connect(flipped) as db:  # one verdict flipped by hand
    point_id, blob = db.execute("SELECT id, verdicts FROM points LIMIT 1").fetchone()
    db.execute(
      "UPDATE points SET verdicts = ? WHERE id = ?", (bytes([blob[0] ^ 0x80]) + blob[1:], point_id)
    )
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
  assert (
    bench_main(
      [
        "merge",
        str(tmp_path / "o.sqlite"),
        str(shards.shard_path("tiny", 0, 4, sharded)),
        str(other),
      ]
    )
    == 2
  )
  assert "different device kinds" in capsys.readouterr().err


def test_a_shard_left_mid_write_is_merged_from_a_private_copy(sharded, tmp_path):
  """A hot journal beside an input (a killed writer's: the file and journal copied mid-write,
  no process holding them): rolled back on a private copy; the input and its journal unchanged."""
  source = tmp_path / "source.sqlite"
  shutil.copy(shards.shard_path("tiny", 2, 4, sharded), source)
  before = _records(source)
  db = sqlite3.connect(source, isolation_level=None)
  db.execute("PRAGMA journal_mode = DELETE")
  db.execute("BEGIN IMMEDIATE")
  db.execute("DELETE FROM rates")
  db.execute("PRAGMA cache_size = 1")  # spill the change to the file before commit
  db.execute("DELETE FROM points")
  part, journal = tmp_path / "hot.sqlite", tmp_path / "hot.sqlite-journal"
  shutil.copy(source, part)
  shutil.copy(source.with_name(source.name + "-journal"), journal)
  db.close()  # rolls the source back; the copies stay as a killed writer left them
  saved = {p: p.read_bytes() for p in (part, journal)}
  out = tmp_path / "merged.sqlite"
  assert bench_main(["merge", str(out), str(part)]) == 0
  assert {p: p.read_bytes() for p in (part, journal)} == saved
  assert _records(out).keys() == before.keys()


NFS = 0x6969
PATH = os.environ["PATH"]


@pytest.mark.parametrize(
  "magic, name, trusted",
  [
    (NFS, "nfs", False),
    (0xFF534D42, "cifs", False),
    (0x01021994, "tmpfs", True),
    (0xEF53, "ext4", True),
    (0x47504653, "gpfs", True),
  ],
)
def test_the_filesystem_type_comes_from_statfs(monkeypatch, tmp_path, magic, name, trusted):
  monkeypatch.setattr(filesystems, "_statfs_type", lambda path: magic)
  assert filesystems.filesystem(tmp_path / "new" / "r.sqlite")[::2] == (name, trusted)


def test_mountinfo_is_the_fallback_and_lustre_needs_flock(monkeypatch, tmp_path):
  monkeypatch.setattr(filesystems, "_statfs_type", lambda path: None)
  info = tmp_path / "mountinfo"
  line = "36 35 0:30 / {point} rw,relatime shared:1 - {kind} server:/x rw,{options}\n"
  info.write_text(
    line.format(point="/", kind="ext4", options="")
    + line.format(point=str(tmp_path), kind="lustre", options="flock")
  )
  assert filesystems.filesystem(tmp_path / "r.sqlite", str(info)) == filesystems.Filesystem(
    "lustre", "mountinfo", True, True
  )
  info.write_text(info.read_text().replace(",flock", ",localflock"))
  assert not filesystems.filesystem(tmp_path / "r.sqlite", str(info)).trusted
  info.write_text(line.format(point=str(tmp_path), kind="fuse.sshfs", options=""))
  assert filesystems.filesystem(tmp_path, str(info))[1:] == ("mountinfo", True, False)


def test_this_machines_store_folders_are_accepted(tmp_path):
  assert filesystems.filesystem(tmp_path).trusted
  assert filesystems.filesystem("/dev/shm").trusted


def test_a_second_writer_on_nfs_is_refused_in_one_line(monkeypatch, tmp_path, capsys):
  """On a faked NFS a store has one writer: a second (bench run on it) is refused, exit 2;
  reading is allowed; --allow-network-fs shares it as on a local disk."""
  monkeypatch.setattr(filesystems, "_statfs_type", lambda path: NFS)
  preset = tmp_path / "tiny.toml"
  preset.write_text(TINY)
  path = tmp_path / "r.sqlite"
  with ResultsStore(path) as first:
    assert first.single_writer
    assert bench_main(["run", "--preset", str(preset), "--results", str(path), "--no-figures"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is on nfs" in err[0] and "--shard" in err[0], err
    with ResultsStore(path, create=False) as reader:  # reading is allowed
      assert reader.finished() == set()
  with (
    ResultsStore(path, allow_network_fs=True) as first,
    ResultsStore(path, allow_network_fs=True) as second,
  ):
    assert not first.single_writer and second.finished() == set()
  with ResultsStore(path) as alone:  # the first writer has gone: the next one may write
    assert alone.single_writer


def test_submit_local_runs_the_shards_and_merges_what_an_unsharded_run_stores(
  sharded, tmp_path, monkeypatch, capsys
):
  """``bench submit --executor local``: real subprocesses through submitit, at once (four
  shards merged: test_four_shards_merged_equal_the_unsharded_run); the
  merged store equals the unsharded run; a second submit finds nothing left and keeps the
  frozen split."""
  monkeypatch.chdir(tmp_path)
  preset = str(sharded / "tiny.toml")
  argv = [
    "submit",
    "--preset",
    preset,
    "--shards",
    "2",
    "--seeds",
    "3-4",
    "--executor",
    "local",
    "--array-parallelism",
    "2",
  ]
  assert bench_main(argv) == 0
  printed = capsys.readouterr().out
  assert "12 (point, seed) pairs in 2 shards" in printed and "12 point(s) written" in printed
  whole, merged = _records(sharded / "whole.sqlite"), _records(tmp_path / "results/tiny.sqlite")
  assert whole.keys() == merged.keys()
  assert all(differing_field(whole[k], merged[k]) is None for k in whole)
  assert (tmp_path / "results/tiny/a_d_vs_length.png").is_file()  # the merged store's figures
  manifest = (tmp_path / "results/tiny.shards-2.json").read_text()
  assert bench_main(argv + ["--no-figures"]) == 0
  assert "submitted" not in capsys.readouterr().out
  assert (tmp_path / "results/tiny.shards-2.json").read_text() == manifest


def test_submit_slurm_writes_one_array_with_the_usr2_signal(tmp_path, monkeypatch, capsys):
  """The SLURM path through the sbatch script submitit writes, with sbatch, scontrol and sacct
  stubbed: one ``--array=0-3%2`` submission, USR2 before the time limit, nothing run."""
  stubs = tmp_path / "bin"
  stubs.mkdir()
  log = tmp_path / "sbatch.log"
  (stubs / "sbatch").write_text(f'#!/bin/sh\ncat "$1" >> {log}\necho "Submitted batch job 4242"\n')
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv("PATH", "/usr/bin:/bin")
  assert bench_main(["submit", "--preset", "quick", "--shards", "2"]) == 2
  assert "no srun on PATH" in capsys.readouterr().err and not (tmp_path / "results").exists()
  for name in ("srun", "scontrol", "sacct"):
    (stubs / name).write_text("#!/bin/sh\nexit 0\n")
  for stub in stubs.iterdir():
    stub.chmod(0o755)
  monkeypatch.setenv("PATH", f"{stubs}:{PATH}")
  monkeypatch.chdir(tmp_path)
  preset = tmp_path / "tiny.toml"
  preset.write_text(TINY)
  assert (
    bench_main(
      [
        "submit",
        "--preset",
        str(preset),
        "--shards",
        "4",
        "--array-parallelism",
        "2",
        "--partition",
        "gpu",
        "--gpus-per-task",
        "1",
        "--no-wait",
      ]
    )
    == 0
  )
  assert "as job(s) 4242_0, 4242_1, 4242_2, 4242_3" in capsys.readouterr().out
  script = log.read_text()
  assert script.count("#!/bin/bash") == 1
  for line in (
    "#SBATCH --array=0-3%2",
    "#SBATCH --partition=gpu",
    "#SBATCH --gpus-per-task=1",
    "#SBATCH --signal=USR2@90",
  ):
    assert line in script, script
  assert not list((tmp_path / "results").glob("*.sqlite"))
  import submitit
  from jaxattn_bench.commands.shard_task import ShardTask

  assert issubclass(ShardTask, submitit.helpers.Checkpointable)  # requeued on USR2


def test_a_shard_stopped_mid_point_resumes_without_recomputing(sharded, tmp_path):
  """SIGTERM (a scheduler's stop) on a shard's run mid-sweep: the points it stored stay as they
  are (same rows), the rest run on resuming, none twice; the results are the unsharded run's.
  (SIGKILL: tests/test_bench_run.py, the same store.)"""
  preset = str(sharded / "tiny.toml")
  store = tmp_path / "shard.sqlite"
  argv = ["run", "--preset", preset, "--seeds", "3-4", "--shard", "0/2", "--results", str(store)]
  process = subprocess.Popen(
    [sys.executable, "-m", "bench", *argv],
    cwd=ROOT,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.monotonic() + 240
  while stored(store) == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
  process.send_signal(signal.SIGTERM)
  process.wait(timeout=60)
  rows = lambda: (
    sqlite3.connect(store)
    .execute("SELECT id, params, seed, finished_at FROM points ORDER BY id")
    .fetchall()
  )
  before = rows()
  assert 0 < len(before) < 6, f"SIGTERM landed with {len(before)} of 6 points stored"
  assert bench_main(argv) == 0
  after = rows()
  assert after[: len(before)] == before and len(after) == len({r[1:3] for r in after}) == 6
  whole = _records(sharded / "whole.sqlite")
  assert all(differing_field(whole[k], r) is None for k, r in _records(store).items())


def test_bench_submit_leaves_the_processes_logging_alone():
  """submitit configures logging on import (closing every handler, pytest's too) unless told not
  to: ``jaxattn_bench.submit`` tells it."""
  code = (
    "import logging, os; handler = logging.FileHandler(os.devnull); "
    "logging.getLogger().addHandler(handler); import jaxattn_bench.submit; "
    "assert handler.stream is not None, 'closed'"
  )
  result = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    env={k: v for k, v in os.environ.items() if k != "SUBMITIT_LOG_LEVEL"},
  )
  assert result.returncode == 0, result.stderr


def test_a_schema_1_store_merges_into_the_current_schema_unchanged(tmp_path, capsys):
  """Older stores are read as they are and written at the current schema; the input is not
  migrated."""
  points = grid.parse_preset(V1_TINY, "tiny").points
  old = tmp_path / "v1.sqlite"
  write_v1(old, points, seed=0)
  unread = old.read_bytes()
  out = tmp_path / "merged.sqlite"
  assert bench_main(["merge", str(out), str(old)]) == 0
  assert old.read_bytes() == unread
  before, after = _records(old), _records(out)
  assert before.keys() == after.keys()
  assert all(differing_field(before[k], after[k]) is None for k in before)
  assert all(r.verdicts is None and r.d_min == 16 for r in after.values())
  assert sqlite3.connect(out).execute("PRAGMA user_version").fetchone()[0] == 3
