"""Inputs are never written: results files are read read-only (plots, a complete store under
``bench run``) and output paths are checked before any work (jaxattn_bench.store, runner)."""

import os
import pathlib
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

import jaxattn as ja
from jaxattn_bench.cli import main as bench_main
from jaxattn_bench.errors import CommandError
from jaxattn_bench.store import ResultsStore
from jaxattn_plots.__main__ import main as plots_main
from tests.test_store_sharing import preset

AS_ROOT = os.geteuid() == 0  # root writes whatever the mode bits say


def complete_store(path, points):
  """A store holding ``points`` at seed 0 (every trial verifies at every d): no JAX work."""
  with ResultsStore(path) as store:
    run = store.start_run({"seed": 0, "backend": "cpu"})
    for point in points:
      verdicts = np.ones((point.trials, len(point.d_grid)), bool)
      store.add(
        run,
        point.params(),
        0,
        ja.MinDResult.from_verdicts(point.d_grid, verdicts, point.delta),
        1,
        0.1,
      )


def snapshot(folder: pathlib.Path) -> dict:
  """Every file in ``folder`` with its bytes and mtime."""
  return {
    f: (f.read_bytes(), f.stat().st_mtime_ns) for f in sorted(folder.rglob("*")) if f.is_file()
  }


def deny_writes(monkeypatch, path):
  """Makes ``path`` read-only: chmod 0444, and, as root, os.access saying so."""
  path.chmod(0o444)
  if AS_ROOT:
    real = os.access
    monkeypatch.setattr(
      os,
      "access",
      lambda p, mode: (
        real(p, mode) and not (mode & os.W_OK and pathlib.Path(p).absolute() == path.absolute())
      ),
    )


@pytest.mark.parametrize(
  "make, message",
  [
    (lambda path: path.write_bytes(b""), "holds no finished points"),
    (
      lambda path: sqlite3.connect(path).executescript("CREATE TABLE t (x); DROP TABLE t;"),
      "holds no finished points",
    ),
    (
      lambda path: sqlite3.connect(path).execute("CREATE TABLE other (x)"),
      "is not a results file of schema 1 to 3",
    ),
  ],
)
def test_plots_refuses_an_empty_or_foreign_file_unchanged(tmp_path, capsys, make, message):
  """A zero-byte file, a database without tables, another program's database: one line,
  exit 2, every byte and the mtime as they were, nothing created beside them. Guards
  against the schema being written into the user's input file."""
  path = tmp_path / "input.sqlite"
  make(path)
  before = snapshot(tmp_path)
  assert plots_main(["--results", str(path)]) == 2
  err = capsys.readouterr().err
  assert message in err and err.count("\n") == 1 and err.startswith("python -m plots: error:")
  assert snapshot(tmp_path) == before


def test_a_complete_read_only_store_is_plotted_and_reported(tmp_path, capsys, monkeypatch):
  """A complete store with mode 0444: plots draws it, ``bench run`` reports it (summary table,
  CSV, --plan) and neither changes a byte or the mtime, as root too (SQLite's mode=ro).
  Guards against 'attempt to write a readonly database' and against writes on reading."""
  path_toml, points = preset(tmp_path, [1.0, 2.0])
  results = tmp_path / "store" / "r.sqlite"
  complete_store(results, points)
  deny_writes(monkeypatch, results)
  before = snapshot(results.parent)
  assert plots_main(["--results", str(results), "--out", str(tmp_path / "figs")]) == 0
  assert (tmp_path / "figs" / "fit.json").is_file()
  args = ["run", "--preset", path_toml, "--results", str(results), "--seed", "0"]
  assert bench_main([*args, "--no-figures", "--export-csv", str(tmp_path / "r.csv")]) == 0
  out = capsys.readouterr().out
  assert "2 stored" in out and "0 to run" in out and out.count(" stored\n") == 2
  assert len((tmp_path / "r.csv").read_text().splitlines()) == 1 + 2 * len(points[0].d_grid)
  assert bench_main([*args, "--plan"]) == 0 and "2 of 2 points stored" in capsys.readouterr().out
  assert snapshot(results.parent) == before
  with pytest.raises(CommandError, match="cannot write results file .* is read-only"):
    ResultsStore(results)  # opening it for writing is refused in one line


def test_pending_points_on_a_read_only_store_are_one_line(tmp_path, capsys, monkeypatch):
  """Points left to compute on a store that cannot be written: one line naming how many, exit 2,
  before any work, file unchanged. Guards against a traceback after computing."""
  path_toml, points = preset(tmp_path, [1.0, 2.0])
  results = tmp_path / "r.sqlite"
  complete_store(results, points[:1])
  deny_writes(monkeypatch, results)
  before = snapshot(tmp_path)
  assert bench_main(["run", "--preset", path_toml, "--results", str(results), "--no-figures"]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "1 point(s) pending, but results file" in err
  assert "is read-only" in err and snapshot(tmp_path) == before


def test_a_store_left_mid_write_is_refused_by_readers_and_recovered_by_a_run(tmp_path, capsys):
  """A run killed inside a transaction leaves a hot journal: plots (read-only) refuses in one
  line and changes nothing; ``bench run`` opens it for writing, which rolls the write back,
  and reports the points as they were. Guards against a kill making a store unreadable
  for the next run (a read-only open cannot roll back)."""
  path_toml, points = preset(tmp_path, [1.0])
  results = tmp_path / "r.sqlite"
  complete_store(results, points)
  writer = subprocess.Popen(
    [
      sys.executable,
      "-c",
      f"""
import sqlite3, time
db = sqlite3.connect({str(results)!r}, isolation_level=None)
db.execute("PRAGMA cache_size = 1")  # spill to the file: the journal is then hot
db.execute("BEGIN IMMEDIATE")
db.execute("UPDATE points SET wall_s = 99")
db.execute("INSERT INTO runs (preset_source) VALUES (?)", ("x" * 1000000,))
print("written", flush=True)
time.sleep(60)
""",
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  assert writer.stdout.readline() == "written\n"
  os.kill(writer.pid, signal.SIGKILL)
  writer.wait()
  before = snapshot(tmp_path)
  assert results.with_name("r.sqlite-journal") in before
  assert plots_main(["--results", str(results), "--out", str(tmp_path / "figs")]) == 2
  err = capsys.readouterr().err
  assert "left in the middle of a write" in err and err.count("\n") == 1
  assert snapshot(tmp_path) == before
  assert (
    bench_main(
      ["run", "--preset", path_toml, "--results", str(results), "--seed", "0", "--no-figures"]
    )
    == 0
  )
  assert "1 stored" in capsys.readouterr().out
  assert not results.with_name("r.sqlite-journal").exists()
  with ResultsStore(results, create=False) as store:
    assert [r.wall_s for r in store.records()] == [0.1]


@pytest.mark.parametrize(
  "argv, message",
  [
    (
      ["run", "--preset", "{toml}", "--results", "{new}", "--figures", "{file}/figs"],
      "cannot write figures folder (--figures)",
    ),
    (
      ["run", "--preset", "{toml}", "--results", "{file}/r.sqlite", "--no-figures"],
      "cannot write results file",
    ),
    (
      [
        "run",
        "--preset",
        "{toml}",
        "--results",
        "{new}",
        "--no-figures",
        "--export-csv",
        "{file}/r.csv",
      ],
      "cannot write --export-csv file",
    ),
    (
      ["run", "--preset", "{toml}", "--results", "{new}", "--export-csv", "{tmp}"],
      "cannot write --export-csv file",
    ),
    (["beyond", "--results", "{new}", "--out", "{file}/out"], "cannot write output folder (--out)"),
    (["bits", "--results", "{new}", "--out", "{file}/out"], "cannot write output folder (--out)"),
    (
      ["practice", "--preset", "{toml}", "--results", "{new}", "--out", "{file}/out"],
      "cannot write output folder (--out)",
    ),
    (
      ["bits", "--results", "{new}", "--out", "{tmp}/out", "--seed", "-1"],
      "--seed must be >= 0, got -1",
    ),
    (["plots", "--results", "{done}", "--out", "{file}/out"], "cannot write output folder (--out)"),
  ],
)
def test_unwritable_outputs_are_refused_before_any_work(tmp_path, capsys, argv, message):
  """An output under a regular file (unwritable even for root) or a folder given for a file:
  one line, exit 2, before the store is opened or anything drawn. Guards against a
  traceback after all the work."""
  path_toml, points = preset(tmp_path, [1.0])
  complete_store(tmp_path / "done.sqlite", points)
  (tmp_path / "file").write_text("not a folder")
  argv = [
    a.format(
      toml=path_toml,
      new=tmp_path / "new.sqlite",
      file=tmp_path / "file",
      tmp=tmp_path,
      done=tmp_path / "done.sqlite",
    )
    for a in argv
  ]
  before = snapshot(tmp_path)
  status = plots_main(argv[1:]) if argv[0] == "plots" else bench_main(argv)
  err = capsys.readouterr().err
  assert status == 2 and message in err and err.count("\n") == 1, err
  assert snapshot(tmp_path) == before  # no store created, nothing drawn
