"""Figures (a)–(d) and the fit table from stored grid points.

A *series* is the set of records that agree on every field except the plotted
one (and the search settings d_grid, trials, δ). Markers distinguish

  filled circle    d_min < L
  open circle      d_min ≥ L (the construction is no smaller than trivial d = L)
  open triangle    not reached: no grid d reached 1 − δ; drawn at the top of the grid
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from jaxattn_bench.store import SETTINGS, Record, distinct
from jaxattn_plots.fit import LawFit, fit_log_law, fit_power_law

_SHORT = {"nnz": "N", "length": "L", "eps1": "ε1", "eps2": "ε2", "a_min": "a_min"}
_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
           "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
SeriesKey = tuple[tuple[str, Any], ...]


def series(records: Sequence[Record], x: str, min_values: int = 2) -> dict[SeriesKey, list[Record]]:
  """``distinct`` records grouped by every field except ``x`` and SETTINGS, sorted by ``x``.

  Only groups with at least ``min_values`` distinct values of ``x`` are kept.
  """
  groups: dict[SeriesKey, list[Record]] = {}
  for record in distinct(records):
    key = tuple(sorted((k, v) for k, v in record.params.items() if k != x and k not in SETTINGS))
    groups.setdefault(key, []).append(record)
  return {key: sorted(group, key=lambda r: r.params[x]) for key, group in groups.items()
          if len({r.params[x] for r in group}) >= min_values}


def label(key: SeriesKey, names: Sequence[str]) -> str:
  """'jl, N=1' from the fields ``names`` of a series key (methods and families bare)."""
  values = dict(key)

  def part(name):
    value = values[name]
    if name in ("method", "family"):
      return str(value)
    return f"{_SHORT.get(name, name)}={value:g}" if isinstance(value, float) else \
        f"{_SHORT.get(name, name)}={value}"

  return ", ".join(part(n) for n in names if n in values)


def _varying(keys: Sequence[SeriesKey]) -> tuple[list[str], list[str]]:
  """Field names that differ between series keys, and those shared by all."""
  names = sorted({n for key in keys for n, _ in key})
  dicts = [dict(key) for key in keys]
  varying = [n for n in names if len({repr(d.get(n)) for d in dicts}) > 1]
  return varying, [n for n in names if n not in varying]


def _plotted_d(record: Record) -> float:
  """d_min, or the top of the grid where it was not reached."""
  return float(record.d_min if record.d_min is not None else record.d[-1])


def _mark_points(ax, x: np.ndarray, group: list[Record], color: str) -> None:
  """Line through the points; filled / open / triangle markers as in the module docstring."""
  y = np.array([_plotted_d(r) for r in group])
  reached = np.array([r.d_min is not None for r in group])
  trivial = np.array([r.d_min is not None and r.d_min >= r.params["length"] for r in group])
  ax.plot(x, y, "-", color=color, lw=1, alpha=0.6)
  ax.plot(x[reached & ~trivial], y[reached & ~trivial], "o", color=color, ms=6)
  ax.plot(x[trivial], y[trivial], "o", mfc="white", color=color, ms=6, mew=1.5)
  ax.plot(x[~reached], y[~reached], "^", mfc="white", color=color, ms=8, mew=1.5)


def _marker_handles() -> list[Line2D]:
  return [Line2D([], [], ls="", marker="o", color="k", label="d_min < L"),
          Line2D([], [], ls="", marker="o", mfc="white", color="k", label="d_min ≥ L"),
          Line2D([], [], ls="", marker="^", mfc="white", color="k",
                 label="not reached (drawn at top of d grid)"),
          Line2D([], [], ls="--", color="k", label="jl_dim (provable d)")]


def _legend(ax, loc: str = "best") -> None:
  """One legend: the axes' labelled lines, then the marker key."""
  handles, _ = ax.get_legend_handles_labels()
  ax.legend(handles=handles + _marker_handles(), loc=loc, fontsize=8, framealpha=0.9)


def _settings(records: Sequence[Record]) -> str:
  """'T=16, δ=0.1' when shared by all records, else what varies."""
  trials = sorted({r.trials for r in records})
  deltas = sorted({r.params["delta"] for r in records})
  seeds = sorted({r.seed for r in records})
  join = lambda values: "/".join(f"{v:g}" for v in values)
  return f"T={join(trials)} trials, δ={join(deltas)}, seed {join(seeds)}"


def _data_ticks(ax, values) -> None:
  values = sorted(set(values))
  ax.set_xticks(values, [f"{v:g}" for v in values])
  ax.minorticks_off()


def fits(records: Sequence[Record]) -> list[tuple[SeriesKey, LawFit, LawFit, dict[str, int]]]:
  """Log-law and power-law fits of every series over L with ≥ 3 reached points.

  Points where d_min was not reached are left out of the fit (they are
  censored, not measured) and counted; points with d_min ≥ L are fitted
  and counted.
  """
  out = []
  for key, group in series(records, "length", min_values=3).items():
    reached = [r for r in group if r.d_min is not None]
    lengths = np.array([r.params["length"] for r in reached], float)
    if len(reached) < 3 or len(set(lengths)) < 2:
      continue
    d = np.array([r.d_min for r in reached], float)
    counts = {"not_reached": len(group) - len(reached), "d_ge_L": int(np.sum(d >= lengths))}
    out.append((key, fit_log_law(lengths, d), fit_power_law(lengths, d), counts))
  return out


def figure_d_vs_length(records: Sequence[Record]) -> Figure | None:
  """(a) d_min against L (log₂ axis) with the fitted d = a ln L + b and its 95% band.

  Left, a linear d axis, on which the log law is a straight line; right, a
  log d axis that also shows the provable ``jl_dim`` dashed.
  """
  groups = series(records, "length")
  if not groups:
    return None
  fitted = {key: (log_fit, power_fit) for key, log_fit, power_fit, _ in fits(records)}
  varying, shared = _varying(list(groups))
  fig = Figure(figsize=(12, 5.2), layout="constrained")
  linear, log = fig.subplots(1, 2, sharex=True)
  lengths_all = np.array(sorted({r.params["length"] for g in groups.values() for r in g}), float)
  top = max(_plotted_d(r) for g in groups.values() for r in g)
  for i, (key, group) in enumerate(groups.items()):
    color = _COLORS[i % len(_COLORS)]
    lengths = np.array([r.params["length"] for r in group], float)
    name = label(key, varying) or label(key, ("method",))
    for ax in (linear, log):
      _mark_points(ax, lengths, group, color)
    if key in fitted:
      fit, power = fitted[key]
      xs = np.geomspace(lengths.min(), lengths.max(), 200)
      low, high = fit.band(xs)
      linear.fill_between(xs, low, high, color=color, alpha=0.2, lw=0)
      name += (f": d = {fit.param:.1f} ln L {'+' if fit.constant >= 0 else '−'} "
               f"{abs(fit.constant):.0f}, a ∈ [{fit.param_low:.1f}, {fit.param_high:.1f}], "
               f"R² = {fit.r2:.2f}, n = {fit.n}")
      linear.plot(xs, fit.predict(xs), "-", color=color, lw=2, label=name)
      linear.plot(xs, power.predict(xs), "-.", color=color, lw=1,
                  label=f"power law: d = {power.constant:.3g}·L^{power.param:.2f}, "
                        f"R² = {power.r2:.2f}")
    else:
      linear.plot([], [], "-", color=color, lw=2, label=name + " (too few points to fit)")
    bound = [(r.params["length"], r.jl_dim) for r in group if r.jl_dim is not None]
    if bound:
      log.plot(*zip(*bound), "--", color=color, lw=1.2)
  for ax in (linear, log):
    ax.plot(lengths_all, lengths_all, ":", color="gray", lw=1, label="d = L")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length L")
    ax.grid(True, which="major", alpha=0.3)
  linear.set_ylim(0, 1.1 * top)
  linear.set_ylabel("minimal dimension d_min")
  linear.set_title("(a) d_min against L; fit d = a·ln L + b with 95% band", fontsize=10)
  linear.legend(loc="upper left", fontsize=8, framealpha=0.9)
  log.set_yscale("log", base=2)
  log.set_ylabel("d (log scale)")
  log.set_title("measured d_min and the provable jl_dim (dashed)", fontsize=10)
  _legend(log, "lower right")
  shown = [r for g in groups.values() for r in g]
  fig.suptitle(f"{label(next(iter(groups)), shared)}; {_settings(shown)}", fontsize=10)
  return fig


def _figure_against(records: Sequence[Record], x: str, xlabel: str, title: str,
                    log_x: bool) -> Figure | None:
  """d_min against field ``x``, one curve per series, jl_dim dashed."""
  groups = series(records, x)
  if not groups:
    return None
  varying, shared = _varying(list(groups))
  fig = Figure(figsize=(6.4, 4.6), layout="constrained")
  ax = fig.add_subplot()
  for i, (key, group) in enumerate(groups.items()):
    color = _COLORS[i % len(_COLORS)]
    xs = np.array([r.params[x] for r in group], float)
    _mark_points(ax, xs, group, color)
    ax.plot([], [], "-", color=color, label=label(key, varying) or label(key, ("method",)))
    bound = [(r.params[x], r.jl_dim) for r in group if r.jl_dim is not None]
    if bound:
      ax.plot(*zip(*bound), "--", color=color, lw=1.2)
  if log_x:
    ax.set_xscale("log", base=2)
  shown = [r for g in groups.values() for r in g]
  _data_ticks(ax, [r.params[x] for r in shown])
  ax.set_yscale("log", base=2)
  ax.set_xlabel(xlabel)
  ax.set_ylabel("minimal dimension d_min")
  ax.set_title(f"{title}\n{label(next(iter(groups)), shared)}; {_settings(shown)}", fontsize=9)
  ax.grid(True, which="major", alpha=0.3)
  _legend(ax)
  return fig


def figure_d_vs_nnz(records: Sequence[Record]) -> Figure | None:
  """(b) d_min against N at fixed L."""
  return _figure_against(records, "nnz", "nonzeros per row and column N",
                         "(b) d_min against N", log_x=False)


def figure_d_vs_eps1(records: Sequence[Record]) -> Figure | None:
  """(c) d_min against ε1 (log₂ axis)."""
  return _figure_against(records, "eps1", "ratio tolerance ε1", "(c) d_min against ε1",
                         log_x=True)


def threshold_record(records: Sequence[Record]) -> Record | None:
  """The point shown in (d): the largest L with d_min reached of the longest series over L."""
  groups = series(records, "length")
  if not groups:
    candidates = list(records)
  else:
    candidates = max(groups.values(), key=lambda g: len({r.params["length"] for r in g}))
  if not candidates:
    return None
  reached = [r for r in candidates if r.d_min is not None] or list(candidates)
  return max(reached, key=lambda r: r.params["length"])


def figure_success_rate(records: Sequence[Record]) -> Figure | None:
  """(d) success rate against d at one L with 95% Clopper–Pearson bars, the 1 − δ threshold."""
  record = threshold_record(records)
  if record is None:
    return None
  fig = Figure(figsize=(6.4, 4.6), layout="constrained")
  ax = fig.add_subplot()
  delta = record.params["delta"]
  errors = np.stack([record.rate - record.ci_low, record.ci_high - record.rate])
  ax.errorbar(record.d, record.rate, yerr=errors, fmt="o-", color="tab:blue", capsize=3,
              label=f"success rate over T = {record.trials} trials, 95% CI")
  ax.axhline(1 - delta, color="tab:red", ls="--", lw=1.2, label=f"threshold 1 − δ = {1 - delta:g}")
  if record.d_min is not None:
    ax.axvline(record.d_min, color="k", ls=":", lw=1.2, label=f"d_min = {record.d_min}")
  ax.set_xscale("log", base=2)
  _data_ticks(ax, record.d)
  ax.tick_params(axis="x", labelrotation=60, labelsize=7)
  ax.set_ylim(-0.03, 1.03)
  ax.set_xlabel("dimension d")
  ax.set_ylabel("fraction of trials that verify")
  shown = [n for n in ("family", "method", "length", "nnz", "a_min", "eps1", "eps2")
           if n in record.params]
  ax.set_title("(d) success rate against d\n"
               + label(tuple((n, record.params[n]) for n in shown), shown)
               + f", seed {record.seed}", fontsize=9)
  ax.grid(True, alpha=0.3)
  ax.legend(loc="upper left", fontsize=8)
  return fig


FIGURES = {
    "a_d_vs_length": figure_d_vs_length,
    "b_d_vs_nnz": figure_d_vs_nnz,
    "c_d_vs_eps1": figure_d_vs_eps1,
    "d_success_rate": figure_success_rate,
}


class FitRow(NamedTuple):
  """One row of the fit table."""

  series: str
  law: str          # "log: d = a ln L + b" or "power: d = c L^alpha"
  param: float      # a or alpha
  ci_low: float
  ci_high: float
  constant: float   # b or c
  r2: float         # on d
  n: int
  not_reached: int  # points left out: no grid d reached 1 − δ
  d_ge_L: int       # fitted points with d_min ≥ L


def fit_table(records: Sequence[Record]) -> list[FitRow]:
  """Rows of both laws for every series over L (``fits``)."""
  rows = []
  for key, log_fit, power_fit, counts in fits(records):
    name = label(key, [n for n, _ in key])
    for law, fit in (("log: d = a ln L + b", log_fit), ("power: d = c L^alpha", power_fit)):
      rows.append(FitRow(name, law, fit.param, fit.param_low, fit.param_high, fit.constant,
                         fit.r2, fit.n, counts["not_reached"], counts["d_ge_L"]))
  return rows


def format_fit_table(rows: Sequence[FitRow]) -> str:
  """The fit table as aligned text."""
  if not rows:
    return "no series over L with >= 3 points where d_min was reached: nothing to fit"
  header = (f"{'law':<22} {'a|alpha':>8} {'95% CI':>18} {'b|c':>9} {'R2(d)':>6} {'n':>3} "
            f"{'>top':>4} {'d>=L':>4}")
  lines = []
  for name in dict.fromkeys(r.series for r in rows):
    lines += [name, header]
    for r in (r for r in rows if r.series == name):
      ci = f"[{r.ci_low:.3g}, {r.ci_high:.3g}]"
      lines.append(f"{r.law:<22} {r.param:>8.3g} {ci:>18} {r.constant:>9.4g} "
                   f"{r.r2:>6.3f} {r.n:>3} "
                   f"{r.not_reached:>4} {r.d_ge_L:>4}")
  return "\n".join(lines)
