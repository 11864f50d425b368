"""Work split over 4 (virtual CPU) devices gives bit-for-bit the results of one device."""

import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _run(tmp_path, device_counts) -> list[dict]:
  """The worker's figures on each device count; the processes run at once (2 cores)."""
  procs, outs = [], []
  for devices in device_counts:
    outs.append(tmp_path / f"devices{devices}.npz")
    env = dict(
      os.environ,
      PYTHONPATH=str(ROOT),
      JAX_PLATFORMS="cpu",
      XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} "
      f"--xla_force_host_platform_device_count={devices}",
    )
    procs.append(
      subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "sharded_worker.py"), str(outs[-1])],
        env=env,
        cwd=ROOT,
      )
    )
  for proc in procs:
    assert proc.wait(timeout=300) == 0
  return [dict(np.load(out)) for out in outs]


def test_four_devices_match_one_bit_for_bit(tmp_path):
  one, four = _run(tmp_path, (1, 4))
  assert one.pop("devices") == 1 and four.pop("devices") == 4
  assert one.keys() == four.keys()
  for name in one:
    np.testing.assert_array_equal(four[name], one[name], err_msg=name)
  assert 0 < one["min_d_6"].sum() < 6 * 4  # the grid straddles d_min: the check is not vacuous
