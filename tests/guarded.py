"""Child processes for the tests of guards: a broken guard fails its test in seconds.

A test that expects a refusal (a job that cannot fit, a bounded job) runs the command in a
child under a watchdog: its resident memory (VmRSS in /proc/PID/status, polled) and its wall
time are bounded, and the child is killed, and the test failed, at the first excess. The
address-space limit (RLIMIT_AS) is left alone: the resource check reads it, so capping it
would change what is tested.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pytest

POLL_SECONDS = 0.05


def resident_bytes(pid: int) -> int:
  """VmRSS of a live process, in bytes (0 once it has exited)."""
  try:
    with open(f"/proc/{pid}/status") as status:
      for line in status:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) << 10
  except (FileNotFoundError, ProcessLookupError):
    pass
  return 0


def run(
  argv: list[str], *, max_rss: int, timeout: float, cwd: str | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
  """``argv`` in a child; killed, and the calling test failed, once its resident memory exceeds
  ``max_rss`` bytes or it runs longer than ``timeout`` seconds. Output is collected in files,
  so a chatty child cannot block on a full pipe while it is watched."""
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
    child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
    start, peak = time.monotonic(), 0
    while child.poll() is None:
      peak = max(peak, resident_bytes(child.pid))
      elapsed = time.monotonic() - start
      if peak > max_rss or elapsed > timeout:
        child.kill()
        child.wait()
        reason = (
          f"resident memory {peak / 2**20:.0f} MiB > {max_rss / 2**20:.0f} MiB"
          if peak > max_rss
          else f"still running after {timeout:.0f} s"
        )
        pytest.fail(f"guard broken: {' '.join(argv[-8:])}: killed after {elapsed:.1f} s, {reason}")
      time.sleep(POLL_SECONDS)
    out.seek(0)
    err.seek(0)
    return subprocess.CompletedProcess(argv, child.returncode, out.read(), err.read())


def bench(
  *args,
  available: int | None = None,
  max_rss: int = 1 << 30,
  timeout: float = 60,
  cwd: str | None = None,
) -> subprocess.CompletedProcess:
  """``python -m bench ARGS`` (prog "python -m bench") in a watched child. ``available``: the
  bytes the resource check is told are free (patched into ``jaxattn_bench.resources``, as the
  in-process tests' ``_fake_memory``); None: the machine's own."""
  code = (
    "import sys\n"
    "from jaxattn_bench import resources\n"
    "if sys.argv[1] != 'None':\n"
    "  fake = lambda *_: resources.Available(int(sys.argv[1]), 'test limit')\n"
    "  resources.host_memory = resources.available_memory = fake\n"
    "from jaxattn_bench.cli import main\n"
    "sys.exit(main(sys.argv[2:], prog='python -m bench'))\n"
  )
  return run(
    [sys.executable, "-c", code, str(available), *map(str, args)],
    max_rss=max_rss,
    timeout=timeout,
    cwd=cwd,
    env=dict(os.environ),
  )
