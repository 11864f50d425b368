"""Work split over 4 (virtual CPU) devices gives bit-for-bit the results of one device."""

import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _run(tmp_path, devices: int) -> dict:
  out = tmp_path / f"devices{devices}.npz"
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  subprocess.run([sys.executable, str(ROOT / "tests" / "sharded_worker.py"), str(out)],
                 check=True, env=env, cwd=ROOT, timeout=300)
  return dict(np.load(out))


def test_four_devices_match_one_bit_for_bit(tmp_path):
  one, four = _run(tmp_path, 1), _run(tmp_path, 4)
  assert one.pop("devices") == 1 and four.pop("devices") == 4
  assert one.keys() == four.keys()
  for name in one:
    np.testing.assert_array_equal(four[name], one[name], err_msg=name)
  assert 0 < one["min_d_6"].sum() < 6 * 4  # the grid straddles d_min: the check is not vacuous
