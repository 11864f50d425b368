"""``python -m bench COMMAND ...``: each command lives in its own module.

A command module defines ``add_parser(subparsers)``, which registers its
sub-parser and sets ``func`` to a callable taking the parsed arguments and
returning the exit status.
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

from bench._cli import CommandError  # noqa: E402  (after the environment is set)

COMMANDS = ("run", "min_d", "solve", "check", "perf", "beyond")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
  subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  for name in COMMANDS:
    importlib.import_module(f"bench.{name}").add_parser(subparsers)
  args = parser.parse_args(argv)
  try:
    return args.func(args)
  except CommandError as error:
    print(f"python -m bench {args.command}: error: {error}", file=sys.stderr)
    return error.status
  except KeyboardInterrupt:
    print(f"python -m bench {args.command}: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
