"""The jaxtyping annotations hold at run time: the library's modules imported under
``jaxtyping.install_import_hook`` with beartype, then a small construction of every method,
verify (both criteria), precision_bits, min_d, verify_grid and from_dense.

Checked in a fresh process of its own (the hook must see the modules' first import), not for
the whole suite: every checked call then also checks its arguments at trace time.
"""

import pkgutil
import subprocess
import sys

import jaxattn._src

CHECKED = [f"jaxattn._src.{m.name}" for m in pkgutil.iter_modules(jaxattn._src.__path__)]

SCRIPT = """
import sys
from jaxtyping import TypeCheckError, install_import_hook
with install_import_hook(sys.argv[1].split(","), "beartype.beartype"):
  import jaxattn as ja
import jax, jax.numpy as jnp, numpy as np
from jaxattn._src import base

key = jax.random.PRNGKey(0)
p = ja.patterns.random_regular(key, length=16, nnz=2, a_min=0.2)
for method in ja.construct.METHODS:
  sol = ja.construct.build(method, key, p, d=8, eps1=0.5, eps2=0.5)
  ja.verify(sol, p, eps1=0.5, eps2=0.5)
sol = ja.construct.jl(key, p, d=8, eps1=0.5, eps2=0.5, params="random", max_outside_mass=0.5)
ja.verify(sol, p, eps1=0.5, eps2=0.5, max_outside_mass=0.5)
ja.precision_bits(ja.construct.lstsq(key, p, d=8, eps1=0.5, eps2=0.5), p, eps1=0.5, eps2=0.5)
sampler = ja.patterns.Sampler("banded", length=16, nnz=2, a_min=0.2)
ja.min_d(key, sampler, [4, 8], eps1=1.0, eps2=0.5, trials=2, method="lstsq")
ja.verify_grid(key, p, [4, 8], eps1=0.5, eps2=0.5)
ja.SparsePattern.from_dense(np.array([[1.0, 0.5], [0.0, 2.0]]))
try:  # the hook is live: a values array one row short of the pattern is refused
  base.sparse_matmul(p, jnp.zeros((15, 2)), jnp.zeros((16, 4)))
except TypeCheckError:
  print("checked")
"""


def test_annotations_hold_under_a_runtime_checker():
  result = subprocess.run(
    [sys.executable, "-c", SCRIPT, ",".join(CHECKED)], capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr[-5000:]
  assert result.stdout.strip() == "checked"
