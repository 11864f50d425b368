"""Settings of the test session, applied before JAX is imported.

The tests run at tiny sizes, where compiling dominates: XLA's LLVM backend at
optimisation level 0 compiles in about 40% less CPU time (the Python block of
docs/beyond.md: 11.6 s instead of 19.4 s of CPU). The programs are the same; the
machine code is less optimised, so a product may round its last bit
differently (no fused multiply-add). Tests that compare bits compare runs made
under the same flags (their subprocesses inherit ``XLA_FLAGS``). A flag the
user set wins. ``tests/test_optimised.py`` runs the numerics that decide
verdicts once more at XLA's default optimisation, the code users run.

Several processes compile the same programs (the pytest-xdist workers, a run
and its resumed or reference run, the processes of a multi-host run), so the
session shares one JAX compilation cache in a fresh temporary folder, removed
at the end: a program compiled once (taking at least 0.2 s) is loaded by the
others. JAX keys each entry by the program, the compile options, the devices
and ``XLA_FLAGS``, so a hit is the executable the process would have built.
A cache folder the user set wins.
"""

import os
import shutil
import tempfile

_FLAG = "--xla_backend_optimization_level"
# JAXATTN_TESTS_XLA_DEFAULT=1: XLA's own default optimisation instead (tests/test_optimised.py
# runs the numerics that decide verdicts so, as users run them).
if os.environ.get("JAXATTN_TESTS_XLA_DEFAULT") == "1":
  assert _FLAG not in os.environ.get("XLA_FLAGS", ""), "XLA's default asked, but a level is set"
elif _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}=0".strip()

_CACHE = "JAX_COMPILATION_CACHE_DIR"


def pytest_configure(config):
  """The controller (or the only process) makes the cache folder; workers inherit it."""
  if _CACHE not in os.environ:
    config._jaxattn_cache = tempfile.mkdtemp(prefix="jaxattn-tests-jit-")
    os.environ[_CACHE] = config._jaxattn_cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


def pytest_unconfigure(config):
  if getattr(config, "_jaxattn_cache", None):
    shutil.rmtree(config._jaxattn_cache, ignore_errors=True)
    del os.environ[_CACHE]


def pytest_collection_modifyitems(config, items):
  """When tests/test_optimised.py's child runs in this session, the tests it runs at XLA's
  default optimisation (its ``SELECTED``) are not run here at level 0 as well: the same
  assertions, on machine code users do not run. Run alone, they run here."""
  child = "tests/test_optimised.py::test_verdict_numerics_at_xlas_default_optimisation"
  if os.environ.get("JAXATTN_TESTS_XLA_DEFAULT") == "1" or child not in {i.nodeid for i in items}:
    return
  from tests.test_optimised import SELECTED

  also_there = [
    item
    for item in items
    if not item.nodeid.startswith("tests/test_optimised.py")
    and any(item.nodeid == s or item.nodeid.startswith(s + "[") for s in SELECTED)
  ]
  if also_there:
    config.hook.pytest_deselected(items=also_there)
    items[:] = [item for item in items if item not in also_there]
