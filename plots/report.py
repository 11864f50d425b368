"""Every figure and the fit table of stored grid points, written to a folder."""

from __future__ import annotations

import csv
import json
import math
import pathlib
from typing import NamedTuple, Sequence

import numpy as np

from jaxattn_bench.store import Record
from jaxattn_plots.figures import (
  FIGURES,
  FitRow,
  figure_paper_scan,
  fit_table,
  fits,
  format_fit_table,
  label,
  paper_scans,
)


class PlotReport(NamedTuple):
  """What ``write_report`` wrote: files, figures without data, and the fit rows."""

  out: pathlib.Path
  written: list[pathlib.Path]
  skipped: list[str]
  rows: list[FitRow]
  seeds: str = ""  # the seed-stability table (several seeds), else empty
  scans: str = ""  # the paper-scan spread table (single-trial points at several seeds)

  def text(self) -> str:
    """The fit table, the seed and scan tables if any, and a line naming what was written."""
    note = f"; no data for figure(s) {', '.join(self.skipped)}" if self.skipped else ""
    extra = "".join(f"{table}\n" for table in (self.seeds, self.scans) if table)
    return (
      f"{format_fit_table(self.rows)}\n{extra}"
      f"wrote {len(self.written)} files (figures as PNG and PDF, fit.csv, fit.json) "
      f"to {self.out}/{note}"
    )


def _bounds(low: float, high: float) -> str:
  return f"[{low:.3g}, {high:.3g}]"


def seed_stability(records: Sequence[Record]) -> str:
  """Per series over L with fits at ≥ 2 seeds: the log-law slope a of d_50 (d_min where no
  per-trial data) with its 95% interval and the preferred law per seed; whether every two
  slope intervals overlap (on a line: a point common to all) and the verdicts agree."""
  by_series: dict[tuple, dict[str, list]] = {}
  for fit in fits(records):
    problem = tuple((k, v) for k, v in fit.key if k != "seed")
    by_series.setdefault(problem, {}).setdefault(fit.estimator, []).append(fit)
  lines = []
  for problem, by_estimator in by_series.items():
    estimator = next((e for e in ("d_median", "d_min") if len(by_estimator.get(e, [])) >= 2), None)
    if estimator is None:
      continue
    group = sorted(by_estimator[estimator], key=lambda f: dict(f.key)["seed"])
    names = [n for n, _ in problem]
    lines += [
      f"seed stability: log-law slope a of {estimator} ({label(problem, names)})",
      f"{'seed':>5} {'a':>7} {'95% CI':>16}  preferred (ΔAIC)",
    ]
    for fit in group:
      lines.append(
        f"{dict(fit.key)['seed']:>5} {fit.log.param:>7.3g} "
        f"{_bounds(fit.log.param_low, fit.log.param_high):>16}  {fit.preferred} "
        f"({fit.delta_aic:+.1f})"
      )
    overlap = max(f.log.param_low for f in group) <= min(f.log.param_high for f in group)
    verdicts = sorted({f.preferred for f in group})
    slopes = np.array([f.log.param for f in group])
    lines.append(
      f"{len(group)} seeds: slope {slopes.mean():.3g} ± {slopes.std(ddof=1):.2g} "
      "(mean ± sd); "
      f"every two intervals overlap: {'yes' if overlap else 'no'}; law verdict "
      + (f"agrees: {verdicts[0]}" if len(verdicts) == 1 else f"differs: {', '.join(verdicts)}")
    )
  return "\n".join(lines)


def scan_spread(records: Sequence[Record], reference: Sequence[Record]) -> str:
  """Per problem and L with single-trial scans at several seeds: their d_min (min, median, max,
  max/min) and, where the reference has the problem, its d_50 [95% interval] and d_{1−δ}."""
  scans = paper_scans(records, reference)
  if not scans:
    return ""
  lines = [
    "paper scan (T = 1 per seed): d_min spread over seeds against per-trial quantiles",
    f"{'L':>6} {'seeds':>5} {'min':>5} {'median':>6} {'max':>5} {'max/min':>7}  "
    "reference d_50 [95% CI], d_1-δ (T)",
  ]
  for _, length, values, _, ref in scans:
    values = np.array(values)
    show = lambda v: ">top" if not np.isfinite(v) else f"{v:.0f}"
    ratio = values.max() / values.min()
    reference_text = (
      ""
      if ref is None
      else (
        f"{ref.d_median:.0f} {_bounds(ref.d_median_low, ref.d_median_high)}, "
        f"{ref.d_quantile:.0f} (T={ref.trials})"
      )
    )
    lines.append(
      f"{length:>6} {values.size:>5} {show(values.min()):>5} "
      f"{show(np.median(values)):>6} {show(values.max()):>5} "
      f"{ratio:>7.2f}  {reference_text}"
    )
  return "\n".join(lines)


def _json_row(row: FitRow) -> dict:
  """A fit row as JSON-ready dict: NaN (a field that does not apply) as null."""
  return {
    k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row._asdict().items()
  }


def write_report(
  records: Sequence[Record], out: str | pathlib.Path, reference: Sequence[Record] = ()
) -> PlotReport:
  """Writes every figure as PNG and PDF, and the fit table as fit.csv and fit.json, to ``out``.

  ``reference``: further records (say, the whole results store) where figure (e)
  and the scan table look up per-trial quantiles of the problems scanned in ``records``.
  """
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  written, skipped = [], []
  makers = {**FIGURES, "e_paper_scan": lambda r: figure_paper_scan(r, reference)}
  for name, make in makers.items():
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
  (out / "fit.json").write_text(
    json.dumps([_json_row(r) for r in rows], indent=1) + "\n", encoding="utf-8"
  )
  return PlotReport(
    out,
    written + [out / "fit.csv", out / "fit.json"],
    skipped,
    rows,
    seed_stability(records),
    scan_spread(records, list(reference) + list(records)),
  )
