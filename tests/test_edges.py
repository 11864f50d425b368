"""The edges a user at scale meets first (issue 16): jobs that cannot fit, inputs, hangs, files."""

from __future__ import annotations

import os
import re
import resource as rlimit
import shutil
import subprocess
import sys
import time
from collections import namedtuple

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from jaxattn_bench import resources
from jaxattn_bench.cli import main
from jaxattn_bench.errors import CommandError
from tests import guarded

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "data")


def test_optimize_search_on_les_miserables_completes(tmp_path):
  """A real graph (L = 77, N = 37) on which the optimize search hung at 0% CPU.

  optimize solved its two lstsq starts with two batched LAPACK LU calls that
  XLA ran at once; jaxlib 0.10's LU blocks a thread of XLA's CPU pool while it
  waits for batch chunks queued on that same pool, so with 2 threads both
  waited forever. Now both starts share one factorisation.
  """
  result = guarded.bench(
    "solve",
    os.path.join(DATA, "lesmis.mtx"),
    "--method",
    "optimize",
    "--search",
    "--d-grid",
    "1024,2048",
    "--out",
    tmp_path / "x.npz",
    max_rss=2 << 30,
    timeout=180,
    cwd=REPO,
  )
  assert result.returncode == 0, result.stderr
  assert "smallest verifying d = 1024 (" in result.stdout
  assert "CERTIFIED at d=1024" in result.stdout


# ---- a resource plan before any work (issue 16 item 1) ----------------------------------------

GB = 10**9
BANDED = os.path.join(REPO, "examples", "banded.npy")


def _fake_memory(monkeypatch, size: int) -> None:
  """The host (and any device) has ``size`` bytes available."""
  fake = lambda *_: resources.Available(size, "test limit")
  monkeypatch.setattr(resources, "host_memory", fake)
  monkeypatch.setattr(resources, "available_memory", fake)


def _one_error_line(capsys) -> str:
  err = capsys.readouterr().err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in err, err
  return lines[0]


@pytest.mark.parametrize(
  "argv, words",
  [
    (
      ["min_d", "--length", "2000000", "--nnz", "2", "--trials", "64", "--d-max", "4096"],
      "min_d at L=2000000, N=2, d_max=4096 (one trial) needs about 394 GB",
    ),
    (
      ["min_d", "--length", "160000", "--nnz", "2", "--trials", "4", "--d-max", "4096"],
      "min_d at L=160000, N=2, d_max=4096 (one trial) needs about 32.3 GB",
    ),
    (["solve", BANDED, "--d", "1000000000", "--out", "OUT"], "solve at d=1000000000"),
  ],
)
def test_a_job_that_cannot_fit_is_refused_in_one_line(argv, words, tmp_path):
  """In a watched child (``tests/guarded.py``): were the guard broken, the child would start
  the job, and it is killed at 1 GiB resident or 60 s, failing the test in seconds (with the
  estimate divided by 10 on purpose: killed after about 13–20 s, almost all of it start-up and
  compilation; 13.5 s at 1 GiB when last checked)."""
  out = tmp_path / "x.npz"
  result = guarded.bench(*[str(out) if a == "OUT" else a for a in argv], available=16 * GB)
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
  assert words in lines[0] and "but only 16 GB is available (test limit)" in lines[0], lines[0]
  assert not out.exists()


def test_solve_at_large_d_is_planned_in_l_times_d():
  """64×64 (N = 3) at d = 20000 and 40000: memory and file O(L·d), no dense 2d×d W_Q, W_K.

  They were 25.6 GB of memory at d = 40000 and a 6.41 GB file at d = 20000; now both fit
  easily (the real runs: docs/your-pattern.md, "The solution file"). Guards estimates that count
  dense W."""
  file = {d: resources.solution_file_bytes(64, 3, d) for d in (20000, 40000)}
  memory = {d: resources.solve_bytes(64, 3, d, "jl") for d in (20000, 40000)}
  assert file[20000] < 10.4e6 and 1.95 < file[40000] / file[20000] < 2.05, file
  assert memory[40000] < 0.2 * GB and 1.95 < memory[40000] / memory[20000] < 2.05, memory
  dense = 4 * 2 * (4 * 5000) * 5000  # W_Q, W_K ∈ R^{4d×d} at float32: random params stay dense
  assert resources.solve_bytes(64, 3, 5000, "jl", params="random") > dense


@pytest.mark.parametrize(
  "argv, words",
  [
    (
      ["--length", "2000000"],
      "perf at L=2000000, N=4, d=256 (dense L x L checks) needs about 6.01e+04 GB",
    ),
    (["--length", "40000", "--d", "64"], "perf at L=40000, N=4, d=64 (dense L x L checks)"),
    (
      ["--length", "64", "--d", "16", "--memory", "--memory-length", "4000000"],
      "perf --memory at L=4000000, N=4, d=128 needs about 49.7 GB",
    ),
    (
      ["--sweep-tiles", "--length", "65536", "--tile-rows", "1024,65536", "--tile-keys", "65536"],
      "perf --sweep-tiles at L=65536, N=4, d=256 needs about 648 GB",
    ),
  ],
)
def test_perf_refuses_what_cannot_fit_before_building_anything(argv, words, monkeypatch, capsys):
  """Guards: ``bench perf`` had no resource check: a huge --length built its problem and ran
  dense L×L checks until the machine ran out of memory. Nothing is built, compiled or
  spawned before the refusal (``perf.problem`` and the child would fail the test)."""
  from jaxattn_bench import perf

  _fake_memory(monkeypatch, 16 * GB)
  never = lambda *_, **__: pytest.fail("perf built or spawned work before refusing it")
  monkeypatch.setattr(perf, "problem", never)
  monkeypatch.setattr(subprocess, "run", never)
  start = time.perf_counter()
  assert main(["perf", *argv]) == 2
  assert time.perf_counter() - start < 10
  line = _one_error_line(capsys)
  assert words in line and "but only 16 GB is available (test limit)" in line, line


def test_a_solution_file_that_would_not_fit_on_disk_is_refused(monkeypatch, tmp_path, capsys):
  """64×64 at d = 20000: a 10.3 MB file (X is 64×40000 float32), refused on a 5 MB disk."""
  _fake_memory(monkeypatch, 64 * GB)
  usage = namedtuple("usage", "total used free")
  monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10 * GB, 9 * GB, 5 * 10**6))
  assert main(["solve", BANDED, "--d", "20000", "--out", str(tmp_path / "x.npz")]) == 2
  line = _one_error_line(capsys)
  assert "the solution file would take about 10.3 MB but" in line and "5 MB free" in line, line
  assert os.listdir(tmp_path) == []


def test_check_refuses_a_solution_it_cannot_hold(monkeypatch, tmp_path, capsys):
  out = str(tmp_path / "x.npz")
  assert main(["solve", BANDED, "--d", "1024", "--out", out]) == 0
  assert 4 * 64 * 2048 < os.path.getsize(out) <= resources.solution_file_bytes(64, 3, 1024)
  capsys.readouterr()
  _fake_memory(monkeypatch, 100 << 20)
  assert main(["check", out]) == 2
  assert "checking this solution (L=64, d=1024, X 64x2048) needs about" in _one_error_line(capsys)


def test_a_refusal_in_a_real_process_is_fast_and_allocates_nothing(tmp_path):
  """The child's own peak memory (its VmHWM, written at exit) stays under 1 GiB; a watchdog
  kills it (and fails the test) at 1 GiB resident or 60 s, should the guard break.

  Not RUSAGE_CHILDREN: that is the largest peak of every child this test process ever ran.
  """
  peak = tmp_path / "peak_kib"
  code = (
    "import atexit, re, sys; atexit.register(lambda: open(sys.argv[1], 'w').write(re.search("
    "r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))); "
    "from jaxattn_bench.cli import main; sys.exit(main(sys.argv[2:]))"
  )
  args = ["min_d", "--length", "2000000", "--nnz", "2", "--trials", "64", "--d-max", "4096"]
  result = guarded.run(
    [sys.executable, "-c", code, str(peak), *args], cwd=REPO, max_rss=1 << 30, timeout=60
  )
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert 0 < int(peak.read_text()) < 1 << 20  # KiB: under 1 GiB


def test_trials_per_batch_shrink_to_what_fits_and_results_do_not_change(monkeypatch, capsys):
  plan = resources.plan_search(
    "x",
    length=64,
    nnz=1,
    width=64,
    levels=2,
    method="jl",
    trials=8,
    available=resources.Available(
      resources.RUNTIME_BYTES + 2 * int(resources.SAFETY * 200_000), "test"
    ),
  )
  assert resources.search_trial_bytes(64, 1, 64, 2, "jl") < 200_000 and plan.max_trial_batch >= 2
  argv = ["min_d", "--length", "64", "--nnz", "1", "--eps1", "1", "--trials", "8", "--d-max", "64"]
  assert main(argv) == 0
  free = capsys.readouterr().out
  one = (
    resources.RUNTIME_BYTES
    + int(
      resources.SAFETY
      * resources.search_trial_bytes(
        64, 1, 64, len(__import__("jaxattn").geometric_grid(64, 4)), "jl"
      )
    )
    + 1
  )
  _fake_memory(monkeypatch, one)
  assert main(argv) == 0
  tight = capsys.readouterr().out
  strip = lambda text: re.sub(r"\(.*s\)", "", text)  # the device and time in the header line
  assert strip(tight) == strip(free)


def test_a_plan_is_printed_even_where_the_run_would_be_refused(monkeypatch, capsys, tmp_path):
  """``bench run --plan`` lists every point, then says which one this machine would refuse
  (exit 0: the plan is what was asked); the run itself is refused before any work (exit 2)."""
  _fake_memory(monkeypatch, 10**6)
  argv = ["run", "--preset", "quick", "--results", str(tmp_path / "none.sqlite")]
  assert main([*argv, "--plan"]) == 0
  out = capsys.readouterr().out
  assert re.search(r"\d+ points, total work", out) and "refused here: point L=" in out, out
  assert main(argv) == 2 and not (tmp_path / "none.sqlite").exists()


def test_check_points_fit_refuses_a_point_that_cannot_fit():
  point = namedtuple("point", "length nnz method dtype d_grid trials")
  small = point(256, 2, "jl", "float32", (64, 128), 8)
  huge = point(256, 2, "jl", "float32", (64, 1_000_000_000), 8)
  available = resources.Available(16 * GB, "test")
  resources.check_points_fit([small], available=available)
  with pytest.raises(CommandError, match=r"point L=256 N=2 jl d_max=1000000000 \(one trial\)"):
    resources.check_points_fit([small, huge], available=available)


CALIBRATION = r"""
import sys, jax, jax.numpy as jnp, jaxattn as ja
hwm = lambda: int([l for l in open("/proc/self/status")
                  if l.startswith("VmHWM")][0].split()[1]) << 10
jax.jit(lambda x: x @ x)(jnp.ones((8, 8))).block_until_ready()
base = hwm()
sampler = ja.patterns.Sampler("random_regular", length=8192, nnz=2, a_min=0.2)
ja.min_d(jax.random.PRNGKey(0), sampler, [256, 512], eps1=1.0, eps2=0.5, trials=1)
print(hwm() - base)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux's")
def test_the_search_estimate_bounds_the_measured_peak():
  """One trial at L = 8192, d_max = 512: measured peak growth within the plan, and not far below."""
  grown = int(
    subprocess.run(
      [sys.executable, "-c", CALIBRATION], capture_output=True, text=True, timeout=300, check=True
    ).stdout
  )
  estimate = resources.search_trial_bytes(8192, 2, 512, 2, "jl")
  assert estimate / 2 < grown <= resources.SAFETY * estimate + resources.RUNTIME_BYTES


def test_host_memory_is_the_least_of_its_limits(monkeypatch):
  limit = 1 << 40
  monkeypatch.setattr(rlimit, "getrlimit", lambda _: (limit, limit))
  available = resources.host_memory()
  assert available.bytes <= limit and available.bytes <= resources._meminfo_available()


# ---- input sizes checked before allocation (item 4) and the small things (item 9) ---------------


def _mtx(tmp_path, name: str, header: str, body: str = "1 1 1.0\n") -> str:
  path = str(tmp_path / name)
  with open(path, "w") as file:
    file.write(f"%%MatrixMarket matrix coordinate real {header}\n{body}")
  return path


def _refused(path: str, tmp_path, capsys) -> str:
  assert main(["solve", path, "--d", "8", "--out", str(tmp_path / "x.npz")]) == 2
  return _one_error_line(capsys)


def test_headers_are_refused_before_any_allocation(monkeypatch, tmp_path, capsys):
  assert "1 stored entries for 4000000000 rows: some row of A has no nonzero" in _refused(
    _mtx(tmp_path, "huge.mtx", "general\n4000000000 4000000000 1\n"), tmp_path, capsys
  )
  assert "must be a square matrix, got shape (3, 4) (from the file's header)" in _refused(
    _mtx(tmp_path, "rect.mtx", "general\n3 4 3\n"), tmp_path, capsys
  )
  sparse = str(tmp_path / "sparse.npz")
  scipy.sparse.save_npz(sparse, scipy.sparse.csr_array(np.eye(5)[:, :] * (np.arange(5) < 2)))
  assert "2 stored entries for 5 rows" in _refused(sparse, tmp_path, capsys)
  dense = str(tmp_path / "dense.npy")  # a header declaring 10^5 × 10^5 float64, and no data
  with open(dense, "wb") as file:
    np.lib.format.write_array_header_1_0(
      file, {"descr": "<f8", "fortran_order": False, "shape": (100_000, 100_000)}
    )
  _fake_memory(monkeypatch, 16 * GB)
  assert "reading this 100000x100000 matrix needs about 361 GB" in _refused(dense, tmp_path, capsys)
  many = _mtx(tmp_path, "many.mtx", "general\n100000 100000 100000000\n")
  _fake_memory(monkeypatch, GB)
  assert "reading this 100000x100000 matrix needs about 11.3 GB" in _refused(many, tmp_path, capsys)


def test_a_text_file_named_npy_is_not_a_numpy_file(tmp_path, capsys):
  path = tmp_path / "a.npy"
  path.write_text("1 0\n0 1\n")
  assert "a.npy: not a NumPy .npy file" in _refused(str(path), tmp_path, capsys)


def test_check_of_a_directory_says_so(tmp_path, capsys):
  assert main(["check", str(tmp_path)]) == 2
  assert _one_error_line(capsys).endswith(f"{tmp_path}: is a directory, expected a solution file")


def test_mtx_errors_say_how_rows_are_counted(tmp_path, capsys):
  path = _mtx(tmp_path, "nan.mtx", "general\n3 3 3\n", "1 1 1.0\n2 2 1.0\n3 3 nan\n")
  line = _refused(path, tmp_path, capsys)
  assert "A[2, 2] = nan" in line and "counted from 0; the .mtx file numbers them from 1" in line


@pytest.fixture
def umask_022():
  old = os.umask(0o022)
  yield
  os.umask(old)


def test_solution_files_get_the_umask_mode_and_stale_temporaries_go(umask_022, tmp_path):
  out = tmp_path / "x.npz"
  stale, live = tmp_path / ".x.npz.999999999.tmp", tmp_path / f".x.npz.{os.getppid()}.tmp"
  stale.write_bytes(b"left by a killed solve")
  live.write_bytes(b"another solve, still running")
  assert main(["solve", BANDED, "--d", "1024", "--out", str(out)]) == 0
  assert os.stat(out).st_mode & 0o777 == 0o644
  assert sorted(os.listdir(tmp_path)) == sorted([live.name, "x.npz"])
