"""The numerics that decide verdicts, at XLA's default optimisation (the code users run).

The suite compiles at optimisation level 0 (tests/conftest.py: compile time). Here a child
pytest runs, without that flag, the tests that compare verification with the float64 oracle
(tests/reference.py), the thresholds and per-trial verdicts of min_d (each against ja.verify
of its own solution, so the nested search too), and the lstsq/optimize path through one LU
factorisation that once deadlocked XLA's CPU pool (les Miserables, watched by
tests/guarded.py), and certified verdicts on planted near-ties and the worst rounding tiles
(tests/test_certify.py). About 60 s of CPU on the 2-core machine.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SELECTED = [
  "tests/test_verify.py::test_float64_agrees_tightly",
  "tests/test_verify.py::test_per_row_verdicts_and_figures",
  "tests/test_thresholds.py::test_verdicts_and_thresholds_match_brute_force",
  # certified verdicts: planted near-ties, the worst tiles, the dense-check agreement
  "tests/test_certify.py::test_planted_near_ties_are_decided_exactly",
  "tests/test_certify.py::test_uncertified_float32_decides_some_planted_ties_wrongly",
  "tests/test_certify.py::test_the_bound_covers_the_exact_error[None-sequential-4096]",
  "tests/test_certify.py::test_the_bound_covers_the_exact_error[bfloat16-bfloat16-4096]",
  "tests/test_certify.py::test_the_bound_covers_the_exact_error[None-random-700]",
  "tests/test_certify.py::test_certified_verdicts_equal_the_exact_oracle[2-jl-96]",
  "tests/test_optimised.py::test_this_process_compiles_at_the_level_asked",
]


def test_this_process_compiles_at_the_level_asked():
  """Level 0 in the suite; no level (XLA's default) in the child below."""
  flags = os.environ.get("XLA_FLAGS", "")
  if os.environ.get("JAXATTN_TESTS_XLA_DEFAULT") == "1":
    assert "--xla_backend_optimization_level" not in flags, flags
  else:
    assert "--xla_backend_optimization_level=0" in flags, flags


def test_verdict_numerics_at_xlas_default_optimisation():
  flags = re.sub(r"--xla_backend_optimization_level=\S+", "", os.environ.get("XLA_FLAGS", ""))
  env = dict(os.environ, XLA_FLAGS=flags.strip(), JAXATTN_TESTS_XLA_DEFAULT="1")
  command = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *SELECTED]
  result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
  assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
  passed = re.search(r"(\d+) passed", result.stdout)
  assert passed and int(passed.group(1)) >= len(SELECTED), result.stdout[-2000:]
  assert "skipped" not in result.stdout.splitlines()[-1]
