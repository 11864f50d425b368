"""The command line: ``jaxattn COMMAND ...`` and ``python -m bench COMMAND ...``.

Each command lives in its own short module of ``jaxattn_bench.commands``,
which defines ``add_parser(subparsers)``: it registers its sub-parser and
sets ``func`` to a callable taking the parsed arguments and returning the
exit status. The logic they call lives in the other ``jaxattn_bench``
modules, the library (``jaxattn``) and the figures (``jaxattn_plots``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Before NumPy loads OpenBLAS: its idle threads then sleep at once instead of
# spinning for about 0.1 s after each call (its default thread timeout,
# 2^28 cycles), which would hold a core while `bench perf` times the next,
# JAX, check. NumPy's own time is unchanged: a call wakes its threads.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from jaxattn_bench import compile_cache  # noqa: E402  (after the environment)
from jaxattn_bench.errors import CommandError, report_internal_error  # noqa: E402

COMMANDS = (
  "run",
  "submit",
  "merge",
  "min_d",
  "solve",
  "check",
  "perf",
  "beyond",
  "bits",
  "practice",
)
# Commands that compile nothing, and so neither load JAX nor touch its compilation cache.
JAX_FREE = ("merge",)


def main(argv: list[str] | None = None, prog: str = "jaxattn") -> int:
  """Parses ``argv`` (default: sys.argv[1:]), runs the command and returns its exit status."""
  parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
  parser.add_argument(
    "--no-compile-cache",
    action="store_true",
    help="compile every program anew (default: JAX's persistent cache in "
    "$JAX_COMPILATION_CACHE_DIR or ~/.cache/jaxattn/jax; also "
    "JAXATTN_COMPILE_CACHE=0)",
  )
  subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  for name in COMMANDS:
    importlib.import_module(f"jaxattn_bench.commands.{name}").add_parser(subparsers)
  args = parser.parse_args(argv)
  if args.command not in JAX_FREE:
    compile_cache.enable(
      {**os.environ, "JAXATTN_COMPILE_CACHE": "0"} if args.no_compile_cache else os.environ
    )
  try:
    return args.func(args)
  except CommandError as error:
    print(f"{prog} {args.command}: error: {error}", file=sys.stderr)
    return error.status
  except KeyboardInterrupt:
    print(f"{prog} {args.command}: interrupted", file=sys.stderr)
    return 130
  except Exception:  # a bug, not a verdict: exit 3 and a log, never 1 ("not certified")
    return report_internal_error(f"{prog} {args.command}")
