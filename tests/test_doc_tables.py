"""The measured tables of README.md and docs/ are generated from the data files in docs/data/
(``python -m plots.tables``), and each results file kept there is read by a page."""

from __future__ import annotations

import shutil

import pytest

from jaxattn_plots import tables
from tests.doc_blocks import PAGES, ROOT, blocks

DATA = ROOT / "docs" / "data"


def _regions() -> dict[str, str]:
  return {
    m.group(1): page
    for page in tables.pages()
    for m in tables.REGION.finditer(page.read_text(encoding="utf-8"))
  }


def test_every_table_is_what_its_data_file_generates():
  assert tables.main(["--check"]) == 0


def test_every_data_file_is_used_and_every_table_has_one():
  """21 tables (19 CSV, 2 printed outputs), one data file each, none left over; each store is
  read by a block that runs."""
  regions = _regions()
  assert len(regions) == 21
  assert sorted(regions) == sorted(
    f"docs/data/{p.name}" for p in DATA.glob("*") if p.suffix in (".csv", ".txt")
  )
  run = "\n".join(b.code for page in PAGES for b in blocks(page) if b.runnable and b.excuse is None)
  for store in DATA.glob("*.sqlite"):  # as an excused run's product, or from docs/data itself
    assert any(f"{folder}/{store.name}" in run for folder in ("results", "docs/data")), (
      f"no block of the docs reads {store.name}"
    )


def test_a_hand_edited_table_is_stale_and_regenerated(tmp_path):
  """A cell changed on the page, not in its file: --check fails and names the page; a run
  writes the file's cell back."""
  (tmp_path / "docs").mkdir()
  shutil.copytree(DATA, tmp_path / "docs" / "data")
  page = tmp_path / "docs" / "page.md"
  original = (ROOT / "README.md").read_text(encoding="utf-8")
  edited = original.replace("| 64 | 724 [512, 1448] |", "| 64 | 512 [512, 1448] |")
  assert edited != original
  page.write_text(edited, encoding="utf-8")
  assert tables.regenerate(edited, tmp_path) == original
  assert tables.main(["--check", str(page)]) == 1
  assert page.read_text(encoding="utf-8") == edited
  assert tables.main([str(page)]) == 0 and page.read_text(encoding="utf-8") == original


@pytest.mark.parametrize(
  "text, error",
  [
    ("# command: c\n# machine: m\na,b\n1,2\n", "no '# commit:' line"),
    ("# command: c\n# commit: x\n# machine: m\na,b\n1,2,3\n", "row 2 has 3 cells"),
    ("# command: c\n# commit: x\n# machine: m\n#no colon\na\n", "not a '# name: value' line"),
  ],
)
def test_a_data_file_without_its_provenance_is_refused(tmp_path, text, error):
  path = tmp_path / "t.csv"
  path.write_text(text, encoding="utf-8")
  with pytest.raises(ValueError, match=error):
    tables.read_data(path)


@pytest.mark.parametrize(
  "name, body, shown",
  [
    (
      "t.csv",
      '# align: l,r\nname,d\n"jl, 2","724 [512, 1448]"\n',
      "| name | d |\n| --- | ---: |\n| jl, 2 | 724 [512, 1448] |\n",
    ),
    ("t.txt", "check    ms\n(a)    9.5\n", "```text\ncheck    ms\n(a)    9.5\n```\n"),
  ],
  ids=["csv", "txt"],
)
def test_the_table_carries_its_provenance(tmp_path, name, body, shown):
  """A CSV as a Markdown table with its alignments; a .txt file's text after the ``#`` lines as
  a text block, as printed; each followed by the line naming its source."""
  path = tmp_path / name
  path.write_text(
    "# command: python -m bench x\n# commit: abc1234\n# machine: a CPU\n" + body, encoding="utf-8"
  )
  assert tables.markdown(tables.read_data(path), name) == (
    f"{shown}\n*Data: `{name}`, from `python -m bench x` at abc1234 on a CPU.*\n"
  )
