"""Every example runs: each ```python block of README.md and docs/*.md, and each shell block
marked quick (info string ```bash quick), is executed as written.

A page's blocks run in document order, in one temporary folder shared by the page (so a
quick shell block may write the file a later Python block reads), each block in a fresh
process of the running interpreter. The folder holds links to the repository's ``bench``,
``plots`` and ``examples``, so ``python -m bench`` and ``examples/...`` work as from the
repository root; in shell blocks ``python`` is ``sys.executable``.

Size overrides: a block listed in ``SMALLER`` runs with those substitutions applied, the
same code at smaller sizes (the numbers its page prints come from the full size).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = ["README.md"] + sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.S | re.M)

# (page, text in the block) -> substitutions. The random parameters' QR at d = 2048 alone
# takes minutes on 2 cores.
SMALLER = {
    ("docs/beyond.md", "params=\"random\""): [("length=256", "length=32"), ("d=2048", "d=256")],
}


def blocks(page: str) -> list[tuple[str, str]]:
  """The runnable blocks of ``page``, in order: ("python" | "bash", code)."""
  text = (ROOT / page).read_text(encoding="utf-8")
  found = []
  for info, code in FENCE.findall(text):
    words = info.split()
    if words[:1] == ["python"]:
      found.append(("python", code))
    elif words[:1] == ["bash"] and "quick" in words[1:]:
      found.append(("bash", code))
  return found


def _smaller(page: str, code: str) -> str:
  for (where, marker), substitutions in SMALLER.items():
    if where == page and marker in code:
      for old, new in substitutions:
        assert old in code, f"{page}: the size override {old!r} no longer matches"
        code = code.replace(old, new)
  return code


def _folder(tmp_path: pathlib.Path) -> pathlib.Path:
  for name in ("bench", "plots", "examples"):
    (tmp_path / name).symlink_to(ROOT / name)
  return tmp_path


def test_every_python_block_is_collected():
  """The pages the suite runs hold the known examples (guards a collector that finds none)."""
  counts = {page: sum(kind == "python" for kind, _ in blocks(page)) for page in PAGES}
  assert counts["README.md"] == 1
  assert counts["docs/getting-started.md"] == 1
  assert counts["docs/tutorial-construction.md"] == 1
  assert counts["docs/beyond.md"] == 1 and counts["docs/your-pattern.md"] == 1
  assert sum(kind == "bash" for kind, _ in blocks("docs/your-pattern.md")) == 1
  for (page, marker) in SMALLER:
    assert any(marker in code for _, code in blocks(page)), (page, marker)


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)])
def test_page_examples_run(page, tmp_path):
  folder = _folder(tmp_path)
  for number, (kind, code) in enumerate(blocks(page), 1):
    code = _smaller(page, code)
    if kind == "python":
      command = [sys.executable, "-c", code]
    else:
      command = ["bash", "-e", "-c", f'python() {{ "{sys.executable}" "$@"; }}\n{code}']
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, (f"{page}, block {number} ({kind}) failed:\n{code}\n"
                                    f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
  if page == "docs/tutorial-construction.md":
    assert (folder / "signs_success_rate.png").read_bytes().startswith(b"\x89PNG")
