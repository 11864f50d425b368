"""The edges a user at scale meets first (issue 16): jobs that cannot fit, inputs, hangs, files."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "data")


def _bench(*args, timeout: float) -> subprocess.CompletedProcess:
  """``python -m bench ARGS`` in a child process, killed (and the test failed) after ``timeout`` s."""
  return subprocess.run([sys.executable, "-m", "bench", *map(str, args)], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout)


def test_optimize_search_on_les_miserables_completes(tmp_path):
  """A real graph (L = 77, N = 37) on which the optimize search hung at 0% CPU.

  optimize solved its two lstsq starts with two batched LAPACK LU calls that
  XLA ran at once; jaxlib 0.10's LU blocks a thread of XLA's CPU pool while it
  waits for batch chunks queued on that same pool, so with 2 threads both
  waited forever. Now both starts share one factorisation.
  """
  result = _bench("solve", os.path.join(DATA, "lesmis.mtx"), "--method", "optimize", "--search",
                  "--d-grid", "1024,2048", "--out", tmp_path / "x.npz", timeout=180)
  assert result.returncode == 0, result.stderr
  assert "smallest verifying d = 1024 (2 of 2 verify)" in result.stdout
  assert "CERTIFIED at d=1024" in result.stdout
