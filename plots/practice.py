"""Fits, figures and the table of ``python -m bench practice`` (from ``practice.collect``'s data).

``fit_rows`` fits d_50 against L per (family, layer, method) by both laws, d = a ln L
+ b and d = c L^α, by weighted least squares (σ: half the 95% interval, at
least half the local grid step, as for the runner's figure (a)), and names
the ``preferred`` law as the main job does (``fit.weighted_preference``:
ΔAIC ≥ 10 either way, else "undecided"), where ≥ 3 points at distinct L have
a bounded d_50 above their grid's bottom. ``global_slope`` is the cost in d
of one global token: the weighted fit of d_50 = a·g + b. ``table`` prints
"family × L × layer → d_50 per method [95% interval]" (layer: the
bidirectional one, or the causal one of docs/causal.md); ``figures`` draws d_50 against
L, window and g with the head dimensions used in practice (64, 128).
"""

from __future__ import annotations

import pathlib

import numpy as np
from matplotlib.figure import Figure

from jaxattn_plots.beyond import fitted_points, law_fits
from jaxattn_plots.figures import grid_sigma, outside_legend

PRACTICE_D = (64, 128)  # head dimensions of published models: reference lines


def _sigmas(points: list[dict]) -> np.ndarray:
  return np.array(
    [grid_sigma(e["d_grid"], e["d_median"], e["d_median_low"], e["d_median_high"]) for e in points]
  )


def fit_rows(data: dict) -> dict:
  """Per "family | layer | method" of the length series: both laws' fits and the preferred law
  (None below 3 fitted points at distinct L; ``beyond.law_fits``)."""
  rows: dict[str, dict | None] = {}
  for series, entries in data["length"].items():
    fits = law_fits(fitted_points(entries))
    if fits is None:
      rows[series] = None
      continue
    log_fit, power_fit, preferred, delta = fits
    rows[series] = dict(
      slope=log_fit.param,
      slope_low=log_fit.param_low,
      slope_high=log_fit.param_high,
      alpha=power_fit.param,
      alpha_low=power_fit.param_low,
      alpha_high=power_fit.param_high,
      preferred=preferred,
      delta_aic=delta,
      n=log_fit.n,
    )
  return rows


def global_slope(entries: list[dict]) -> dict | None:
  """d_50 = a·g + b by weighted least squares over the fitted points (None below 3 distinct g)."""
  points = fitted_points(entries)
  if len({e["globals"] for e in points}) < 3:
    return None
  g = np.array([e["globals"] for e in points], float)
  d = np.array([e["d_median"] for e in points], float)
  sigma = _sigmas(points)
  design = np.stack([g, np.ones_like(g)], axis=-1) / sigma[:, None]
  (slope, intercept), *_ = np.linalg.lstsq(design, d / sigma, rcond=None)
  covariance = np.linalg.inv(design.T @ design)
  half = 1.96 * float(np.sqrt(covariance[0, 0]))
  return dict(
    slope=float(slope),
    low=float(slope - half),
    high=float(slope + half),
    intercept=float(intercept),
    n=len(points),
  )


def _cell(entry: dict | None) -> str:
  """'d_50 [low, high]'; '> top' when not reached; '≤ d' at the grid's bottom; '' when absent."""
  if entry is None:
    return ""
  if entry["d_median"] is None:
    return f"> {entry['top']}"
  if entry["d_median"] == entry["d_grid"][0]:
    return f"≤ {entry['d_median']:.0f}"
  low, high = (
    ("-" if entry[k] is None else f"{entry[k]:.0f}") for k in ("d_median_low", "d_median_high")
  )
  return f"{entry['d_median']:.0f} [{low}, {high}]"


def table(data: dict, fits: dict) -> str:
  """Markdown: one row per (family, L, layer), one column per method (d_50 [95% interval]), the
  theorem label, and per (family, layer, method) the log-law slope and the preferred law. A
  causal family judged in both layers has its two rows side by side."""
  keys = [tuple(s.split(" | ")) for s in data["points"]]
  methods = sorted({method for _, _, method in keys})
  lines = [
    "| family | L | layer | N (row, column) | theorem | "
    + " | ".join(f"{m} d_50 [95%]" for m in methods)
    + " |",
    "|" + "---|" * (5 + len(methods)),
  ]
  for family in sorted({family for family, _, _ in keys}):
    rows: dict[tuple[int, str], dict] = {}
    for layer in ("bidirectional", "causal"):
      for m in methods:
        for e in data["points"].get(f"{family} | {layer} | {m}", []):
          rows.setdefault((e["length"], layer), {})[m] = e
    for (length, layer), by_method in sorted(rows.items()):
      some = next(iter(by_method.values()))
      label = "inside" if some["inside_theorem"] else "outside"
      cells = " | ".join(_cell(by_method.get(m)) for m in methods)
      lines.append(
        f"| {family} | {length} | {layer} | {some['row_bound']}, "
        f"{some['column_bound']} | {label} | {cells} |"
      )
  lines += [
    "",
    "| family | layer | method | slope a of d_50 = a ln L + b [95%] "
    "| α of d_50 = c L^α [95%] | preferred | n |",
    "|---|---|---|---|---|---|---|",
  ]
  for series, fit in fits.items():
    family, layer, method = series.split(" | ")
    if fit is None:
      lines.append(f"| {family} | {layer} | {method} | fewer than 3 bounded points | | | |")
    else:
      lines.append(
        f"| {family} | {layer} | {method} | {fit['slope']:.1f} [{fit['slope_low']:.1f}, "
        f"{fit['slope_high']:.1f}] | {fit['alpha']:.2f} [{fit['alpha_low']:.2f}, "
        f"{fit['alpha_high']:.2f}] | {fit['preferred']} | {fit['n']} |"
      )
  return "\n".join(lines)


def figures(data: dict, out: pathlib.Path) -> list[pathlib.Path]:
  """``d_vs_length.png``, ``d_vs_window.png`` and ``d_vs_globals.png`` in ``out``; their paths."""
  written = []
  for name, series, x, xlabel in (
    ("d_vs_length.png", "length", "length", "L"),
    ("d_vs_window.png", "window", "window", "Longformer window w (2w + 1 keys)"),
    ("d_vs_globals.png", "globals", "globals", "global tokens g (symmetric log scale)"),
  ):
    if data[series]:
      figure_against(data[series], x, xlabel).savefig(out / name, dpi=130)
      written.append(out / name)
  return written


def figure_against(series: dict, x: str, xlabel: str) -> Figure:
  """d_50 with its 95% interval against ``x`` per series; open triangles: not reached (drawn
  at the grid's top); grey lines at d = 64 and 128; against L, the reference d = L of the
  method onehot (every pattern verifies there). The x axis is log₂, symmetric-log for g (g = 0)."""
  fig = Figure(figsize=(7.2, 5.8), layout="constrained")
  ax = fig.subplots()
  xs_all = sorted({e[x] for entries in series.values() for e in entries})
  for i, (name, entries) in enumerate(series.items()):
    color, marker = f"C{i % 10}", "osD^v<>"[i // 10 % 7]
    reached = [e for e in entries if e["d_median"] is not None]
    if reached:
      y = np.array([e["d_median"] for e in reached], float)
      low = np.array(
        [v if e["d_median_low"] is None else e["d_median_low"] for v, e in zip(y, reached)]
      )
      high = np.array(
        [v if e["d_median_high"] is None else e["d_median_high"] for v, e in zip(y, reached)]
      )
      ax.errorbar(
        [e[x] for e in reached],
        y,
        yerr=[y - low, high - y],
        fmt=marker + "-",
        color=color,
        capsize=3,
        lw=1,
        label=name,
      )
    missed = [(e[x], e["top"]) for e in entries if e["d_median"] is None]
    if missed:
      ax.plot(
        *zip(*missed),
        "^",
        mfc="white",
        color=color,
        label=None if reached else f"{name} (not reached)",
      )
  for d, style in zip(PRACTICE_D, (":", "--")):
    ax.axhline(d, color="gray", ls=style, lw=1, label=f"d = {d} (head dimension in practice)")
  if x == "length":
    ax.plot(xs_all, xs_all, "k-", lw=0.8, label="d = L (onehot reference: always verifies)")
  if x == "globals":
    ax.set_xscale("symlog", base=2, linthresh=1)
  else:
    ax.set_xscale("log", base=2)
  ax.set_yscale("log", base=2)
  ax.set_xlabel(xlabel)
  ax.set_ylabel("d_50 (95% interval)")
  ax.set_title("median threshold d_50; ^: above the grid's top", fontsize=9)
  outside_legend(fig, ax.get_legend_handles_labels()[0], fontsize=7)
  return fig


def slope_lines(slopes: dict) -> str:
  """One line per global-token series: the cost in d of one global token (``global_slope``)."""
  lines = ["Cost of a global token (d_50 = a·g + b, weighted least squares, 95% interval):"]
  for series, fit in slopes.items():
    lines.append(
      f"- {series}: "
      + (
        "fewer than 3 bounded points"
        if fit is None
        else f"a = {fit['slope']:.2f} [{fit['low']:.2f}, {fit['high']:.2f}] per token, "
        f"b = {fit['intercept']:.1f} (n = {fit['n']})"
      )
    )
  return "\n".join(lines)
