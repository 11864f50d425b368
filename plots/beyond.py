"""Fits, figures and tables of ``python -m bench beyond`` (``jaxattn_bench.beyond.collect``'s data).

``fit_slopes`` fits d_min = a ln L + b per method; ``figures`` draws
d_min against ln L with the fitted slopes, and the logit range against L;
``tables`` prints the README "Beyond the paper" tables (Markdown).
"""

from __future__ import annotations

import pathlib

import numpy as np
from matplotlib.figure import Figure

from jaxattn_plots.figures import outside_legend, wrapped
from jaxattn_plots.fit import fit_log_law


def fit_slopes(data: dict) -> dict:
  """Per method, d_min = a ln L + b over the reached points (None below 3 lengths)."""
  slopes = {}
  for method, rows in data["main"].items():
    reached = [e for e in rows if e["d_min"] is not None]
    if len({e["length"] for e in reached}) < 3:
      slopes[method] = None
      continue
    fit = fit_log_law(np.array([e["length"] for e in reached], float),
                      np.array([e["d_min"] for e in reached], float))
    slopes[method] = dict(slope=fit.param, low=fit.param_low, high=fit.param_high,
                          intercept=fit.constant, r2=fit.r2, n=fit.n)
  return slopes


def figures(data: dict, out: pathlib.Path) -> list[pathlib.Path]:
  """``dmin_vs_lnL.png`` and ``logit_range.png`` in ``out`` (``figure_dmin`` and
  ``figure_logit_range``); returns their paths."""
  written = []
  for name, make in (("dmin_vs_lnL.png", figure_dmin), ("logit_range.png", figure_logit_range)):
    make(data).savefig(out / name, dpi=130)
    written.append(out / name)
  return written


def figure_dmin(data: dict) -> Figure:
  """d_min against ln L per method, with the fitted d_min = a ln L + b; triangles not reached."""
  fig, ax = _figure()
  for i, (method, rows) in enumerate(data["main"].items()):
    color = f"C{i}"
    reached = [(np.log(e["length"]), e["d_min"]) for e in rows if e["d_min"] is not None]
    missed = [(np.log(e["length"]), e["top"]) for e in rows if e["d_min"] is None]
    fit = data["fit"][method]
    name = method if fit is None else (
        f"{method}: slope {fit['slope']:.1f} [{fit['low']:.1f}, {fit['high']:.1f}]")
    if reached:
      ax.plot(*zip(*reached), "o", color=color, label=name)
    if missed:
      ax.plot(*zip(*missed), "^", mfc="white", color=color,
              label=f"{method}: not reached (top of grid)")
    if fit is not None:
      xs = np.linspace(min(x for x, _ in reached), max(x for x, _ in reached), 50)
      ax.plot(xs, np.maximum(fit["intercept"] + fit["slope"] * xs, 1.0), "-", color=color, lw=1)
  ax.set_yscale("log", base=2)
  return _finish(fig, ax, "ln L", "d_min",
                 "d_min against ln L; slope a of d = a ln L + b (95% CI)", title_size=9,
                 legend_size=8)


def figure_logit_range(data: dict) -> Figure:
  """The largest |logit| a verified solution needs against L, per method and for moment_curve
  at d = 2N; grey verticals: the largest L where moment_curve verifies per dtype."""
  fig, ax = _figure()
  for method, rows in data["main"].items():
    points = [(e["length"], e["logit_range"]) for e in rows if e["logit_range"] is not None]
    if points:
      ax.plot(*zip(*points), "o-", label=f"{method} at d_min (N=2)")
  for name, entry in data["curve"].items():
    points = sorted((int(n), r) for n, r in entry["logit_range"].items())
    if points:
      ax.plot(*zip(*points), "s--", lw=1, ms=4,
              label=f"moment_curve d=2N, {name.split()[0]} (float64)")
  for dtype, style in (("float32", ":"), ("float64", "-.")):
    limits = [e["largest"] for k, e in data["curve"].items() if k.endswith(dtype) and e["largest"]]
    for limit in limits:
      ax.axvline(limit, ls=style, color="gray", lw=0.8)
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  return _finish(fig, ax, "L", "max |logit| needed",
                 "logit range; grey lines: largest L where moment_curve verifies "
                 "(dotted float32, dash-dot float64)", title_size=8, legend_size=7)


def _figure() -> tuple[Figure, object]:
  fig = Figure(figsize=(6.8, 5.6), layout="constrained")
  return fig, fig.subplots()


def _finish(fig: Figure, ax, xlabel: str, ylabel: str, title: str, *, title_size: int,
            legend_size: int) -> Figure:
  """Labels, a title that fits, a legend under the axes and the grid of ``ax``; ``fig``."""
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(wrapped(title, fig.get_figwidth(), title_size), fontsize=title_size)
  outside_legend(fig, ax.get_legend_handles_labels()[0], fontsize=legend_size)
  ax.grid(True, alpha=0.3)
  return fig


def tables(data: dict) -> str:
  """The README "Beyond the paper" tables (Markdown)."""
  show = lambda value: "—" if value is None else str(value)
  methods, dtypes = list(data["main"]), list(next(iter(data["dtype"].values())))
  lengths = sorted({e["length"] for rows in data["main"].values() for e in rows})
  at = {m: {e["length"]: e for e in rows} for m, rows in data["main"].items()}

  def d_cell(method, length):
    entry = at[method].get(length)
    if entry is None:
      return "n/a"
    return show(entry["d_min"]) if entry["d_min"] is not None else f"> {entry['top']}"

  lines = ["| L | " + " | ".join(methods) + " | jl / lstsq |",
           "|---:|" + "---:|" * (len(methods) + 1)]
  for length in lengths:
    jl, lstsq = (at[m].get(length, {}).get("d_min") for m in ("jl", "lstsq"))
    ratio = f"{jl / lstsq:.0f}×" if jl and lstsq else "—"
    lines.append(f"| {length} | " + " | ".join(d_cell(m, length) for m in methods)
                 + f" | {ratio} |")
  slopes = [f"{m} {f['slope']:.1f} [{f['low']:.1f}, {f['high']:.1f}]"
            for m, f in data["fit"].items() if f is not None]
  lines += ["", "Fitted slope a of d_min = a ln L + b (95% CI): " + "; ".join(slopes) + ".", ""]
  lines += ["| L | " + " | ".join(f"max\\|ℓ\\| {m}" for m in methods)
            + " | optimize: Adam steps | optimize: s / trial |",
            "|---:|" + "---:|" * (len(methods) + 2)]
  for length in lengths:
    cells = []
    for method in methods:
      value = at[method].get(length, {}).get("logit_range")
      cells.append("—" if value is None else f"{value:.3g}")
    steps = at["optimize"].get(length, {}).get("optimize")
    cells += ["—", "—"] if steps is None else [f"{steps['steps']:.0f}", f"{steps['seconds']:.2f}"]
    lines.append(f"| {length} | " + " | ".join(cells) + " |")
  lines += ["", "| moment_curve, d = 2N | largest L verified | first L failing | "
            "max\\|ℓ\\| at largest L |", "|---|---:|---:|---:|"]
  for name, entry in data["curve"].items():
    nnz = name.split()[0]
    exact = data["curve"][f"{nnz} float64"]["logit_range"]
    largest = entry["largest"]
    logit = "—" if largest is None or largest not in exact else f"{exact[largest]:.3g}"
    first = show(entry["first_failure"]) if entry["first_failure"] else \
        f"none ≤ {entry['tested_up_to']}"
    lines.append(f"| {name} | {show(largest)} | {first} | {logit} |")
  lines += ["", f"| d_min at L = {data['dtype_length']}, N = 2 | " + " | ".join(dtypes) + " |",
            "|---|" + "---:|" * len(dtypes)]
  for method in methods:
    lines.append(f"| {method} | " + " | ".join(show(data["dtype"][method][t]) for t in dtypes)
                 + " |")
  return "\n".join(lines)
