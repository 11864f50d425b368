"""Results store: round trip, identity, atomic writes, claims, read-only opening, CSV export
(jaxattn_bench.store)."""

import csv
import os
import socket
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

import jaxattn as ja
from jaxattn_bench.errors import CommandError
from jaxattn_bench.store import (
  RUN_FIELDS,
  ResultsStore,
  canonical,
  check_output,
  export_csv,
  record_key,
)

PARAMS = {
  "family": "random_regular",
  "method": "jl",
  "length": 64,
  "nnz": 1,
  "a_min": 0.2,
  "eps1": 0.5,
  "eps2": 0.5,
  "d_grid": [8, 16, 32],
  "trials": 4,
  "delta": 0.25,
}


def result(successes, d_min, d_grid=(8, 16, 32), trials=4):
  successes = np.asarray(successes)
  low, high = ja.stats.clopper_pearson(successes, trials)
  return ja.MinDResult(
    d_min=d_min,
    d_grid=np.asarray(d_grid),
    successes=successes,
    trials=trials,
    success_rate=successes / trials,
    ci_low=low,
    ci_high=high,
  )


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
  """A point stored again (its params in another order) is refused, not added or crashed on:
  guards the point's identity and the first-stored-stands rule of shared stores."""
  with ResultsStore(tmp_path / "r.sqlite") as store:
    run = store.start_run({"seed": 0})
    assert store.add(run, PARAMS, 0, result([0, 3, 4], 16), 1, 1.0)
    assert store.add(run, PARAMS, 1, result([0, 3, 4], 16), 1, 1.0)
    assert not store.add(run, dict(reversed(PARAMS.items())), 0, result([0, 0, 4], 32), 1, 9.0)
    records = store.records()
  assert len(records) == 2 and records[0].d_min == 16 and records[0].wall_s == 1.0
  assert records[0].successes.tolist() == [0, 3, 4]


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


KEY = (canonical(PARAMS), 0)


def _set_claim(path, key, **fields):
  """Rewrites fields of the claim on ``key`` as another process would have left them."""
  with sqlite3.connect(path) as db:
    for name, value in fields.items():
      db.execute(f"UPDATE claims SET {name} = ? WHERE params = ? AND seed = ?", (value, *key))


def _dead_pid() -> int:
  child = subprocess.Popen([sys.executable, "-c", "pass"])
  child.wait()
  return child.pid


def test_a_claimed_point_is_left_to_its_claimant(tmp_path):
  """Two stores on one file: a live claim keeps the point from the other until it is stored
  (or released on close). Guards against a claim that does not exclude (points computed twice)."""
  path = tmp_path / "r.sqlite"
  with ResultsStore(path) as first, ResultsStore(path) as second:
    assert first.claim(KEY) and not second.claim(KEY) and first.claim(KEY)  # renewing is fine
    first.add(first.start_run({"seed": 0}), PARAMS, 0, result([0, 3, 4], 16), 1, 1.0)
    assert not second.claim(KEY) and not first.claim(KEY)  # stored: nothing left to claim
    other = (canonical({**PARAMS, "length": 128}), 0)
    assert first.claim(other) and not second.claim(other)
    first.close()  # releases its claims
    assert second.claim(other)
  with sqlite3.connect(path) as db:
    assert db.execute("SELECT count(*) FROM claims").fetchone()[0] == 0


@pytest.mark.parametrize(
  "fields, taken",
  [
    (dict(pid="dead"), True),  # its process was killed
    (dict(host="elsewhere", pid=1, expires_at=-1.0), True),  # lease ran out
    (dict(host="elsewhere", pid=1), False),  # live elsewhere, lease running
    (dict(host=socket.gethostname(), pid=os.getpid()), False),
  ],
)
def test_a_lapsed_claim_is_taken_over(tmp_path, fields, taken):
  """A claim whose process is gone (same host) or whose lease expired is taken over; a live
  one is not. Guards against points lost to a killed run, and against stealing live claims."""
  path = tmp_path / "r.sqlite"
  with ResultsStore(path) as killed, ResultsStore(path) as other:
    assert killed.claim(KEY)
    if fields.get("pid") == "dead":
      fields["pid"] = _dead_pid()
    _set_claim(path, KEY, **fields)
    assert other.claim(KEY) == taken


def test_heartbeat_renews_claims_while_computing(tmp_path):
  """A claim outlives its lease while the claimant's heartbeat runs, and lapses after.
  Guards against a long point being taken over (and computed twice) while still running."""
  path = tmp_path / "r.sqlite"
  with ResultsStore(path, lease_s=1.0) as claimant, ResultsStore(path) as other:
    assert claimant.claim(KEY)
    with claimant.heartbeat():  # renews every 0.25 s
      time.sleep(1.5)
      assert not other.claim(KEY)
    time.sleep(1.1)
    assert other.claim(KEY)


def test_reading_never_changes_the_file(tmp_path):
  """create=False opens read-only: a zero-byte file, an empty database and a schema-2 store
  read without a byte or the mtime changing, a foreign database is refused unchanged.
  Guards against the schema (or a migration) being written into an input file."""
  empty, foreign, store = (tmp_path / f"{name}.sqlite" for name in ("empty", "foreign", "r"))
  with sqlite3.connect(empty) as db:
    db.executescript("CREATE TABLE t (x); DROP TABLE t;")  # a database, without tables
  with sqlite3.connect(foreign) as db:
    db.execute("CREATE TABLE points (x)")
  with ResultsStore(store) as writer:
    writer.add(writer.start_run({"seed": 0}), PARAMS, 0, result([0, 3, 4], 16), 1, 1.0)
  (tmp_path / "zero.sqlite").write_bytes(b"")
  files = sorted(tmp_path.glob("*.sqlite"))
  before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
  time.sleep(0.01)
  for path, count in ((tmp_path / "zero.sqlite", 0), (empty, 0), (store, 1)):
    with ResultsStore(path, create=False) as reader:
      assert len(reader.records()) == count and len(reader.finished()) == count
  with pytest.raises(CommandError, match="not a results file of schema 1 to 3"):
    ResultsStore(foreign, create=False)
  with pytest.raises(CommandError, match="not a results file of schema 1 to 3"):
    ResultsStore(foreign)  # nor written when opened for writing
  assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files} == before
  assert sorted(tmp_path.iterdir()) == files  # no journal left either


def test_unwritable_outputs_are_named(tmp_path, monkeypatch):
  """check_output: a path under a regular file, a file where a folder is wanted (and the
  reverse), and a folder the OS will not write (os.access, since tests may run as root)."""
  (tmp_path / "file").write_text("x")
  with pytest.raises(CommandError, match="'.*file' is not a folder"):
    check_output(tmp_path / "file" / "out", "--out", folder=True)
  with pytest.raises(CommandError, match="is not a folder"):
    check_output(tmp_path / "file", "--out", folder=True)
  with pytest.raises(CommandError, match="is a folder"):
    check_output(tmp_path, "--export-csv")
  check_output(tmp_path / "new" / "deeper", "--out", folder=True)
  assert not (tmp_path / "new").exists()  # checking creates nothing
  monkeypatch.setattr(os, "access", lambda path, mode: False)
  with pytest.raises(CommandError, match="cannot write --out .* folder .* is read-only"):
    check_output(tmp_path / "new", "--out", folder=True)
  with pytest.raises(CommandError, match="cannot write results file .* is read-only"):
    ResultsStore(tmp_path / "file")
