"""Compiled memory of ``ja.verify`` on patterns with global tokens (docs/scale-and-speed.md).

``python -m jaxattn_bench.compiled_memory`` compiles ``ja.verify`` (nothing
runs) and prints XLA's ``memory_analysis`` (temporaries and arguments) for:

1. Longformer (window 1, one global token) at d = 8: its global row held apart
   as a dense row (``SparsePattern.dense``) at L = 4096 and 16384, against the
   same pattern with the row padded to L slots (``dense_rows="pad"``) at 4096;
2. Longformer (window 256, one global token: N = 514) at L = 4096, d = 128:
   the support gathered ``tiles.SUPPORT_CHUNK`` slots at a time, against all
   N slots in one gather (the chunk set to N).
"""

from __future__ import annotations

from typing import cast

import jax
import jax.numpy as jnp

import jaxattn as ja
from jaxattn._src import tiles


def verify_bytes(pattern: ja.SparsePattern, d: int) -> tuple[int, int]:
  """(temporary, argument) bytes of ``ja.verify`` compiled for ``pattern`` at dimension d."""
  x = jax.ShapeDtypeStruct((pattern.length, 2 * d), jnp.float32)
  params = ja.construct.identity_params(d)
  compiled = (
    jax.jit(lambda x, p: ja.verify(ja.Solution(x, *params), p, eps1=0.5, eps2=0.5))
    .lower(x, pattern)
    .compile()
  )
  memory = compiled.memory_analysis()
  if memory is None:
    raise RuntimeError(f"the {jax.default_backend()} backend reports no compiled memory")
  return memory.temp_size_in_bytes, memory.argument_size_in_bytes


def _line(what: str, pattern: ja.SparsePattern, d: int) -> str:
  temp, arguments = verify_bytes(pattern, d)
  return (
    f"{what:<58} L={pattern.length:<6} N={pattern.nnz:<5} d={d:<4} "
    f"temp {temp / 1e6:8.1f} MB  arguments {arguments / 1e6:7.2f} MB"
  )


def main() -> None:
  key = jax.random.PRNGKey(0)
  sink = ja.patterns.Longformer(window=1, globals=1)
  for length in (4096, 16384):
    print(_line("global row held apart (dense)", sink(key, length), 8))
  padded = ja.SparsePattern.from_scipy(
    sink(key, 4096).to_scipy(), check_columns=False, dense_rows="pad"
  )
  print(_line("global row padded to L slots", padded, 8))
  window = ja.patterns.Longformer(window=256, globals=1)(key, 4096)
  print(_line(f"support gathered {tiles.SUPPORT_CHUNK} slots at a time", window, 128))
  defaults = cast(dict, tiles.support_stats.__kwdefaults__)  # support_stats has keyword defaults
  chunk = defaults["chunk"]
  defaults["chunk"] = window.nnz  # one gather of every slot
  jax.clear_caches()  # the inner jitted passes were traced with the default chunk
  try:
    print(_line("support gathered in one piece (chunk = N)", window, 128))
  finally:
    defaults["chunk"] = chunk
    jax.clear_caches()


if __name__ == "__main__":
  main()
