"""Figures (a)–(e) and the fit table from stored grid points.

A *series* is the set of records of one seed that agree on every field except
the plotted one (and the search settings d_grid, trials, δ). Markers distinguish

  filled circle    d < L
  open circle      d ≥ L (the construction is no smaller than trivial d = L)
  open triangle    not reached: above the grid; drawn at the top of the grid

where d is d_min, or in figure (a)'s left panel the median threshold d_50
(points stored without per-trial data fall back to d_min there). The
subtitle gives the most common number of trials T and δ; a point with other
settings is marked with its own ("T=16"; in (a) on the right panel). Legends
lie outside the axes and list only what is drawn.
"""

from __future__ import annotations

import textwrap
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import ScaledTranslation

from jaxattn_bench.store import SETTINGS, Record, distinct
from jaxattn_plots.fit import (
  LawFit,
  WeightedFit,
  fit_log_law,
  fit_power_law,
  fit_weighted,
  ols_preference,
  weighted_preference,
)

_SHORT = {
  "nnz": "N",
  "length": "L",
  "eps1": "ε1",
  "eps2": "ε2",
  "a_min": "a_min",
  "max_outside_mass": "η",
}
_COLORS = (
  "tab:blue",
  "tab:orange",
  "tab:green",
  "tab:red",
  "tab:purple",
  "tab:brown",
  "tab:pink",
  "tab:olive",
  "tab:cyan",
  "tab:gray",
)
SeriesKey = tuple[tuple[str, Any], ...]


def series(records: Sequence[Record], x: str, min_values: int = 2) -> dict[SeriesKey, list[Record]]:
  """``distinct`` records grouped by seed and every field but ``x`` and SETTINGS, sorted by ``x``.

  Only groups with at least ``min_values`` distinct values of ``x`` are kept.
  """
  groups: dict[SeriesKey, list[Record]] = {}
  for record in distinct(records):
    key = tuple(
      sorted(
        [(k, v) for k, v in record.params.items() if k != x and k not in SETTINGS]
        + [("seed", record.seed)]
      )
    )
    groups.setdefault(key, []).append(record)
  return {
    key: sorted(group, key=lambda r: r.params[x])
    for key, group in groups.items()
    if len({r.params[x] for r in group}) >= min_values
  }


def label(key: SeriesKey, names: Sequence[str]) -> str:
  """'jl, N=1' from the fields ``names`` of a series key (methods and families bare)."""
  values = dict(key)

  def part(name):
    if name == "causal":  # a bidirectional point has no such field (grid.Point.params)
      return "causal layer" if values.get(name) else "bidirectional"
    value = values[name]
    if name in ("method", "family"):
      return str(value)
    return (
      f"{_SHORT.get(name, name)}={value:g}"
      if isinstance(value, float)
      else f"{_SHORT.get(name, name)}={value}"
    )

  return ", ".join(part(n) for n in names if n in values or n == "causal")


def _varying(keys: Sequence[SeriesKey]) -> tuple[list[str], list[str]]:
  """Field names that differ between series keys, and those shared by all."""
  names = sorted({n for key in keys for n, _ in key})
  dicts = [dict(key) for key in keys]
  varying = [n for n in names if len({repr(d.get(n)) for d in dicts}) > 1]
  return varying, [n for n in names if n not in varying]


def _plotted_d(record: Record) -> float:
  """d_min, or the top of the grid where it was not reached."""
  return float(record.d_min if record.d_min is not None else record.d[-1])


# Marker style and legend text of each kind of point (module docstring).
_KINDS: dict[str, tuple[dict[str, Any], str]] = {
  "below": (dict(marker="o", ms=6), "{name} < L"),
  "trivial": (dict(marker="o", mfc="white", ms=6, mew=1.5), "{name} ≥ L"),
  "missed": (dict(marker="^", mfc="white", ms=8, mew=1.5), "not reached (drawn at top of d grid)"),
}


def _mark_points(
  ax,
  x: np.ndarray,
  group: list[Record],
  color: str,
  values: Sequence[float | None] | None = None,
  line: bool = True,
  label: str | None = None,
  notes: Sequence[str] = (),
) -> set[str]:
  """Line through the points; filled / open / triangle markers as in the module docstring.

  ``values``: d per record (None or inf: not reached); default d_min. ``label``
  goes on the first artist drawn; ``notes[i]`` (e.g. 'T=8') is written above
  point i. Returns the kinds of ``_KINDS`` drawn.
  """
  if values is None:
    values = [r.d_min for r in group]
  reached = np.array([v is not None and np.isfinite(v) for v in values])
  y = np.array(
    [
      float(v) if ok and v is not None else float(r.d[-1])
      for v, ok, r in zip(values, reached, group)
    ]
  )
  trivial = reached & (y >= np.array([r.params["length"] for r in group]))
  masks = {"below": reached & ~trivial, "trivial": trivial, "missed": ~reached}
  artists = ax.plot(x, y, "-", color=color, lw=1, alpha=0.6) if line else []
  for kind, mask in masks.items():
    if mask.any():
      artists += ax.plot(x[mask], y[mask], ls="", color=color, **_KINDS[kind][0])
  if label is not None and artists:
    artists[0].set_label(label)
  for xi, yi, note in zip(x, y, notes):
    if note:
      ax.annotate(
        note,
        (xi, yi),
        xytext=(0, 7),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize=7,
        color=color,
      )
  return {kind for kind, mask in masks.items() if mask.any()}


def _marker_handles(kinds: set[str], bound: bool, name: str = "d_min") -> list[Line2D]:
  """Legend keys of the kinds of point drawn, and of jl_dim if ``bound`` (it was drawn)."""
  handles = [
    Line2D([], [], ls="", color="k", label=text.format(name=name), **style)
    for kind, (style, text) in _KINDS.items()
    if kind in kinds
  ]
  if bound:
    handles.append(Line2D([], [], ls="--", color="k", label="jl_dim (provable d)"))
  return handles


def wrapped(text: str, width_inches: float, fontsize: float) -> str:
  """``text`` with each line broken at spaces to fit ``width_inches`` at ``fontsize`` points.

  A glyph of the default font is taken as 0.65 em wide (wider than its average),
  so the lines fit: characters per line = 72·width / (0.65·fontsize).
  """
  columns = max(int(72 * width_inches / (0.65 * fontsize)), 20)
  return "\n".join(textwrap.fill(line, columns) for line in text.split("\n"))


def outside_legend(
  figure,
  handles: list,
  loc: str = "outside lower center",
  fontsize: float = 8,
  ncols: int = 2,
  **kwargs,
) -> None:
  """A legend of ``handles`` outside the axes of ``figure`` (by default under them), so that it
  covers no data; the constrained layout makes room for it."""
  figure.legend(handles=handles, loc=loc, fontsize=fontsize, ncols=ncols, **kwargs)


BELOW = 36  # points under an axes: its tick labels (powers of 2) and x label, with padding


def _legend_below(ax, handles: list, **kwargs) -> None:
  """A legend of ``handles`` under ``ax``, below its tick labels and x label (``BELOW`` points
  under the axes), so that it covers no data; the constrained layout makes room for it and
  keeps the axes of a row aligned."""
  offset = ScaledTranslation(0, -BELOW / 72, ax.figure.dpi_scale_trans)
  ax.legend(
    handles=handles,
    loc="upper center",
    bbox_to_anchor=(0.5, 0),
    bbox_transform=ax.transAxes + offset,
    fontsize=7,
    **kwargs,
  )


def _identity_line(ax, low: float, high: float) -> None:
  """d = L from L = ``low`` to ``high``, evaluated at 256 points spaced evenly in log L, so that
  it is drawn as the smooth curve it is on any axes (straight on log–log), not as a polyline
  through the data's L."""
  if high > low:
    xs = np.geomspace(low, high, 256)
    ax.plot(xs, xs, ":", color="gray", lw=1, label="d = L")


def _most_common(values) -> Any:
  """The most frequent of ``values``; the smallest among ties."""
  values = list(values)
  return max(sorted(set(values)), key=values.count)


def _settings(records: Sequence[Record]) -> tuple[str, Callable[[Record], str]]:
  """'T=16 trials, δ=0.1, seed 0' from the most common T and δ of ``records``, and the note of a
  record whose T or δ differs from them ('T=8', '' where none), to be written at its point.

  Where some record differs the text says so: 'T=16 trials (other T marked at the points)'.
  """
  trials = _most_common(r.trials for r in records)
  delta = _most_common(r.params["delta"] for r in records)

  def note(record: Record) -> str:
    return ", ".join(
      ([f"T={record.trials}"] if record.trials != trials else [])
      + ([f"δ={record.params['delta']:g}"] if record.params["delta"] != delta else [])
    )

  marked = lambda name, differs: f" (other {name} marked at the points)" if differs else ""
  seeds = "/".join(str(s) for s in sorted({r.seed for r in records}))
  return (
    f"T={trials} trials{marked('T', any(r.trials != trials for r in records))}, "
    f"δ={delta:g}{marked('δ', any(r.params['delta'] != delta for r in records))}, "
    f"seed {seeds}"
  ), note


def _data_ticks(ax, values) -> None:
  values = sorted(set(values))
  ax.set_xticks(values, [f"{v:g}" for v in values])
  ax.minorticks_off()


ESTIMATORS = ("d_median", "d_quantile", "d_min")


def estimate(record: Record, estimator: str) -> tuple[float, float, float] | None:
  """(d, low, high) of ``estimator`` at a record; None where the record lacks it (d_min not
  reached, or a point stored without per-trial data). Bounds may be ±inf (unbounded)."""
  if estimator == "d_min":
    return None if record.d_min is None else (float(record.d_min),) * 3
  value = getattr(record, estimator)
  if value is None or not np.isfinite(value):
    return None
  return value, getattr(record, f"{estimator}_low"), getattr(record, f"{estimator}_high")


def sigma(record: Record, value: float, low: float, high: float) -> float:
  """The σ of a weighted fit: the interval's half-width, at least half the local grid step."""
  return grid_sigma(record.d, value, low, high)


def grid_sigma(d_grid: Sequence[int] | np.ndarray, value: float, low: float, high: float) -> float:
  """``sigma`` for an estimate searched on ``d_grid``."""
  grid = np.asarray(d_grid, float)
  g = int(np.clip(np.searchsorted(grid, value), 1, grid.size - 1)) if grid.size > 1 else 0
  step = float(grid[g] - grid[g - 1]) if grid.size > 1 else 1.0
  return max((high - low) / 2, step / 2)


class SeriesFit(NamedTuple):
  """Both laws fitted to one estimator over one series over L, and the preferred law."""

  key: SeriesKey
  estimator: str  # "d_median" | "d_quantile" | "d_min"
  log: LawFit | WeightedFit
  power: LawFit | WeightedFit
  preferred: str  # "log" | "power" | "undecided"
  delta_aic: float  # the criterion (plots.fit): > 0 favours the log law
  counts: dict[str, int]  # not_reached (left out), d_ge_L (fitted points with d ≥ L)


def fits(records: Sequence[Record]) -> list[SeriesFit]:
  """Log-law and power-law fits of every series over L, for each estimator with ≥ 3 usable points.

  d_50 and d_{1−δ}: weighted least squares over the points whose estimate is
  reached and whose interval is bounded (``plots.fit.fit_weighted``, σ from
  ``sigma``); d_min: ordinary least squares over the points where it was
  reached, as before per-trial data existed. Points left out (not reached,
  unbounded interval, no per-trial data) are counted as ``not_reached``;
  fitted points with d ≥ L are fitted and counted.
  """
  out = []
  for key, group in series(records, "length", min_values=3).items():
    for estimator in ESTIMATORS:
      points = [
        (r, e)
        for r in group
        if (e := estimate(r, estimator)) is not None and np.isfinite(e[1]) and np.isfinite(e[2])
      ]
      lengths = np.array([r.params["length"] for r, _ in points], float)
      if len(points) < 3 or len(set(lengths)) < 2:
        continue
      d = np.array([e[0] for _, e in points])
      counts = {"not_reached": len(group) - len(points), "d_ge_L": int(np.sum(d >= lengths))}
      laws: tuple[LawFit, LawFit] | tuple[WeightedFit, WeightedFit]
      if estimator == "d_min":
        ols = laws = fit_log_law(lengths, d), fit_power_law(lengths, d)
        preferred, delta = ols_preference(lengths, d, *ols)
      else:
        sigmas = np.array([sigma(r, *e) for r, e in points])
        weighted = laws = (
          fit_weighted("log", lengths, d, sigmas),
          fit_weighted("power", lengths, d, sigmas),
        )
        preferred, delta = weighted_preference(*weighted)
      out.append(SeriesFit(key, estimator, laws[0], laws[1], preferred, delta, counts))
  return out


def _law_label(fit: SeriesFit) -> str:
  """'d_50 = 35.1 ln L − 9, a ∈ [.., ..], χ²/dof = 1.2' (or R² for d_min)."""
  log = fit.log
  quality = (
    f"χ²/dof = {log.chi2:.1f}/{log.dof}" if isinstance(log, WeightedFit) else f"R² = {log.r2:.2f}"
  )
  return (
    f"{_ESTIMATOR_NAMES[fit.estimator]} = {log.param:.1f} ln L "
    f"{'+' if log.constant >= 0 else '−'} {abs(log.constant):.0f}, "
    f"a ∈ [{log.param_low:.1f}, {log.param_high:.1f}], {quality}"
  )


_ESTIMATOR_NAMES = {"d_median": "d_50", "d_quantile": "d_{1−δ}", "d_min": "d_min"}


def _draw_intervals(ax, lengths: np.ndarray, group: Sequence[Record], color) -> tuple[float, bool]:
  """d_50 bars (their 95% order-statistic intervals, unbounded ends drawn at d_50) and d_{1−δ}
  diamonds of one series on ``ax``; the highest value drawn and whether a diamond was."""
  top = 0.0
  shown_d = [
    (x, r.d_median, r.d_median_low, r.d_median_high)
    for x, r in zip(lengths, group)
    if r.d_median is not None and np.isfinite(r.d_median)
  ]
  if shown_d:
    x, y, low, high = (np.array(v, float) for v in zip(*shown_d))
    bounded_high = np.where(np.isfinite(high), high, y)
    bounded_low = np.where(np.isfinite(low), low, y)
    ax.errorbar(
      x,
      y,
      yerr=[y - bounded_low, bounded_high - y],
      fmt="none",
      ecolor=color,
      elinewidth=1.2,
      capsize=3,
    )
    top = float(np.max(bounded_high))
  quantile = [
    (x, r.d_quantile)
    for x, r in zip(lengths, group)
    if r.d_quantile is not None and np.isfinite(r.d_quantile)
  ]
  if quantile:
    ax.plot(*zip(*quantile), "D", color=color, ms=4, mfc="none", mew=1)
    top = max(top, max(q for _, q in quantile))
  return top, bool(quantile)


def _draw_laws(ax, lengths: np.ndarray, fit, name: str, estimator: str, color) -> None:
  """The log law (solid) and the power law (dash-dotted) fitted to one series, with the
  preferred law in the power law's label."""
  xs = np.geomspace(lengths.min(), lengths.max(), 200)
  ax.plot(
    xs,
    fit.log.predict(xs),
    "-",
    color=color,
    lw=2,
    label=f"{name}: {_law_label(fit)}" if name else _law_label(fit),
  )
  ax.plot(
    xs,
    fit.power.predict(xs),
    "-.",
    color=color,
    lw=1,
    label=f"power: {_ESTIMATOR_NAMES[estimator]} = {fit.power.constant:.3g}·"
    f"L^{fit.power.param:.2f}; preferred: {fit.preferred} "
    f"(ΔAIC = {fit.delta_aic:.1f})",
  )


def _d_vs_length_axes(fig: Figure, linear, log, shown: Sequence[Record], top: float) -> None:
  """Scales, limits, the d = L line, labels and titles of figure (a)'s two panels."""
  lengths = [r.params["length"] for r in shown]
  low, high = float(min(lengths)), float(max(lengths))
  linear.set_ylim(0, 1.15 * top)
  _identity_line(linear, low, min(high, 1.15 * top))
  _identity_line(log, low, high)
  for ax in (linear, log):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length L")
    ax.grid(True, which="major", alpha=0.3)
  linear.set_ylabel("d_50: median threshold d*_t, 95% interval (bars)")
  log.set_yscale("log", base=2)
  log.set_ylabel("d_min (log scale)")
  titles = (
    "(a) d_50 and d_{1−δ} (◇) against L; laws fitted to d_50 by weighted least squares",
    "d_min (≥ 1 − δ of trials verify) and the provable jl_dim (dashed)",
  )
  for ax, title in zip((linear, log), titles):
    ax.set_title(wrapped(title, fig.get_figwidth() / 2, 10), fontsize=10)


def figure_d_vs_length(records: Sequence[Record]) -> Figure | None:
  """(a) d against L (log₂ axis). Left: the median threshold d_50 with its 95% order-statistic
  bars, d_{1−δ} (diamonds), and both laws fitted to d_50 (solid: log, dash-dotted: power),
  with the preferred law; points without per-trial data fall back to d_min and its OLS fit.
  Right: d_min on a log d axis with the provable ``jl_dim`` dashed. With
  several seeds, the smallest seed's series only. Steps: ``_draw_length_series``
  (``_draw_intervals``, ``_draw_laws``), ``_d_vs_length_axes``, ``_d_vs_length_legends``.
  """
  first_seed = min((r.seed for r in records), default=0)
  records = [r for r in records if r.seed == first_seed]  # one seed: fit.csv has every seed
  groups = series(records, "length")
  if not groups:
    return None
  fitted = {(f.key, f.estimator): f for f in fits(records)}
  varying, shared = _varying(list(groups))
  shown = [r for g in groups.values() for r in g]
  settings, note = _settings(shown)
  fig = Figure(figsize=(13, 6.4), layout="constrained")
  linear, log = fig.subplots(1, 2, sharex=True)
  drawn = [
    _draw_length_series(
      linear,
      log,
      group,
      _COLORS[i % len(_COLORS)],
      label(key, varying) or label(key, ("method",)),
      {e: fitted.get((key, e)) for e in ("d_median", "d_min")},
      note,
    )
    for i, (key, group) in enumerate(groups.items())
  ]
  _d_vs_length_axes(fig, linear, log, shown, max(0.0, *(d.top for d in drawn)))
  _d_vs_length_legends(linear, log, drawn)
  fig.suptitle(
    wrapped(
      f"{label(next(iter(groups)), [n for n in shared if n != 'seed'])}; {settings}",
      fig.get_figwidth(),
      10,
    ),
    fontsize=10,
  )
  return fig


class _SeriesDrawn(NamedTuple):
  """What ``_draw_length_series`` drew of one series, for the axes and the legends."""

  linear_kinds: set[str]  # kinds of point on the left panel (``_KINDS``)
  log_kinds: set[str]  # and on the right
  top: float  # the highest d drawn
  bound: bool  # whether its jl_dim was drawn
  quantile: bool  # whether a d_{1−δ} diamond was
  estimator: str  # "d_median" (per-trial data) or "d_min"


def _draw_length_series(
  linear,
  log,
  group: list[Record],
  color: str,
  name: str,
  fitted: dict[str, SeriesFit | None],
  note: Callable[[Record], str],
) -> _SeriesDrawn:
  """One series of figure (a): its d_50 (or d_min) on the left with its intervals, quantiles
  and the laws fitted to it (``fitted`` per estimator), its d_min on the right with jl_dim."""
  lengths = np.array([r.params["length"] for r in group], float)
  per_trial = all(r.d_median is not None for r in group)
  estimator = "d_median" if per_trial else "d_min"
  fit = fitted[estimator]
  left = _mark_points(
    linear,
    lengths,
    group,
    color,
    [r.d_median if per_trial else r.d_min for r in group],
    line=False,
    label=None if fit else f"{name} (too few points to fit)",
  )
  right = _mark_points(log, lengths, group, color, notes=[note(r) for r in group], label=name)
  top, quantile = max(_plotted_d(r) for r in group), False
  if per_trial:
    interval_top, quantile = _draw_intervals(linear, lengths, group, color)
    top = max(top, interval_top)
  if fit is not None:
    _draw_laws(linear, lengths, fit, name, estimator, color)
  jl_dim = [(r.params["length"], r.jl_dim) for r in group if r.jl_dim is not None]
  if jl_dim:
    log.plot(*zip(*jl_dim), "--", color=color, lw=1.2)
  return _SeriesDrawn(left, right, top, bool(jl_dim), quantile, estimator)


def _d_vs_length_legends(linear, log, drawn: list[_SeriesDrawn]) -> None:
  """Figure (a)'s legends under its panels: the series, the kinds of point, d_{1−δ} and jl_dim
  where drawn."""
  left = set().union(*(d.linear_kinds for d in drawn))
  right = set().union(*(d.log_kinds for d in drawn))
  estimators = {d.estimator for d in drawn}
  diamond = [
    Line2D(
      [],
      [],
      ls="",
      marker="D",
      mfc="none",
      color="k",
      ms=4,
      label="d_{1−δ}: (1−δ)-quantile of d*_t",
    )
  ]
  diamond = diamond if any(d.quantile for d in drawn) else []
  _legend_below(
    linear,
    linear.get_legend_handles_labels()[0]
    + _marker_handles(left, False, "d_50" if estimators == {"d_median"} else "d")
    + diamond,
  )
  _legend_below(
    log,
    log.get_legend_handles_labels()[0] + _marker_handles(right, any(d.bound for d in drawn)),
    ncols=2,
  )


def _figure_against(
  records: Sequence[Record], x: str, xlabel: str, title: str, log_x: bool
) -> Figure | None:
  """d_min against field ``x``, one curve per series, jl_dim dashed."""
  groups = series(records, x)
  if not groups:
    return None
  varying, shared = _varying(list(groups))
  shown = [r for g in groups.values() for r in g]
  settings, note = _settings(shown)
  fig = Figure(figsize=(6.4, 5.4), layout="constrained")
  ax = fig.add_subplot()
  kinds, bound = set(), False
  for i, (key, group) in enumerate(groups.items()):
    color = _COLORS[i % len(_COLORS)]
    xs = np.array([r.params[x] for r in group], float)
    kinds |= _mark_points(
      ax,
      xs,
      group,
      color,
      notes=[note(r) for r in group],
      label=label(key, varying) or label(key, ("method",)),
    )
    jl_dim = [(r.params[x], r.jl_dim) for r in group if r.jl_dim is not None]
    if jl_dim:
      ax.plot(*zip(*jl_dim), "--", color=color, lw=1.2)
      bound = True
  if log_x:
    ax.set_xscale("log", base=2)
  _data_ticks(ax, [r.params[x] for r in shown])
  ax.set_yscale("log", base=2)
  ax.set_xlabel(xlabel)
  ax.set_ylabel("minimal dimension d_min")
  ax.grid(True, which="major", alpha=0.3)
  fixed = label(next(iter(groups)), [n for n in shared if n != "seed"])
  fig.suptitle(wrapped(f"{title}\n{fixed}\n{settings}", fig.get_figwidth(), 9), fontsize=9)
  outside_legend(fig, ax.get_legend_handles_labels()[0] + _marker_handles(kinds, bound))
  return fig


def figure_d_vs_nnz(records: Sequence[Record]) -> Figure | None:
  """(b) d_min against N at fixed L."""
  return _figure_against(
    records, "nnz", "nonzeros per row and column N", "(b) d_min against N", log_x=False
  )


def figure_d_vs_eps1(records: Sequence[Record]) -> Figure | None:
  """(c) d_min against ε1 (log₂ axis)."""
  return _figure_against(records, "eps1", "ratio tolerance ε1", "(c) d_min against ε1", log_x=True)


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
  fig = Figure(figsize=(6.4, 5.2), layout="constrained")
  ax = fig.add_subplot()
  delta = record.params["delta"]
  errors = np.stack([record.rate - record.ci_low, record.ci_high - record.rate])
  ax.errorbar(
    record.d,
    record.rate,
    yerr=errors,
    fmt="o-",
    color="tab:blue",
    capsize=3,
    label=f"success rate over T = {record.trials} trials, 95% CI",
  )
  ax.axhline(1 - delta, color="tab:red", ls="--", lw=1.2, label=f"threshold 1 − δ = {1 - delta:g}")
  if record.d_min is not None:
    ax.axvline(record.d_min, color="k", ls=":", lw=1.2, label=f"d_min = {record.d_min}")
  ax.set_xscale("log", base=2)
  _data_ticks(ax, record.d)
  ax.tick_params(axis="x", labelrotation=60, labelsize=7)
  ax.set_ylim(-0.03, 1.03)
  ax.set_xlabel("dimension d")
  ax.set_ylabel("fraction of trials that verify")
  shown = [
    n for n in ("family", "method", "length", "nnz", "a_min", "eps1", "eps2") if n in record.params
  ]
  fig.suptitle(
    wrapped(
      "(d) success rate against d\n"
      + label(tuple((n, record.params[n]) for n in shown), shown)
      + f", seed {record.seed}",
      fig.get_figwidth(),
      9,
    ),
    fontsize=9,
  )
  ax.grid(True, alpha=0.3)
  outside_legend(fig, ax.get_legend_handles_labels()[0])
  return fig


def _axes_key(record: Record) -> tuple:
  """The problem of a record: its params without SETTINGS (shared by every seed and T)."""
  return tuple(sorted((k, v) for k, v in record.params.items() if k not in SETTINGS))


def paper_scans(records: Sequence[Record], reference: Sequence[Record]) -> list[tuple]:
  """(problem key, L, [scan d_min per seed, inf = not reached], top of the scans' grid,
  reference record or None) for every problem with
  single-trial points (T = 1: the paper's protocol) at ≥ 2 seeds, sorted by problem and L.

  The reference is the record of ``reference`` with the same problem, per-trial data and the
  most trials (T > 1), if any.
  """
  scans: dict[tuple, list[Record]] = {}
  for record in distinct([r for r in records if r.trials == 1]):
    scans.setdefault(_axes_key(record), []).append(record)
  best: dict[tuple, Record] = {}
  for record in distinct(reference):
    key = _axes_key(record)
    if (
      record.trials > 1
      and record.d_median is not None
      and (key not in best or record.trials > best[key].trials)
    ):
      best[key] = record
  out = []
  by_problem = lambda item: (
    repr([(k, v) for k, v in item[0] if k != "length"]),
    dict(item[0])["length"],
  )
  for key, group in sorted(scans.items(), key=by_problem):
    if len({r.seed for r in group}) >= 2:
      values = [
        float(r.d_min) if r.d_min is not None else np.inf
        for r in sorted(group, key=lambda r: r.seed)
      ]
      out.append(
        (key, dict(key)["length"], values, float(max(r.d[-1] for r in group)), best.get(key))
      )
  return out


def figure_paper_scan(records: Sequence[Record], reference: Sequence[Record] = ()) -> Figure | None:
  """(e) The paper's protocol: one trial per L and seed, first success on an ascending grid.

  Dots: the single-draw d_min of every seed (jittered in L; triangles: not
  reached, at the top of the grid). Against them, where the reference holds
  the same problem with T > 1 trials: d_50 with its 95% interval, d_{1−δ}
  (diamond) and the central 95% of that point's per-trial first successes
  (shaded), the distribution a single scan samples from.
  """
  scans = paper_scans(records, list(reference) + list(records))
  if not scans:
    return None
  fig = Figure(figsize=(7.5, 5.8), layout="constrained")
  ax = fig.add_subplot()
  rng = np.random.default_rng(0)
  problems = list(
    dict.fromkeys(tuple((k, v) for k, v in key if k != "length") for key, *_ in scans)
  )
  references = dict(
    median="reference d_50, 95% interval",
    quantile="reference d_{1−δ}",
    band="central 95% of per-trial first successes",
    missed="scan not reached (drawn at top of its d grid)",
  )
  for i, problem in enumerate(problems):
    color = _COLORS[i % len(_COLORS)]
    rows = [
      (length, values, top, ref)
      for key, length, values, top, ref in scans
      if tuple((k, v) for k, v in key if k != "length") == problem
    ]
    name: str | None = f"{label(problem, ('nnz', 'eps1'))}: one-trial scan d_min, one dot per seed"
    for length, values, top, ref in rows:
      if _draw_scan_dots(ax, length, np.array(values), top, color, name, rng, references):
        name = None  # the problem's name once, at its first dot
      if ref is not None:
        _draw_scan_reference(ax, length, ref, references)
  ax.set_xscale("log", base=2)
  _data_ticks(ax, [length for _, length, *_ in scans])
  ax.set_xlabel("sequence length L")
  ax.set_ylabel("d")
  seeds = sorted({r.seed for r in records if r.trials == 1})
  fig.suptitle(
    f"(e) the paper's protocol (T = 1 per L, ascending scan) at {len(seeds)} seeds\n"
    f"against per-trial quantiles of the same problem",
    fontsize=9,
  )
  ax.grid(True, alpha=0.3)
  outside_legend(fig, ax.get_legend_handles_labels()[0], fontsize=7)
  return fig


def _draw_scan_dots(
  ax,
  length: int,
  values: np.ndarray,
  top: float,
  color: str,
  name: str | None,
  rng: np.random.Generator,
  references: dict,
) -> bool:
  """Figure (e)'s single-scan d_min at one L, one dot per seed (jittered in L), labelled
  ``name``; the seeds not reached as triangles at the grid's ``top``. Whether a dot was drawn.
  A label of ``references`` is used once (popped)."""
  jitter = length * 2 ** rng.uniform(-0.12, 0.12, values.size)
  finite = np.isfinite(values)
  if finite.any():
    ax.plot(jitter[finite], values[finite], ".", color=color, ms=5, alpha=0.8, label=name)
  if not finite.all():
    ax.plot(
      jitter[~finite],
      np.full((~finite).sum(), top),
      "^",
      mfc="white",
      color=color,
      label=references.pop("missed", None),
    )
  return bool(finite.any())


def _draw_scan_reference(ax, length: int, ref: Any, references: dict) -> None:
  """Figure (e)'s reference at one L (``ref``: a ``Record`` with per-trial data, as
  ``paper_scans`` finds it): d_50 with its 95% interval, d_{1−δ} (diamond) and the central 95%
  of its per-trial first successes (shaded). Each label of ``references`` once."""
  low = ref.d_median - ref.d_median_low if np.isfinite(ref.d_median_low) else 0
  high = ref.d_median_high - ref.d_median if np.isfinite(ref.d_median_high) else 0
  ax.errorbar(
    [length],
    [ref.d_median],
    yerr=[[low], [high]],
    fmt="s",
    color="k",
    ms=4,
    capsize=3,
    zorder=3,
    label=references.pop("median", None),
  )
  if np.isfinite(ref.d_quantile):
    ax.plot(
      [length],
      [ref.d_quantile],
      "D",
      mfc="none",
      color="k",
      ms=5,
      zorder=3,
      label=references.pop("quantile", None),
    )
  first = ref.first_success[np.isfinite(ref.first_success)]
  if first.size:
    lo, hi = np.quantile(first, [0.025, 0.975])
    ax.fill_between(
      [length / 2**0.2, length * 2**0.2],
      lo,
      hi,
      color="gray",
      alpha=0.25,
      lw=0,
      label=references.pop("band", None),
    )


FIGURES = {
  "a_d_vs_length": figure_d_vs_length,
  "b_d_vs_nnz": figure_d_vs_nnz,
  "c_d_vs_eps1": figure_d_vs_eps1,
  "d_success_rate": figure_success_rate,
}


class FitRow(NamedTuple):
  """One row of the fit table: one law fitted to one estimator of one series."""

  series: str
  law: str  # "log: d = a ln L + b" or "power: d = c L^alpha"
  param: float  # a or alpha
  ci_low: float
  ci_high: float
  constant: float  # b or c
  r2: float  # on d
  n: int
  not_reached: int  # points left out: not reached, unbounded interval or no per-trial data
  d_ge_L: int  # fitted points with d ≥ L
  estimator: str  # "d_median" | "d_quantile" (weighted fit) | "d_min" (OLS)
  preferred: str  # "log" | "power" | "undecided": the same on both rows of a series and estimator
  delta_aic: float  # the criterion: ΔAIC = AIC_power − AIC_log (plots.fit)
  constant_low: float
  constant_high: float
  chi2: float  # weighted χ² (nan for d_min)
  dof: int
  p_value: float  # P(χ²_dof ≥ chi2) (nan for d_min)


def fit_table(records: Sequence[Record]) -> list[FitRow]:
  """Rows of both laws for every series over L and estimator (``fits``)."""
  rows, found = [], fits(records)
  layered = any(dict(fit.key).get("causal") for fit in found)  # then name both layers
  for fit in found:
    names = [n for n, _ in fit.key]
    name = label(fit.key, names + (["causal"] if layered and "causal" not in names else []))
    for law, line in (("log: d = a ln L + b", fit.log), ("power: d = c L^alpha", fit.power)):
      low, high, chi2, p_value = (
        (line.constant_low, line.constant_high, line.chi2, line.p_value)
        if isinstance(line, WeightedFit)
        else (float("nan"),) * 4
      )
      rows.append(
        FitRow(
          name,
          law,
          line.param,
          line.param_low,
          line.param_high,
          line.constant,
          line.r2,
          line.n,
          fit.counts["not_reached"],
          fit.counts["d_ge_L"],
          fit.estimator,
          fit.preferred,
          fit.delta_aic,
          low,
          high,
          chi2,
          line.n - 2,
          p_value,
        )
      )
  return rows


def format_fit_table(rows: Sequence[FitRow]) -> str:
  """The fit table as aligned text, grouped by series, one block per estimator."""
  if not rows:
    return "no series over L with >= 3 fitted points: nothing to fit"
  header = (
    f"{'estimator':<10} {'law':<21} {'a|alpha':>8} {'95% CI':>18} {'b|c':>9} "
    f"{'chi2/dof':>10} {'p':>7} {'R2(d)':>6} {'n':>3} {'left':>4} {'d>=L':>4}  preferred"
  )
  lines = []
  for name in dict.fromkeys(r.series for r in rows):
    lines += [name, header]
    for r in (r for r in rows if r.series == name):
      ci = f"[{r.ci_low:.3g}, {r.ci_high:.3g}]"
      chi2 = "-" if np.isnan(r.chi2) else f"{r.chi2:.1f}/{r.dof}"
      p = "-" if np.isnan(r.p_value) else f"{r.p_value:.2g}"
      lines.append(
        f"{r.estimator:<10} {r.law:<21} {r.param:>8.3g} {ci:>18} {r.constant:>9.4g} "
        f"{chi2:>10} {p:>7} {r.r2:>6.3f} {r.n:>3} {r.not_reached:>4} {r.d_ge_L:>4}  "
        f"{r.preferred} (ΔAIC {r.delta_aic:+.1f})"
      )
  return "\n".join(lines)
