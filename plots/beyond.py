"""Fits, figures and tables of ``python -m bench beyond`` (``jaxattn_bench.beyond.collect``'s data).

``fit_slopes`` fits d_50 = a ln L + b per method by weighted least squares
(σ: half the 95% interval, at least half the local grid step, as for the
runner's figure (a)); ``figures`` draws d_50 with its interval against ln L
with the fitted slopes, and the logit range against L; ``tables`` prints
the "Beyond the paper" tables of docs/beyond.md (Markdown).
"""

from __future__ import annotations

import pathlib

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from jaxattn_plots.figures import grid_sigma, outside_legend, wrapped
from jaxattn_plots.fit import fit_weighted, weighted_preference


def fitted_points(rows: list[dict]) -> list[dict]:
  """The entries a fit uses: d_50 reached and its interval bounded on both sides, its low end
  above the grid's bottom d (a trial that verifies there only bounds its threshold: ≤ d)."""
  return [
    e
    for e in rows
    if None not in (e["d_median"], e["d_median_low"], e["d_median_high"])
    and e["d_median_low"] > e["d_grid"][0]
  ]


def law_fits(points: list[dict]):
  """(log fit, power fit, preferred law, ΔAIC) of d_50 against L over ``points`` (weighted
  least squares, σ from the grid: ``grid_sigma``; ``weighted_preference``), None below 3
  distinct L."""
  if len({e["length"] for e in points}) < 3:
    return None
  sigmas = np.array(
    [grid_sigma(e["d_grid"], e["d_median"], e["d_median_low"], e["d_median_high"]) for e in points]
  )
  length, d = (np.array([e[k] for e in points], float) for k in ("length", "d_median"))
  log_fit, power_fit = (fit_weighted(law, length, d, sigmas) for law in ("log", "power"))
  return (log_fit, power_fit, *weighted_preference(log_fit, power_fit))


def fit_slopes(data: dict) -> dict:
  """Per method, d_50 = a ln L + b by weighted least squares over ``fitted_points``
  (None below 3 lengths), with the main job's log-vs-power verdict ``preferred`` and its ΔAIC
  (``law_fits``)."""
  slopes: dict[str, dict | None] = {}
  for method, rows in data["main"].items():
    points = fitted_points(rows)
    fits = law_fits(points)
    if fits is None:
      slopes[method] = None
      continue
    fit, _, preferred, delta_aic = fits
    slopes[method] = dict(
      slope=fit.param,
      low=fit.param_low,
      high=fit.param_high,
      intercept=fit.constant,
      chi2=fit.chi2,
      dof=fit.dof,
      n=fit.n,
      lengths=[min(e["length"] for e in points), max(e["length"] for e in points)],
      preferred=preferred,
      delta_aic=delta_aic,
    )
  return slopes


def figures(data: dict, out: pathlib.Path) -> list[pathlib.Path]:
  """``d_vs_lnL.png`` and ``logit_range.png`` in ``out`` (``figure_d50`` and
  ``figure_logit_range``); returns their paths."""
  written = []
  for name, make in (("d_vs_lnL.png", figure_d50), ("logit_range.png", figure_logit_range)):
    make(data).savefig(out / name, dpi=130)
    written.append(out / name)
  return written


def figure_d50(data: dict) -> Figure:
  """d_50 with its 95% interval (bars; an unbounded end is not drawn) against ln L per method,
  with the fitted d_50 = a ln L + b over the fitted points; triangles up: not reached (above
  the grid's top), down: d_50 at the grid's bottom (a bound, ≤ d)."""
  fig, ax = _figure()
  for i, (method, rows) in enumerate(data["main"].items()):
    color = f"C{i}"
    at_bottom = lambda e: e["d_median"] == e["d_grid"][0]
    reached = [e for e in rows if e["d_median"] is not None and not at_bottom(e)]
    missed = [(np.log(e["length"]), e["top"]) for e in rows if e["d_median"] is None]
    bounded = [
      (np.log(e["length"]), e["d_median"])
      for e in rows
      if e["d_median"] is not None and at_bottom(e)
    ]
    fit = data["fit"][method]
    name = (
      method
      if fit is None
      else (f"{method}: slope {fit['slope']:.1f} [{fit['low']:.1f}, {fit['high']:.1f}]")
    )
    if reached:
      y = np.array([e["d_median"] for e in reached], float)
      low, high = (
        np.array([v if e[end] is None else e[end] for v, e in zip(y, reached)], float)
        for end in ("d_median_low", "d_median_high")
      )
      ax.errorbar(
        np.log([e["length"] for e in reached]),
        y,
        yerr=[y - low, high - y],
        fmt="o",
        color=color,
        capsize=3,
        label=name,
      )
    if missed:
      ax.plot(
        *zip(*missed), "^", mfc="white", color=color, label=f"{method}: not reached (top of grid)"
      )
    if bounded:
      ax.plot(
        *zip(*bounded),
        "v",
        mfc="white",
        color=color,
        label=f"{method}: at the bottom of its grid (≤)",
      )
    if fit is not None:
      first, last = np.log(fit["lengths"])
      xs = np.linspace(first, last, 50)
      ax.plot(xs, np.maximum(fit["intercept"] + fit["slope"] * xs, 1.0), "-", color=color, lw=1)
  ax.set_yscale("log", base=2)
  return _finish(
    fig,
    ax,
    "ln L",
    "d_50 (95% interval)",
    "median threshold d_50 against ln L; slope a of d_50 = a ln L + b "
    "(weighted least squares, 95% CI)",
    title_size=9,
    legend_size=8,
  )


def figure_logit_range(data: dict) -> Figure:
  """The largest |logit| a verified solution needs against L, per method and for moment_curve
  at d = 2N; grey verticals: the largest L where moment_curve verifies per dtype."""
  fig, ax = _figure()
  for method, rows in data["main"].items():
    points = [(e["length"], e["logit_range"]) for e in rows if e["logit_range"] is not None]
    if points:
      ax.plot(*zip(*points), "o-", label=f"{method} at d_50 (N=2)")
  for name, entry in data["curve"].items():
    points = sorted((int(n), r) for n, r in entry["logit_range"].items())
    if points:
      ax.plot(
        *zip(*points), "s--", lw=1, ms=4, label=f"moment_curve d=2N, {name.split()[0]} (float64)"
      )
  for dtype, style in (("float32", ":"), ("float64", "-.")):
    limits = [e["largest"] for k, e in data["curve"].items() if k.endswith(dtype) and e["largest"]]
    for limit in limits:
      ax.axvline(limit, ls=style, color="gray", lw=0.8)
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  return _finish(
    fig,
    ax,
    "L",
    "max |logit| needed",
    "logit range; grey lines: largest L where moment_curve verifies "
    "(dotted float32, dash-dot float64)",
    title_size=8,
    legend_size=7,
  )


def _figure() -> tuple[Figure, Axes]:
  fig = Figure(figsize=(6.8, 5.6), layout="constrained")
  return fig, fig.subplots()


def _finish(
  fig: Figure, ax, xlabel: str, ylabel: str, title: str, *, title_size: int, legend_size: int
) -> Figure:
  """Labels, a title that fits, a legend under the axes and the grid of ``ax``; ``fig``."""
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(wrapped(title, fig.get_figwidth(), title_size), fontsize=title_size)
  outside_legend(fig, ax.get_legend_handles_labels()[0], fontsize=legend_size)
  ax.grid(True, alpha=0.3)
  return fig


def _d_cell(entry: dict | None) -> str:
  """'54 [45, 64]': d_50 and its 95% interval ('-' / 'inf': unbounded); '> top' not reached;
  '≤16' a value at the grid's bottom (trials that verify there: a bound)."""
  if entry is None:
    return "n/a"
  if entry["d_median"] is None:
    return f"> {entry['top']}"
  value = lambda v: f"≤{v:.0f}" if v == entry["d_grid"][0] else f"{v:.0f}"
  low, high = (entry["d_median_low"], entry["d_median_high"])
  return (
    f"{value(entry['d_median'])} [{'-' if low is None else value(low)}, "
    f"{'inf' if high is None else f'{high:.0f}'}]"
  )


def tables(data: dict) -> str:
  """The "Beyond the paper" tables of docs/beyond.md (Markdown): d_50 per method and L with the
  fitted slopes, the logit ranges and optimize's cost, moment_curve's reach, d_50 per dtype."""
  methods = list(data["main"])
  lengths = sorted({e["length"] for rows in data["main"].values() for e in rows})
  at = {m: {e["length"]: e for e in rows} for m, rows in data["main"].items()}
  return "\n".join(
    [
      *_d50_table(data, methods, lengths, at),
      "",
      _slopes(data),
      "",
      *_range_table(methods, lengths, at),
      "",
      *_curve_table(data),
      "",
      *_dtype_table(data, methods),
    ]
  )


def _show(value) -> str:
  """A cell: — for None, a float without decimals, anything else as written."""
  return "—" if value is None else f"{value:.0f}" if isinstance(value, float) else str(value)


def _d50_table(data: dict, methods: list, lengths: list, at: dict) -> list[str]:
  """d_50 per method and L (``_d_cell``), with T and the ratio jl / lstsq."""
  trials = {e["length"]: e["trials"] for rows in data["main"].values() for e in rows}
  lines = [
    "| L | T | " + " | ".join(methods) + " | jl / lstsq |",
    "|---:|---:|" + "---:|" * (len(methods) + 1),
  ]
  for length in lengths:
    jl, lstsq = (at[m].get(length, {}).get("d_median") for m in ("jl", "lstsq"))
    ratio = f"{jl / lstsq:.0f}×" if jl and lstsq else "—"
    lines.append(
      f"| {length} | {trials[length]} | "
      + " | ".join(_d_cell(at[m].get(length)) for m in methods)
      + f" | {ratio} |"
    )
  return lines


def _slopes(data: dict) -> str:
  """The fitted slopes of d_50 = a ln L + b per method, with their fit's figures."""
  slopes = [
    f"{m} {f['slope']:.1f} [{f['low']:.1f}, {f['high']:.1f}] (L = {f['lengths'][0]}"
    f"–{f['lengths'][1]}, χ²/dof = {f['chi2']:.1f}/{f['dof']}, preferred "
    f"{f['preferred']}, ΔAIC {f['delta_aic']:+.1f})"
    for m, f in data["fit"].items()
    if f is not None
  ]
  return (
    "Fitted slope a of d_50 = a ln L + b (weighted least squares, 95% CI): "
    + "; ".join(slopes)
    + "."
  )


def _range_table(methods: list, lengths: list, at: dict) -> list[str]:
  """max |ℓ| per method and L, and optimize's Adam steps, passes and seconds per trial."""
  lines = [
    "| L | "
    + " | ".join(f"max\\|ℓ\\| {m}" for m in methods)
    + " | optimize: Adam steps | optimize: passes | optimize: s / trial |",
    "|---:|" + "---:|" * (len(methods) + 3),
  ]
  for length in lengths:
    cells = []
    for method in methods:
      value = at[method].get(length, {}).get("logit_range")
      cells.append("—" if value is None else f"{value:.3g}")
    cost = at["optimize"].get(length, {}).get("optimize")
    cells += (
      ["—"] * 3
      if cost is None
      else [f"{cost['steps']:.0f}", f"{cost['passes']:.0f}", f"{cost['seconds']:.2f}"]
    )
    lines.append(f"| {length} | " + " | ".join(cells) + " |")
  return lines


def _curve_table(data: dict) -> list[str]:
  """moment_curve at d = 2N: the largest L verified, the first failing, max |ℓ| there."""
  lines = [
    "| moment_curve, d = 2N | largest L verified | first L failing | max\\|ℓ\\| at largest L |",
    "|---|---:|---:|---:|",
  ]
  for name, entry in data["curve"].items():
    nnz = name.split()[0]
    exact = data["curve"][f"{nnz} float64"]["logit_range"]
    largest = entry["largest"]
    logit = "—" if largest is None or largest not in exact else f"{exact[largest]:.3g}"
    first = (
      _show(entry["first_failure"]) if entry["first_failure"] else f"none ≤ {entry['tested_up_to']}"
    )
    lines.append(f"| {name} | {_show(largest)} | {first} | {logit} |")
  return lines


def _dtype_table(data: dict, methods: list) -> list[str]:
  """d_50 per method and evaluation dtype at one L, N = 2."""
  dtypes = list(next(iter(data["dtype"].values())))
  lines = [
    f"| d_50 at L = {data['dtype_length']}, N = 2 | " + " | ".join(dtypes) + " |",
    "|---|" + "---:|" * len(dtypes),
  ]
  for method in methods:
    lines.append(
      f"| {method} | " + " | ".join(_show(data["dtype"][method][t]) for t in dtypes) + " |"
    )
  return lines
