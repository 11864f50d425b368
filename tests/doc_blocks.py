"""The fenced blocks of README.md and docs/*.md, as tests/test_examples.py runs them.

A block's kind is its fence's info string:

- ``python`` and ``bash``: run as written;
- ``console``: each ``$ command`` line (continued by a trailing backslash) is run by bash,
  and the lines after it, up to the next ``$``, are the stdout it must print; when they end
  in a line ``[exit status N]``, the command must exit with N, and they are its stdout and
  stderr (an error message);
- ``text output``: the stdout the page's last runnable block must print;
- a block whose info string has ``file=NAME`` (``toml file=my_grid.toml``): written to
  NAME, for the blocks after it to read;
- anything else (``text``, ``toml``, directives): shown, never run.

Printed output is compared as doctest compares it with ELLIPSIS: ``...`` stands for any text,
timings and paths included, and trailing spaces are ignored. A runnable block is excused
when the paragraph just before it is one line ``*Not run by the suite: WHY.*``; WHY gives
the block's measured time, or names what the suite cannot have (an install, a cluster, a GPU).
"""

from __future__ import annotations

import difflib
import doctest
import pathlib
import re
from typing import NamedTuple

from jaxattn_plots.tables import pages

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [str(page.relative_to(ROOT)) for page in pages(ROOT)]  # README.md, docs/*.md
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.S | re.M)
EXCUSE = re.compile(r"^\*Not run by the suite: (.+)\*$")
MEASURED = re.compile(r"\d+(\.\d+)? ?(s|min|h)\b")
NEEDS = ("install", "cluster", "GPU")
RUNNABLE = ("python", "bash", "console")
EXIT_STATUS = re.compile(r"^\[exit status (\d+)\]\n\Z", re.M)


class Block(NamedTuple):
  """One fenced block of a page."""

  page: str
  line: int  # of the opening fence, 1-based
  language: str  # the info string's first word ("" when it has none)
  words: tuple[str, ...]  # the info string's other words
  code: str
  excuse: str | None  # WHY of the note before it, for a runnable block that is excused

  @property
  def runnable(self) -> bool:
    return self.language in RUNNABLE

  @property
  def is_output(self) -> bool:
    return self.language == "text" and "output" in self.words

  @property
  def file(self) -> str | None:
    """NAME of ``file=NAME`` in the info string, if any."""
    return next((w[len("file=") :] for w in self.words if w.startswith("file=")), None)

  def where(self) -> str:
    return f"{self.page}:{self.line} ({self.language or 'no language'})"


def blocks(page: str) -> list[Block]:
  """Every fenced block of ``page``, in order."""
  text = (ROOT / page).read_text(encoding="utf-8")
  found = []
  for match in FENCE.finditer(text):
    language, *words = match.group(1).split() or [""]
    before = text[: match.start()].rstrip("\n").rsplit("\n\n", 1)[-1].strip()
    excuse = EXCUSE.match(before)
    found.append(
      Block(
        page,
        text.count("\n", 0, match.start()) + 1,
        language,
        tuple(words),
        match.group(2),
        excuse.group(1) if excuse else None,
      )
    )
  return found


def console_steps(code: str) -> list[tuple[str, str]]:
  """The (command, expected stdout) pairs of a ``console`` block."""
  steps: list[tuple[str, list[str]]] = []
  continued = False
  for line in code.splitlines():
    if continued:
      steps[-1] = (steps[-1][0] + "\n" + line, steps[-1][1])
    elif line.startswith("$ "):
      steps.append((line[2:], []))
    elif steps:
      steps[-1][1].append(line)
      continue
    else:
      raise ValueError(f"a console block starts with {line!r}, not with '$ '")
    continued = line.endswith("\\")
  return [(command, "\n".join(output) + ("\n" if output else "")) for command, output in steps]


def expected_outputs(page: str) -> dict[int, str]:
  """The ``text output`` blocks of ``page``, keyed by the line of the runnable block each
  belongs to (the last runnable block before it); ValueError for an orphan or excused one."""
  outputs: dict[int, str] = {}
  last: Block | None = None
  for block in blocks(page):
    if block.runnable:
      last = block
    elif block.is_output:
      if last is None or last.excuse is not None or last.language == "console":
        raise ValueError(
          f"{block.where()}: an output block needs a run python or bash block before it"
        )
      if last.line in outputs:
        raise ValueError(f"{block.where()}: a second output block for {last.where()}")
      outputs[last.line] = block.code
  return outputs


def expected_status(output: str) -> tuple[int, str]:
  """A console command's expected exit status and output (without the status line)."""
  status = EXIT_STATUS.search(output)
  return (int(status.group(1)), output[: status.start()]) if status else (0, output)


def mismatch(want: str, got: str) -> str:
  """'' when ``got`` is what ``want`` shows (ELLIPSIS, trailing spaces ignored), else a diff."""
  want, got = (re.sub(r"[ \t]+$", "", s, flags=re.M) for s in (want, got))
  if doctest.OutputChecker().check_output(want, got, doctest.ELLIPSIS):
    return ""
  return "".join(
    difflib.unified_diff(want.splitlines(True), got.splitlines(True), "page shows", "printed")
  )
