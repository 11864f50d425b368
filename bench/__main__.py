"""``python -m bench COMMAND ...``: the same commands as the ``jaxattn`` console script."""

import sys

from jaxattn_bench.cli import main

if __name__ == "__main__":
  sys.exit(main(prog="python -m bench"))
