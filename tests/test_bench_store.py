"""Results store: round trip, identity, atomic writes, CSV export (jaxattn_bench.store)."""

import csv
import sqlite3

import numpy as np
import pytest

import jaxattn as ja
from jaxattn_bench.errors import CommandError
from jaxattn_bench.store import RUN_FIELDS, ResultsStore, canonical, export_csv, record_key

PARAMS = {"family": "random_regular", "method": "jl", "length": 64, "nnz": 1, "a_min": 0.2,
          "eps1": 0.5, "eps2": 0.5, "d_grid": [8, 16, 32], "trials": 4, "delta": 0.25}


def result(successes, d_min, d_grid=(8, 16, 32), trials=4):
  successes = np.asarray(successes)
  low, high = ja.stats.clopper_pearson(successes, trials)
  return ja.MinDResult(d_min=d_min, d_grid=np.asarray(d_grid), successes=successes,
                       trials=trials, success_rate=successes / trials, ci_low=low, ci_high=high)


def test_round_trip(tmp_path):
  path = tmp_path / "sub" / "r.sqlite"
  first, second = result([0, 3, 4], 16), result([0, 0, 1], None)
  with ResultsStore(path) as store:
    run = store.start_run({"preset": "t", "seed": 7, "backend": "cpu", "jax_version": "x"})
    store.add(run, PARAMS, 7, first, 1234, 1.5)
    store.add(run, {**PARAMS, "length": 128}, 7, second, None, 2.5)
  with ResultsStore(path, create=False) as store:
    records = store.records()
    assert store.finished() == {(canonical(PARAMS), 7), (canonical({**PARAMS, "length": 128}), 7)}
  a, b = records
  assert a.params == PARAMS and a.seed == 7 and a.d_min == 16 and a.jl_dim == 1234
  assert a.wall_s == 1.5 and a.trials == 4 and a.run["preset"] == "t" and a.run["seed"] == 7
  assert set(a.run) == set(RUN_FIELDS)
  np.testing.assert_array_equal(a.d, [8, 16, 32])
  np.testing.assert_array_equal(a.successes, [0, 3, 4])
  np.testing.assert_allclose(a.rate, first.success_rate)
  np.testing.assert_allclose(a.ci_low, first.ci_low)
  np.testing.assert_allclose(a.ci_high, first.ci_high)
  assert b.d_min is None and b.jl_dim is None and b.params["length"] == 128
  assert record_key(a) == (canonical(PARAMS), 7)


def test_point_is_unique_per_seed(tmp_path):
  with ResultsStore(tmp_path / "r.sqlite") as store:
    run = store.start_run({"seed": 0})
    store.add(run, PARAMS, 0, result([0, 3, 4], 16), 1, 1.0)
    store.add(run, PARAMS, 1, result([0, 3, 4], 16), 1, 1.0)
    with pytest.raises(sqlite3.IntegrityError):
      store.add(run, dict(reversed(PARAMS.items())), 0, result([0, 3, 4], 16), 1, 1.0)
    assert len(store.records()) == 2


def test_failed_add_leaves_no_partial_point(tmp_path):
  class Broken(ja.MinDResult):
    @property
    def success_rate(self):
      raise RuntimeError("killed mid-write")

  with ResultsStore(tmp_path / "r.sqlite") as store:
    run = store.start_run({"seed": 0})
    with pytest.raises(RuntimeError):
      store.add(run, PARAMS, 0, Broken(*result([0, 3, 4], 16)), 1, 1.0)
    assert store.records() == [] and store.finished() == set()


def test_not_a_results_file(tmp_path):
  junk = tmp_path / "junk.sqlite"
  junk.write_text("hello, this is not a database" * 10)
  with pytest.raises(CommandError, match="not a results file"):
    ResultsStore(junk)
  with pytest.raises(CommandError, match="no results file"):
    ResultsStore(tmp_path / "missing.sqlite", create=False)


def test_export_csv_is_tidy(tmp_path):
  with ResultsStore(tmp_path / "r.sqlite") as store:
    run = store.start_run({"seed": 0, "backend": "cpu"})
    store.add(run, PARAMS, 0, result([0, 3, 4], 16), 99, 1.0)
    store.add(run, {**PARAMS, "nnz": 2}, 0, result([0, 0, 1], None), 99, 1.0)
    export_csv(store.records(), tmp_path / "out.csv")
  with open(tmp_path / "out.csv", newline="") as handle:
    rows = list(csv.DictReader(handle))
  assert len(rows) == 6
  assert [r["d"] for r in rows[:3]] == ["8", "16", "32"]
  assert {r["d_min"] for r in rows} == {"16", ""} and rows[0]["backend"] == "cpu"
  assert rows[1]["successes"] == "3" and float(rows[1]["success_rate"]) == 0.75
  assert rows[3]["nnz"] == "2" and "d_grid" not in rows[0]
