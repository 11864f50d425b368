"""``python -m bench run``: end to end on a tiny preset, resume after a kill, CLI errors."""

import pathlib
import sqlite3
import subprocess
import sys
import time

import pytest

from jaxattn_bench.cli import main as bench_main
from jaxattn_bench.store import ResultsStore
from tests import guarded

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Two shapes (two compiles) of three points each: ε1 is traced, so points that
# differ only in ε1 share a compile and finish within milliseconds of each other.
TINY = """
description = "tiny test grid"
trials = 2
delta = 0.5
family = "random_regular"
method = "jl"
a_min = 0.5
eps2 = 0.5
nnz = 1
[[grid]]
length = [8, 12]
eps1 = [1.0, 2.0, 4.0]
d_grid = [4, 8, 16, 32, 64, 128]
"""


def bench(*args, **kwargs):
  return subprocess.run(
    [sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, **kwargs
  )


def stored(path) -> int:
  try:
    with sqlite3.connect(path, timeout=5) as db:
      return db.execute("SELECT count(*) FROM points").fetchone()[0]
  except sqlite3.OperationalError:  # not created yet
    return 0


def table(path):
  with ResultsStore(path, create=False) as store:
    return sorted(
      (str(sorted(r.params.items())), r.seed, r.d_min, r.jl_dim, r.successes.tolist(), r.d.tolist())
      for r in store.records()
    )


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, capsys):
  preset = tmp_path / "tiny.toml"
  preset.write_text(TINY)
  common = ["run", "--preset", str(preset), "--seed", "3", "--no-figures"]
  # The uninterrupted reference runs at the same time as the run to be killed.
  whole_err = (tmp_path / "whole.err").open("w")
  whole = subprocess.Popen(
    [sys.executable, "-m", "bench", *common, "--results", str(tmp_path / "whole.sqlite")],
    cwd=ROOT,
    stdout=subprocess.DEVNULL,
    stderr=whole_err,
  )
  resumed = tmp_path / "resumed.sqlite"
  process = subprocess.Popen(
    [sys.executable, "-m", "bench", *common, "--results", str(resumed)],
    cwd=ROOT,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.monotonic() + 240
  while stored(resumed) == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
  process.kill()
  process.wait()
  done = stored(resumed)
  assert 0 < done < 6, f"kill landed with {done} of 6 points stored: cannot test resuming"
  assert (
    bench_main(["run", "--preset", str(preset), "--seed", "3", "--plan", "--results", str(resumed)])
    == 0
  )
  plan = capsys.readouterr().out
  assert plan.count("  pending\n") == 6 - done and plan.count(" s\n") == done
  assert f"progress: {done} of 6 points stored in {resumed} for seed 3" in plan

  status = whole.wait(timeout=300)
  whole_err.close()
  assert status == 0, (tmp_path / "whole.err").read_text()
  assert bench_main([*common, "--results", str(resumed)]) == 0  # resumed in this process
  rerun = capsys.readouterr().out
  assert f"6 points, {done} stored" in rerun and f"{6 - done} to run" in rerun
  assert table(resumed) == table(tmp_path / "whole.sqlite")

  assert (
    bench_main([*common, "--results", str(resumed), "--export-csv", str(tmp_path / "r.csv")]) == 0
  )
  again = capsys.readouterr().out
  assert "6 stored" in again and "0 to run" in again
  assert again.count("stored\n") == 6  # the summary table marks every point stored
  assert len((tmp_path / "r.csv").read_text().splitlines()) == 1 + 6 * 6


def test_figures_written_at_the_end(tmp_path):
  preset = tmp_path / "tiny.toml"
  preset.write_text(TINY.replace("length = [8, 12]", "length = [8]"))
  out = tmp_path / "figs"
  code = bench_main(
    ["run", "--preset", str(preset), "--results", str(tmp_path / "r.sqlite"), "--figures", str(out)]
  )
  assert code == 0
  assert (out / "c_d_vs_eps1.png").is_file() and (out / "d_success_rate.pdf").is_file()
  assert (out / "fit.json").is_file()


@pytest.mark.parametrize(
  "args, message",
  [
    (["--preset", "nope"], "error: unknown preset 'nope'"),
    (["--preset", "{bad}"], "error: preset bad: unknown field(s) ['colour']"),
    (["--preset", "quick", "--seed", "-1"], "error: --seed must be >= 0"),
    (["--preset", "quick", "--results", "{junk}"], "is not a results file"),
  ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, args, message):
  (tmp_path / "bad.toml").write_text(TINY.replace("nnz = 1\n", "nnz = 1\ncolour = 'red'\n"))
  (tmp_path / "junk.sqlite").write_text("not a database" * 100)
  args = [a.format(bad=tmp_path / "bad.toml", junk=tmp_path / "junk.sqlite") for a in args]
  assert bench_main(["run", *args]) == 2
  captured = capsys.readouterr()
  assert message in captured.err and captured.err.count("\n") == 1
  assert captured.err.startswith("jaxattn run: error:")


def test_cli_error_in_a_real_process_has_no_traceback(tmp_path):
  bad = tmp_path / "bad.toml"
  bad.write_text(TINY.replace('method = "jl"', 'method = "magic"'))
  for args in (["run", "--preset", str(bad)], ["run", "--seed", "abc"]):
    result = bench(*args, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("python -m bench run: error:")
  assert "unknown value 'magic'" in bench("run", "--preset", str(bad), timeout=120).stderr


def test_plan_lists_points_without_running(tmp_path):
  preset = tmp_path / "tiny.toml"
  preset.write_text(TINY)
  result = bench(
    "run", "--preset", str(preset), "--plan", "--results", str(tmp_path / "r.sqlite"), timeout=120
  )
  assert result.returncode == 0 and "6 points" in result.stdout
  assert not (tmp_path / "r.sqlite").exists()


@pytest.mark.parametrize("plan", [True, False])
def test_a_preset_that_cannot_fit_is_refused_before_any_work(tmp_path, plan):
  """A d grid of 10^9 (the issue's row): the run refuses it in one line, exit 2; --plan prints
  the plan and says the point would be refused here, exit 0. In a watched child
  (tests/guarded.py): a broken guard fails the test at 1 GiB or 60 s."""
  preset = tmp_path / "huge.toml"
  preset.write_text(TINY.replace("d_grid = [4, 8, 16, 32, 64, 128]", "d_grid = [1000000000]"))
  results = tmp_path / "huge.sqlite"
  result = guarded.bench(
    "run", "--preset", preset, "--results", results, *(["--plan"] if plan else []), cwd=ROOT
  )
  err, out = result.stderr, result.stdout
  if plan:
    assert result.returncode == 0 and "d_max=1000000000" in out, out + err
    assert "refused here: point L=" in out and "needs about" in out, out
  else:
    assert result.returncode == 2 and err.count("\n") == 1 and "needs about" in err, err
  assert not results.exists()  # refused before the store was opened
