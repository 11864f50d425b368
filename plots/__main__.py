"""``python -m plots --results FILE [--out DIR]``: figures (a)–(e) ((e) for paper_scan points), fit.

The results file is opened read-only and never changed; the output folder is
checked before anything is drawn.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from jaxattn_bench.errors import CommandError, report_internal_error
from jaxattn_bench.store import ResultsStore, check_output
from jaxattn_plots.report import write_report


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m plots", description=__doc__.splitlines()[0])
  parser.add_argument(
    "--results",
    required=True,
    type=pathlib.Path,
    help="results file written by python -m bench run",
  )
  parser.add_argument(
    "--out", type=pathlib.Path, help="output folder (default: the results path without its suffix)"
  )
  args = parser.parse_args(argv)
  out = args.out or args.results.with_suffix("")
  try:
    with ResultsStore(args.results, create=False) as store:
      records = store.records()
    if not records:
      raise CommandError(f"{str(args.results)!r} holds no finished points")
    check_output(out, "output folder (--out)", folder=True)
    print(write_report(records, out, records).text())
  except CommandError as error:
    print(f"python -m plots: error: {error}", file=sys.stderr)
    return error.status
  except Exception:  # a bug: exit 3 and a log with the traceback
    return report_internal_error("python -m plots")
  return 0


if __name__ == "__main__":
  sys.exit(main())
