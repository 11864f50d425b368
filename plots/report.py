"""Every figure and the fit table of stored grid points, written to a folder."""

from __future__ import annotations

import csv
import json
import pathlib
from typing import NamedTuple, Sequence

from jaxattn_bench.store import Record
from jaxattn_plots.figures import FIGURES, FitRow, fit_table, format_fit_table


class PlotReport(NamedTuple):
  """What ``write_report`` wrote: files, figures without data, and the fit rows."""

  out: pathlib.Path
  written: list[pathlib.Path]
  skipped: list[str]
  rows: list[FitRow]

  def text(self) -> str:
    """The fit table and a line naming what was written."""
    note = f"; no data for figure(s) {', '.join(self.skipped)}" if self.skipped else ""
    return (f"{format_fit_table(self.rows)}\n"
            f"wrote {len(self.written)} files (figures as PNG and PDF, fit.csv, fit.json) "
            f"to {self.out}/{note}")


def write_report(records: Sequence[Record], out: str | pathlib.Path) -> PlotReport:
  """Writes every figure as PNG and PDF, and the fit table as fit.csv and fit.json, to ``out``."""
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  written, skipped = [], []
  for name, make in FIGURES.items():
    figure = make(records)
    if figure is None:
      skipped.append(name)
      continue
    for suffix in ("png", "pdf"):
      path = out / f"{name}.{suffix}"
      figure.savefig(path, dpi=150)
      written.append(path)
  rows = fit_table(records)
  with (out / "fit.csv").open("w", newline="", encoding="utf-8") as handle:
    writer = csv.writer(handle)
    writer.writerow(FitRow._fields)
    writer.writerows(rows)
  (out / "fit.json").write_text(json.dumps([r._asdict() for r in rows], indent=1) + "\n",
                                encoding="utf-8")
  return PlotReport(out, written + [out / "fit.csv", out / "fit.json"], skipped, rows)
