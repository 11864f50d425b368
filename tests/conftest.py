"""Settings of the test session, applied before JAX is imported.

The tests run at tiny sizes, where compiling dominates: XLA's LLVM backend at
optimisation level 0 compiles in about 40% less CPU time (the README's second
Python block: 11.6 s instead of 19.4 s of CPU). The programs are the same; the
machine code is less optimised, so a product may round its last bit
differently (no fused multiply-add). Tests that compare bits compare runs made
under the same flags (their subprocesses inherit ``XLA_FLAGS``). A flag the
user set wins.
"""

import os

_FLAG = "--xla_backend_optimization_level"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}=0".strip()
