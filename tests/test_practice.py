"""``python -m bench practice`` on a tiny override of its preset: table, figures, JSON, plan."""

import json
import re

import pytest

from jaxattn_bench import grid
from jaxattn_bench.cli import main as bench_main

TINY = """
trials = 2
delta = 0.5
a_min = 1.0
eps1 = 0.5
eps2 = 0.5
method = "lstsq"
d_grid = [4, 8, 16, 32]

[[grid]]
family = "longformer(window=1)"
length = [16, 32, 64]

[[grid]]
family = ["longformer(window=2)", "longformer(window=1,globals=1,global_rows=false)",
          "longformer(window=1,globals=2,global_rows=false)"]
length = 32
"""


def test_practice_writes_table_figures_and_json(tmp_path, capsys):
  preset = tmp_path / "tiny.toml"
  preset.write_text(TINY)
  out = tmp_path / "out"
  assert (
    bench_main(
      [
        "practice",
        "--preset",
        str(preset),
        "--results",
        str(tmp_path / "r.sqlite"),
        "--out",
        str(out),
      ]
    )
    == 0
  )
  printed = capsys.readouterr().out
  table = (out / "table.md").read_text()
  assert table in printed.replace("\r", "") or table.splitlines()[0] in printed
  assert table.startswith("| family | L | layer | N (row, column) | theorem | lstsq d_50 [95%] |")
  assert "| longformer(window=1) | 64 | bidirectional | 3, 3 | inside |" in table
  assert (
    "| longformer(window=1,globals=2,global_rows=false) | 32 | bidirectional | 5, 32 | outside |"
  ) in table
  assert "Cost of a global token" in table
  data = json.loads((out / "practice.json").read_text())
  series = "longformer(window=1) | bidirectional | lstsq"
  assert sorted(data["length"]) == [series]
  assert [e["length"] for e in data["length"][series]] == [16, 32, 64]
  assert [e["window"] for e in data["window"]["L=32 | lstsq"]] == [1, 2]
  assert [e["globals"] for e in data["globals"]["w=1 | L=32 | lstsq"]] == [0, 1, 2]
  fit = data["fit"][series]
  assert fit is None or fit["preferred"] in ("log", "power", "undecided")
  for name in ("d_vs_length.png", "d_vs_window.png", "d_vs_globals.png"):
    assert (out / name).stat().st_size > 10_000


def test_practice_plan_and_shipped_preset(capsys):
  assert bench_main(["practice", "--plan"]) == 0
  lines = capsys.readouterr().out.splitlines()
  points = grid.load_preset("practice").points
  assert len(lines) == len(points) + 1 and lines[-1].startswith(f"{len(points)} points, expected")
  assert {p.method for p in points} == {"optimize", "lstsq"}
  minutes = float(re.search(r"expected about ([\d.]+) min", lines[-1]).group(1))
  assert minutes <= 45  # the preset is chosen to fit 45 minutes on the 2-core CPU


@pytest.mark.parametrize(
  "argv",
  [["practice", "--preset", "nope"], ["practice", "--seed", "-1", "--results", "/nonexistent/x"]],
)
def test_practice_bad_input_exits_2(argv, capsys):
  assert bench_main(argv) == 2
  assert capsys.readouterr().err.count("\n") == 1
