"""Results files of schema 1 are read unchanged, plot and resume (migrated by the run that
writes); schema 2 round-trips per-trial data, schema 3 which of them were evaluated."""

import math
import sqlite3

import numpy as np

import jaxattn as ja
from jaxattn_bench import grid
from jaxattn_bench.cli import main as bench_main
from jaxattn_bench.store import ResultsStore, canonical, export_csv
from jaxattn_plots import write_report

# The schema-1 DDL, as jaxattn_bench.store wrote it before per-trial data.
V1_RUN_FIELDS = (
  "started_at",
  "preset",
  "preset_source",
  "seed",
  "argv",
  "jax_version",
  "jaxlib_version",
  "backend",
  "device_kind",
  "device_count",
  "git_commit",
  "python",
  "platform",
)
V1_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, {", ".join(V1_RUN_FIELDS)});
CREATE TABLE IF NOT EXISTS points (
  id INTEGER PRIMARY KEY, params TEXT NOT NULL, seed INTEGER NOT NULL,
  d_min INTEGER, jl_dim INTEGER, wall_s REAL NOT NULL, finished_at TEXT NOT NULL,
  run_id INTEGER NOT NULL REFERENCES runs(id), UNIQUE (params, seed));
CREATE TABLE IF NOT EXISTS rates (
  point_id INTEGER NOT NULL REFERENCES points(id), d INTEGER NOT NULL,
  successes INTEGER NOT NULL, trials INTEGER NOT NULL, rate REAL NOT NULL,
  ci_low REAL NOT NULL, ci_high REAL NOT NULL, PRIMARY KEY (point_id, d));
PRAGMA user_version = 1;
"""

TINY = """
trials = 2
delta = 0.5
family = "random_regular"
method = "jl"
a_min = 0.5
eps2 = 0.5
nnz = 1
eps1 = 1.0
[[grid]]
length = [8, 12, 16]
d_grid = [4, 8, 16, 32, 64]
"""


def write_v1(path, points, seed):
  """A schema-1 file holding ``points`` with made-up rates (d_min = 16)."""
  with sqlite3.connect(path) as db:
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO runs (id, preset, seed, backend) VALUES (1, 'tiny', ?, 'cpu')", (seed,))
    for point in points:
      cursor = db.execute(
        "INSERT INTO points (params, seed, d_min, jl_dim, wall_s, finished_at, "
        "run_id) VALUES (?, ?, 16, 100, 1.0, 'now', 1)",
        (canonical(point.params()), seed),
      )
      for d in point.d_grid:
        k = point.trials if d >= 16 else 0
        db.execute(
          "INSERT INTO rates VALUES (?, ?, ?, ?, ?, 0.0, 1.0)",
          (cursor.lastrowid, d, k, point.trials, k / point.trials),
        )


def test_v1_file_opens_plots_and_resumes(tmp_path, capsys):
  preset = tmp_path / "tiny.toml"
  preset.write_text(TINY)
  points = grid.parse_preset(TINY, "tiny").points
  path = tmp_path / "old.sqlite"
  write_v1(path, points[:2], seed=0)
  unread = path.read_bytes()
  with ResultsStore(path, create=False) as store:
    old = store.records()
  assert [r.d_min for r in old] == [16, 16] and all(r.verdicts is None for r in old)
  assert all(r.thresholds is None and r.d_median is None for r in old)
  assert path.read_bytes() == unread  # read as it is: reading migrates nothing
  report = write_report(old, tmp_path / "figures")
  assert (tmp_path / "figures" / "a_d_vs_length.png").is_file() and report.rows == []

  assert (
    bench_main(
      [
        "run",
        "--preset",
        str(preset),
        "--results",
        str(path),
        "--seed",
        "0",
        "--figures",
        str(tmp_path / "figures"),
      ]
    )
    == 0
  )
  out = capsys.readouterr().out
  assert "3 points, 2 stored" in out and "1 to run" in out
  with ResultsStore(path, create=False) as store:
    records = store.records()
  assert len(records) == 3 and records[2].verdicts.shape == (2, 5)
  assert [r.d_min for r in records[:2]] == [16, 16] and records[0].verdicts is None
  with sqlite3.connect(path) as db:  # the run, which writes, migrated it
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3


def test_per_trial_data_round_trip(tmp_path):
  verdicts = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [1, 1, 1, 0]], bool)
  result = ja.MinDResult.from_verdicts((8, 16, 32, 64), verdicts, delta=0.25)
  params = {"length": 64, "d_grid": [8, 16, 32, 64], "trials": 4, "delta": 0.25}
  with ResultsStore(tmp_path / "r.sqlite") as store:
    store.add(store.start_run({"seed": 0}), params, 0, result, None, 1.0)
    (record,) = store.records()
  np.testing.assert_array_equal(record.verdicts, verdicts)
  np.testing.assert_array_equal(record.thresholds, [16, 32, 64, math.inf])
  np.testing.assert_array_equal(record.first_success, [16, 32, 64, 8])
  for name in (
    "d_median",
    "d_median_low",
    "d_median_high",
    "d_quantile",
    "d_quantile_low",
    "d_quantile_high",
  ):
    assert getattr(record, name) == getattr(result, name), name
  assert record.d_median == 32 and record.d_quantile == 64 and record.d_median_low == -math.inf


def test_schema_2_reads_as_evaluated_and_takes_adaptive_points(tmp_path):
  """A schema-2 file (no ``evaluated`` column) reads as every verdict computed; opened for
  writing it gains the column, and an adaptive result's not-evaluated cells round-trip."""
  full = ja.MinDResult.from_verdicts((8, 16, 32), np.array([[0, 1, 1]], bool), delta=0.5)
  params = {"length": 64, "d_grid": [8, 16, 32], "trials": 1, "delta": 0.5}
  path = tmp_path / "v2.sqlite"
  with ResultsStore(path) as store:
    store.add(store.start_run({"seed": 0}), params, 0, full, None, 1.0)
  with sqlite3.connect(path) as db:
    db.execute("ALTER TABLE points DROP COLUMN evaluated")
    db.execute("PRAGMA user_version = 2")
  with ResultsStore(path, create=False) as store:
    (old,) = store.records()
  assert old.evaluated is None and old.verdicts.tolist() == [[False, True, True]]
  states = np.array([[0, -1, 1], [-1, 0, 1]], np.int8)
  adaptive = ja.MinDResult.from_verdicts((8, 16, 32), states, delta=0.5)
  with ResultsStore(path) as store:
    store.add(store.start_run({"seed": 1}), {**params, "trials": 2}, 1, adaptive, None, 1.0)
    old, new = store.records()
  assert old.evaluated is None
  np.testing.assert_array_equal(new.evaluated, states != ja.schedule.NOT_EVALUATED)
  np.testing.assert_array_equal(new.verdicts, [[0, 1, 1], [0, 0, 1]])
  store_path = tmp_path / "rows.csv"
  export_csv([old, new], store_path)
  rows = store_path.read_text().splitlines()
  column = rows[0].split(",").index("evaluated")
  assert [row.split(",")[column] for row in rows[1:]] == ["1", "1", "1", "1", "1", "2"]
