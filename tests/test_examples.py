"""Every example runs and prints what its page shows: each python, bash and console block of
README.md and docs/*.md (tests/doc_blocks.py says how a block is read) is executed as
written, and its stdout compared with the output the page shows, unless the page excuses
it in a visible note with its measured time.

A page's blocks run in document order, in one temporary folder shared by the page (so a
block may write the file a later block reads), each block in a fresh process of the running
interpreter. The folder holds links to the repository's ``bench``, ``plots`` and
``examples``, so ``python -m bench`` and ``examples/...`` work as from the repository root;
in shell blocks ``python`` is ``sys.executable``; ``docs/data`` links to the kept results
files. An excused run is replaced by its product: where the page passes an excused block that
names ``results/NAME.sqlite`` and ``docs/data/NAME.sqlite`` is kept, the suite copies that file
to ``results/``, so the blocks after it read what the run wrote, and the blocks before it see
what a reader who has not run it sees.

Size overrides: a block listed in ``SMALLER`` runs with those substitutions applied, the
same code at smaller sizes; such a block shows no output for the suite to compare.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from tests.doc_blocks import (
  MEASURED,
  NEEDS,
  PAGES,
  ROOT,
  Block,
  blocks,
  console_steps,
  expected_outputs,
  expected_status,
  mismatch,
)

# (page, text in the block) -> substitutions. The random parameters' QR at d = 2048 alone
# takes minutes on 2 cores.
DATA = ROOT / "docs" / "data"
SMALLER = {
  ("docs/beyond.md", 'params="random"'): [("length=256", "length=32"), ("d=2048", "d=256")],
}


def _smaller(block: Block) -> str:
  code = block.code
  for (where, marker), substitutions in SMALLER.items():
    if where == block.page and marker in code:
      for old, new in substitutions:
        assert old in code, f"{block.where()}: the size override {old!r} no longer matches"
        code = code.replace(old, new)
  return code


def _folder(tmp_path: pathlib.Path) -> pathlib.Path:
  for name in ("bench", "plots", "examples"):
    (tmp_path / name).symlink_to(ROOT / name)
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs" / "data").symlink_to(DATA)
  (tmp_path / "results").mkdir()
  return tmp_path


def _products(block: Block, folder: pathlib.Path) -> None:
  """Copy to ``results/`` the kept results files an excused ``block`` writes."""
  for name in re.findall(r"results/([\w-]+\.sqlite)", block.code):
    if (DATA / name).is_file():
      shutil.copy(DATA / name, folder / "results" / name)


def _run(kind: str, code: str, folder: pathlib.Path, where: str, status: int = 0) -> str:
  """Run one python program or bash script in ``folder``: its stdout if it exits 0, or its
  stdout and stderr if it exits with ``status`` != 0 (any other exit status fails)."""
  if kind == "python":
    command = [sys.executable, "-c", code]
  else:
    command = ["bash", "-e", "-c", f'python() {{ "{sys.executable}" "$@"; }}\n{code}']
  # COLUMNS: argparse wraps a --help to the terminal's width; a page shows it at 100.
  result = subprocess.run(
    command,
    cwd=folder,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, "MPLBACKEND": "Agg", "COLUMNS": "100"},
  )
  assert result.returncode == status, (
    f"{where} exited {result.returncode}, not {status}:\n"
    f"{code}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
  )
  return result.stdout + (result.stderr if status else "")


def run_page(page: str, folder: pathlib.Path) -> None:
  """Run the page's blocks in order and compare each shown output."""
  outputs = expected_outputs(page)
  for block in blocks(page):
    if block.file:
      (folder / block.file).write_text(block.code, encoding="utf-8")
    if block.excuse is not None:
      _products(block, folder)
    if not block.runnable or block.excuse is not None:
      continue
    if block.language == "console":
      for command, shown in console_steps(block.code):
        status, want = expected_status(shown)
        got = _run("bash", command, folder, f"{block.where()}, $ {command}", status)
        assert not (diff := mismatch(want, got)), f"{block.where()}, $ {command}:\n{diff}"
      continue
    got = _run(block.language, _smaller(block), folder, block.where())
    if block.line in outputs:
      assert not (diff := mismatch(outputs[block.line], got)), f"{block.where()}:\n{diff}"


def test_blocks_are_run_or_excused_in_a_visible_note():
  """Every runnable block runs or carries a note with its time (or what it needs); a fence
  without a language is not allowed (a command could hide in it); output blocks belong to a
  block that runs; size overrides match a block whose output is not compared."""
  for page in PAGES:
    expected_outputs(page)  # raises on an orphan output block
    for block in blocks(page):
      assert block.language, f"{block.where()}: a fence needs a language (text, bash, ...)"
      if block.excuse is not None:
        assert block.runnable, f"{block.where()}: only a runnable block is excused"
        assert MEASURED.search(block.excuse) or any(n in block.excuse for n in NEEDS), (
          f"{block.where()}: the note gives no measured time: {block.excuse!r}"
        )
  for page, marker in SMALLER:
    shrunk = [b for b in blocks(page) if marker in b.code]
    assert len(shrunk) == 1 and shrunk[0].line not in expected_outputs(page), (page, marker)


def test_the_collector_finds_the_known_blocks():
  """Guards a collector that finds nothing: the counts of run, compared and excused blocks."""
  runnable = [b for p in PAGES for b in blocks(p) if b.runnable]
  run = [b for b in runnable if b.excuse is None]
  compared = sum(len(expected_outputs(p)) for p in PAGES) + sum(
    1 for b in run if b.language == "console"
  )
  assert (len(run), compared, len(runnable) - len(run)) == (23, 21, 19)


@pytest.mark.parametrize(
  "page", [p for p in PAGES if any(b.runnable and b.excuse is None for b in blocks(p))]
)
def test_page_examples_run_and_print_what_the_page_shows(page, tmp_path):
  folder = _folder(tmp_path)
  run_page(page, folder)
  if page == "docs/tutorial-construction.md":
    assert (folder / "signs_success_rate.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
  "shown, passes",
  [
    ("ok 1 ...\n", True),
    ("ok 2\n", False),  # a python block and its output block
    ("$ echo a; echo b >&2; exit 3\na\nb\n[exit status 3]\n", True),
    ("$ echo a; exit 3\na\n", False),
    ("$ echo a\nb\n", False),
  ],
)
def test_the_shown_output_is_compared(tmp_path, shown, passes):
  """A block passes when it prints what the page shows (ELLIPSIS; for a console command with
  an exit status, stdout and stderr), and fails otherwise."""
  text = (
    f"```console\n{shown}```\n"
    if shown.startswith("$")
    else f"```python\nprint('ok 1', 42)\n```\n\n```text output\n{shown}```\n"
  )
  (tmp_path / "page.md").write_text(text)
  (tmp_path / "folder").mkdir()
  page = os.path.relpath(tmp_path / "page.md", ROOT)
  if passes:
    run_page(page, _folder(tmp_path / "folder"))
  else:
    with pytest.raises(AssertionError, match="page shows|exited"):
      run_page(page, _folder(tmp_path / "folder"))


def test_console_steps_and_excuse_notes(tmp_path):
  """A continued command is one step; a note excuses only the block right after it."""
  assert console_steps("$ python -m bench x \\\n  --y 1\nout 1\nout 2\n$ true\n") == [
    ("python -m bench x \\\n  --y 1", "out 1\nout 2\n"),
    ("true", ""),
  ]
  with pytest.raises(ValueError, match="not with"):
    console_steps("out\n$ true\n")
  (tmp_path / "page.md").write_text(
    "*Not run by the suite: 5 min on the CPU.*\n\n```bash\nslow\n```\n\n"
    "*Not run by the suite: 5 min.*\n\nText between.\n\n```bash\nfast\n```\n"
  )
  page = os.path.relpath(tmp_path / "page.md", ROOT)
  assert [(b.code, b.excuse) for b in blocks(page)] == [
    ("slow\n", "5 min on the CPU."),
    ("fast\n", None),
  ]
