"""Same key, same bits, whatever the flags: float32 results do not depend on JAX_ENABLE_X64."""

import os
import subprocess
import sys

import numpy as np

# The library example of docs/getting-started.md at a small size: pattern, construction, verify,
# min_d, from_dense.
SNIPPET = """
import sys, jax, numpy as np, jaxattn as ja
key = jax.random.PRNGKey(0)
p = ja.patterns.random_regular(key, length=32, nnz=2, a_min=0.2)
sol = ja.construct.jl(key, p, d=64, eps1=0.5, eps2=0.5)
rep = ja.verify(sol, p, eps1=0.5, eps2=0.5)
sampler = ja.patterns.Sampler("random_regular", length=32, nnz=2, a_min=0.2)
res = ja.min_d(key, sampler, [64, 256, 1024], eps1=1.0, eps2=0.5, trials=4)
dense = ja.SparsePattern.from_dense(np.array([[1.0, 0.5], [0.0, 2.0]]))
np.savez(sys.argv[1], weights=p.weights, X=sol.X, ratio_error=rep.ratio_error, leak=rep.leak,
         mass=rep.outside_mass_max, successes=res.successes, dense_weights=dense.weights)
"""


def _run(tmp_path) -> tuple[dict, dict]:
  """The snippet's arrays without and with JAX_ENABLE_X64; the two processes run at once."""
  procs = []
  for x64 in (False, True):
    env = {**os.environ, "JAX_ENABLE_X64": "1" if x64 else "0"}
    procs.append(
      subprocess.Popen(
        [sys.executable, "-c", SNIPPET, str(tmp_path / f"x64_{x64}.npz")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
      )
    )
  for proc in procs:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
  arrays = []
  for x64 in (False, True):
    with np.load(tmp_path / f"x64_{x64}.npz") as saved:
      arrays.append({name: saved[name] for name in saved.files})
  return tuple(arrays)


def test_float32_results_are_the_same_bits_with_and_without_x64(tmp_path):
  """Guards a default dtype read from the global flag (patterns, from_dense, constructions)."""
  plain, x64 = _run(tmp_path)
  for name, value in plain.items():
    if name != "successes":
      assert value.dtype == np.float32 and x64[name].dtype == np.float32, name
    np.testing.assert_array_equal(value, x64[name], err_msg=name)
  assert 0 < plain["successes"].max()  # some d of the grid verifies: a non-trivial comparison
