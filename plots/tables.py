"""``python -m plots.tables [--check] [PAGE ...]``: the docs' measured tables from their data files.

A table on a page sits between two comment lines that name its data file::

  <!-- table: docs/data/beyond-d50.csv -->
  | L | jl | ...
  <!-- end table -->

The data file is a CSV (the table's header row, then its cells as the page shows them), or a
``.txt`` file (a command's output as printed, shown as a ``text`` block), led by ``#`` lines
that say where the numbers come from: ``# command:``, ``# commit:`` and ``# machine:`` are
required, ``# note:`` optional, and ``# align:`` gives a CSV's column alignments (``l`` or
``r``, default ``l``). The command writes the table and, on the line
under it, its provenance; ``--check`` writes nothing and exits 1 naming every table that
differs from its file (``tests/test_doc_tables.py`` runs it).
"""

from __future__ import annotations

import argparse
import csv
import io
import pathlib
import re
import sys
from typing import NamedTuple

ROOT = pathlib.Path(__file__).resolve().parent.parent
REGION = re.compile(r"^<!-- table: (\S+) -->\n(.*?)^<!-- end table -->$", re.S | re.M)
REQUIRED = ("command", "commit", "machine")


class TableData(NamedTuple):
  """A data file: its provenance fields and its rows (the first is the header), or its text."""

  fields: dict[str, str]
  rows: list[list[str]]  # a CSV's; empty for a .txt file
  text: str = ""  # a .txt file's output


def read_data(path: pathlib.Path) -> TableData:
  """The leading ``#`` fields of ``path`` and its CSV rows (or, for a .txt file, the text after
  them); ValueError naming a missing field or a row whose cell count differs from the header's."""
  lines = path.read_text(encoding="utf-8").splitlines()
  count = next((n for n, line in enumerate(lines) if not line.startswith("#")), len(lines))
  fields = {}
  for line in lines[:count]:
    field = re.fullmatch(r"# (\w+): (.+)", line)
    if field is None:
      raise ValueError(f"{path}: {line!r} is not a '# name: value' line")
    fields[field.group(1)] = field.group(2)
  missing = [name for name in REQUIRED if name not in fields]
  if missing:
    raise ValueError(f"{path}: no '# {missing[0]}:' line (each of {', '.join(REQUIRED)} is needed)")
  if path.suffix == ".txt":
    return TableData(fields, [], "".join(f"{line}\n" for line in lines[count:]))
  rows = list(csv.reader(io.StringIO("\n".join(lines[count:]))))
  for number, row in enumerate(rows[1:], 2):
    if len(row) != len(rows[0]):
      raise ValueError(f"{path}: row {number} has {len(row)} cells, the header {len(rows[0])}")
  return TableData(fields, rows)


def markdown(data: TableData, name: str) -> str:
  """The table as Markdown (a .txt file's text as a ``text`` block), then one line of
  provenance."""
  if data.rows:
    header, *body = data.rows
    align = data.fields.get("align", "").split(",") if data.fields.get("align") else []
    rule = ["---:" if align[i : i + 1] == ["r"] else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(row) + " |" for row in (header, rule, *body)]
  else:
    lines = ["```text", *data.text.splitlines(), "```"]
  note = f" {data.fields['note']}" if "note" in data.fields else ""
  lines += [
    "",
    f"*Data: `{name}`, from `{data.fields['command']}` at {data.fields['commit']} "
    f"on {data.fields['machine']}.{note}*",
  ]
  return "\n".join(lines) + "\n"


def regenerate(text: str, root: pathlib.Path = ROOT) -> str:
  """``text`` with every table region rewritten from its data file."""
  return REGION.sub(
    lambda m: (
      f"<!-- table: {m.group(1)} -->\n"
      f"{markdown(read_data(root / m.group(1)), m.group(1))}"
      "<!-- end table -->"
    ),
    text,
  )


def pages(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
  """README.md and the docs pages."""
  return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m plots.tables", description=__doc__.splitlines()[0]
  )
  parser.add_argument(
    "pages", nargs="*", type=pathlib.Path, help="default: README.md and docs/*.md"
  )
  parser.add_argument(
    "--check", action="store_true", help="change nothing; exit 1 if a table is stale"
  )
  args = parser.parse_args(argv)
  stale = []
  try:
    for page in args.pages or pages():
      text = page.read_text(encoding="utf-8")
      new = regenerate(text)
      if new != text:
        stale.append(page)
        if not args.check:
          page.write_text(new, encoding="utf-8")
  except (OSError, ValueError) as error:
    print(f"python -m plots.tables: error: {error}", file=sys.stderr)
    return 2
  for page in stale:
    print(f"{page}: {'stale' if args.check else 'rewritten'}")
  return 1 if stale and args.check else 0


if __name__ == "__main__":
  sys.exit(main())
