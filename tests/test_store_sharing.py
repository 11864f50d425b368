"""Runs that share a results store: each point is computed by one run, and the store ends as
one run's would (claims: jaxattn_bench.store; waiting and taking over: jaxattn_bench.runner)."""

import contextlib
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import time

from jaxattn_bench import grid
from jaxattn_bench.cli import main as bench_main
from jaxattn_bench.store import ResultsStore, canonical

ROOT = pathlib.Path(__file__).resolve().parent.parent

# One point per ε1, all of one shape (ε1 is traced: one compile per process).
PRESET = """
trials = 2
delta = 0.5
family = "random_regular"
method = "jl"
length = 8
a_min = 0.5
eps2 = 0.5
nnz = 1
[[grid]]
eps1 = {eps1}
d_grid = [4, 8, 16, 32, 64]
"""


def preset(tmp_path, eps1) -> tuple[str, list[grid.Point]]:
  """(path of a preset of these ε1, its points)."""
  text = PRESET.format(eps1=list(eps1))
  path = tmp_path / f"eps1_{'_'.join(map(str, eps1))}.toml"
  path.write_text(text)
  return str(path), grid.parse_preset(text, path.stem).points


def key(point) -> tuple[str, int]:
  return canonical(point.params()), 0


def contents(path):
  """Everything a run decides about its points: per point its params, seed, d_min, jl_dim,
  rates and per-trial estimators (not who computed it, or when)."""
  with ResultsStore(path, create=False) as store:
    return sorted(
      (
        canonical(r.params),
        r.seed,
        r.d_min,
        r.jl_dim,
        r.successes.tolist(),
        r.ci_low.tolist(),
        r.thresholds.tolist(),
        r.d_median,
        r.d_median_low,
        r.d_median_high,
        r.d_quantile,
      )
      for r in store.records()
    )


def claims(path) -> int:
  with sqlite3.connect(path) as db:
    return db.execute("SELECT count(*) FROM claims").fetchone()[0]


@contextlib.contextmanager
def time_limit(seconds: int):
  """Ends a hung in-process run (a run that waits for ever) with an error instead."""

  def expire(*_):
    raise TimeoutError(f"no end after {seconds} s")

  previous = signal.signal(signal.SIGALRM, expire)
  signal.alarm(seconds)
  try:
    yield
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def run(capsys, preset_path, results) -> str:
  """``bench run`` in this process; its stdout (the summary table marks computed points new)."""
  with time_limit(600):
    status = bench_main(
      ["run", "--preset", preset_path, "--results", str(results), "--seed", "0", "--no-figures"]
    )
  out, err = capsys.readouterr()
  assert status == 0, err
  return out


def test_two_runs_on_one_store_compute_each_point_once(tmp_path, capsys):
  """Run A (a subprocess, ε1 = 1, 2) and run B (this process, ε1 = 1, 4) share a store while
  a third party holds ε1 = 1: A computes ε1 = 2, then waits instead of computing ε1 = 1
  (which it would first: points of equal cost go in order); once released, one of them
  computes it. Every point is computed once in all (counted from the summary tables), the
  store equals one run's of all three, and no claim is left. Guards against claims that
  do not exclude, a run that stops (or crashes) on a point another run holds, and claims
  left behind."""
  path_a, points_a = preset(tmp_path, [1.0, 2.0])
  path_b, _ = preset(tmp_path, [1.0, 4.0])
  path_all, _ = preset(tmp_path, [1.0, 2.0, 4.0])
  shared = tmp_path / "shared.sqlite"
  holder = ResultsStore(shared, lease_s=3600)  # for the whole test, however slow the machine
  assert holder.claim(key(points_a[0]))
  run_a = subprocess.Popen(
    [
      sys.executable,
      "-m",
      "bench",
      "run",
      "--preset",
      path_a,
      "--results",
      str(shared),
      "--seed",
      "0",
      "--no-figures",
    ],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  try:
    single = run(capsys, path_all, tmp_path / "one.sqlite")  # meanwhile, the one-run reference
    assert single.count(" new\n") == 3
    deadline = time.monotonic() + 180
    while not holder.finished() and run_a.poll() is None:
      assert time.monotonic() < deadline, "run A stored nothing"
      time.sleep(0.1)
    time.sleep(1.0)  # two of A's looks at the store
    assert run_a.poll() is None, run_a.communicate()  # A waits for ε1 = 1 ...
    assert holder.finished() == {key(points_a[1])}  # ... and has not computed it
    holder.close()  # releases ε1 = 1
    out_b = run(capsys, path_b, shared)
    out_a, err_a = run_a.communicate(timeout=180)
  finally:
    run_a.kill()
  assert run_a.returncode == 0 and "Traceback" not in err_a, err_a
  assert out_a.count(" new\n") + out_b.count(" new\n") == 3, (out_a, out_b)
  assert out_b.count(" new\n") >= 1  # B computed ε1 = 4, A cannot have
  assert contents(shared) == contents(tmp_path / "one.sqlite") and claims(shared) == 0


def test_a_killed_runs_claims_are_taken_over(tmp_path, capsys):
  """Claims left by a killed run on this host (its pid gone, lease still running) and by a run
  elsewhere whose lease expired do not stop a new run: it computes both points at once.
  Guards against a run waiting for ever (or a lease's length) on a dead claimant."""
  path, points = preset(tmp_path, [1.0, 2.0])
  results = tmp_path / "r.sqlite"
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  ResultsStore(results).close()  # the tables
  with sqlite3.connect(results) as db:
    db.executemany(
      "INSERT INTO claims VALUES (?, ?, 'killed', ?, ?, ?)",
      [
        (*key(points[0]), socket.gethostname(), dead.pid, time.time() + 3600),  # killed here
        (*key(points[1]), "elsewhere", 1, time.time() - 1),
      ],
    )  # lease expired
  out = run(capsys, path, results)  # within time_limit: a run that waits fails
  assert out.count(" new\n") == 2 and claims(results) == 0
