"""``python -m bench COMMAND ...``: each command lives in its own module.

A command module defines ``add_parser(subparsers)``, which registers its
sub-parser and sets ``func`` to a callable taking the parsed arguments and
returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bench._cli import CommandError

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
