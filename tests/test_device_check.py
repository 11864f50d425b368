"""``bench/device_check.sh --smoke``: every step of the GPU check runs at tiny sizes on the CPU."""

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = (
  "env",
  "perf d=16 float32",
  "rounding",
  "tiles float32",
  "preset tiny",
  "progress",
  "plots",
)
FILES = {
  "device_check.log",
  "env.txt",
  "perf.txt",
  "rounding.txt",
  "tiles.txt",
  "preset.log",
  "results.sqlite",
  "a_d_vs_length.png",
}


def _smoke(tmp_path, budget: int) -> tuple[subprocess.CompletedProcess, pathlib.Path]:
  """The smoke run with PYTHON = this interpreter, and a ``python`` first on PATH that fails:
  no step may run whatever ``python`` PATH holds (a virtual environment need not be active)."""
  out = tmp_path / "out"
  decoy = tmp_path / "decoy"
  decoy.mkdir()
  (decoy / "python").write_text("#!/bin/sh\necho 'not this python' >&2\nexit 97\n")
  (decoy / "python").chmod(0o755)
  env = dict(
    os.environ,
    OUT=str(out),
    DEVICE_CHECK_BUDGET=str(budget),
    PYTHON=sys.executable,
    PATH=f"{decoy}{os.pathsep}{os.environ['PATH']}",
  )
  result = subprocess.run(
    ["bash", str(ROOT / "bench" / "device_check.sh"), "--smoke"],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=budget + 60,
  )
  return result, out


def test_smoke_runs_every_step_and_leaves_its_files(tmp_path):
  # Its own budget is 120 s; 300 s here, so that no step is skipped on a loaded machine.
  result, out = _smoke(tmp_path, 300)
  assert result.returncode == 0, result.stdout + result.stderr
  log = (out / "device_check.log").read_text()
  for name in STEPS:
    assert f"STEP {name}: done rc=0" in log, log
  assert "SKIP" not in log and "TIMEOUT" not in log
  files = list(out.iterdir())
  assert {f.name for f in files} == FILES and all(f.is_file() for f in files)
  assert "jax.devices(): [" in (out / "env.txt").read_text()
  perf = (out / "perf.txt").read_text()
  assert perf.count("a/d  verify throughput") == 1 and "(b) NumPy" not in perf
  assert perf.count("b/a  NumPy time / verify time                   = skipped") == 1
  assert perf.count("certified float32 / float32, search (e)") == 1
  rounding = (out / "rounding.txt").read_text()
  for name in ("float32", "bfloat16"):
    assert re.search(
      rf"^{name} +products: worst error / bound = 0\.\d+ .*within the bound", rounding, re.M
    )
  tiles = (out / "tiles.txt").read_text()
  for name in ("verify", "search"):
    assert re.search(rf"^best {name} tile \(float32\): rows=(16|64) keys=64 ", tiles, re.M)
  assert re.search(r"^progress: 2 of 2 points stored in .* 100\.0% of the cost", log, re.M)
  assert (out / "a_d_vs_length.png").read_bytes().startswith(b"\x89PNG")


def test_steps_that_no_longer_fit_are_skipped(tmp_path):
  result, out = _smoke(tmp_path, 1)
  assert result.returncode == 0, result.stdout + result.stderr
  log = (out / "device_check.log").read_text()
  assert "STEP" not in log
  for name in STEPS[:5]:
    assert f"SKIP {name}: " in log
  assert "SKIP progress, plots: no results file" in log
  assert {f.name for f in out.iterdir()} == {"device_check.log"}
