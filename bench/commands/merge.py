"""``python -m bench merge OUT.sqlite SHARD.sqlite ...``: join results stores (a job array).

Inputs may be globs (quoted: ``'results/long.shard-*.sqlite'``). Every point is copied in one
transaction; a point already in OUT with the same results is skipped, one with different
results is an error naming the point and both files (nothing written); stores of different
device kinds are refused; inputs are never changed (``jaxattn_bench.merge``, docs/clusters.md).
Then ``bench run --preset P --results OUT --plan`` says what is still missing, and ``bench run``
on OUT completes it.
"""

from __future__ import annotations

import pathlib

from jaxattn_bench import merge


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser(
    "merge",
    help="join results stores (the shards of a sweep) into one, losing nothing",
    description=__doc__.splitlines()[0],
  )
  parser.add_argument(
    "out",
    type=pathlib.Path,
    metavar="OUT.sqlite",
    help="the merged store (created, or completed if it exists)",
  )
  parser.add_argument(
    "inputs",
    nargs="+",
    metavar="SHARD.sqlite",
    help="stores or globs of stores to merge (never changed)",
  )
  parser.set_defaults(func=main)


def main(args) -> int:
  report = merge.merge(args.out, merge.expand(args.inputs))
  print(
    f"merged {len(report.inputs)} store(s) into {args.out}: {report.written} point(s) "
    f"written, {report.same} already there with the same results"
  )
  return 0
