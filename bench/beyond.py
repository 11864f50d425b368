"""``python -m bench beyond``: the constructions beyond the paper, side by side.

Runs the ``beyond`` preset through the grid runner (``bench.run``: resumable
results store, the runner's figures and fit table), then adds what the
runner does not measure and prints the README "Beyond the paper" tables:

1. d_min against L for every method (float32, N = 2, ε1 = ε2 = 0.5,
   a_min = 0.2): ``dmin_vs_lnL.png`` with each method's fitted slope a of
   d_min = a ln L + b in the legend, and the ratio jl / lstsq.
2. The logit range max|ℓ| (``Report.max_abs_logit``) each method needs at
   its d_min, on the very trials of the search (same keys), against L:
   ``logit_range.png``; for ``optimize`` also the Adam steps and time.
3. ``moment_curve`` at d = 2N: the largest L at which every trial verifies,
   in float32 and float64, for N = 1 and 2, and the logit range it needs.
4. Precision as an axis: d_min per method and dtype at L = 256.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import jaxattn as ja
from bench import grid, run
from bench.store import ResultsStore
from plots.figures import distinct
from plots.fit import LawFit, fit_log_law

PRESET = "beyond"
METHODS = ("jl", "lstsq", "optimize", "moment_curve")
DTYPES = ("bfloat16", "float32", "float64")
MAIN = dict(nnz=2, dtype="float32", trials=8)  # the d_min-against-L series
CURVE_TRIALS = 4                                # the moment_curve precision series
DTYPE_LENGTH = 256


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser("beyond", help="lstsq, optimize, moment_curve against jl: "
                                 "d_min, logit range, precision (preset beyond + tables)",
                                 description=__doc__.splitlines()[0])
  parser.add_argument("--results", type=pathlib.Path, default=pathlib.Path("results/beyond.sqlite"),
                      help="SQLite results store of the preset (resumable)")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results/beyond"),
                      help="folder for the figures, fit files and beyond.json")
  parser.add_argument("--seed", type=int, help="seed (default: the preset's)")
  parser.set_defaults(func=main)


def _point(record) -> grid.Point:
  return grid.Point(**{**record.params, "d_grid": tuple(record.params["d_grid"])})


def trial_logit_range(point: grid.Point, seed: int, d: int) -> tuple[np.ndarray, np.ndarray]:
  """(ok [T], max|ℓ| [T]) of the point's method at d on the point's own trials.

  The keys are those of ``ja.min_d`` for the point (split into T trials, each
  into pattern and method keys), so these are the searched solutions at d.
  """
  sampler = point.sampler()

  @jax.jit
  def measure(keys):
    def one(trial_key):
      pattern_key, method_key = jax.random.split(trial_key)
      pattern = sampler(pattern_key)
      solution = ja.construct.build(point.method, method_key, pattern, d, point.eps1, point.eps2,
                                    dtype=point.dtype)
      report = ja.verify(solution, pattern, point.eps1, point.eps2)
      return report.ok, report.max_abs_logit.astype(jnp.float32)
    return jax.lax.map(one, keys)

  with run.precision(point.dtype):
    ok, logits = measure(jax.random.split(grid.point_key(seed, point), point.trials))
    return np.asarray(ok), np.asarray(logits)


def optimize_steps(point: grid.Point, seed: int, d: int) -> dict:
  """Mean Adam steps, seconds per trial (compiled, vmapped) and passed fraction at d."""
  sampler = point.sampler()

  @jax.jit
  def fit(keys):
    def one(trial_key):
      pattern_key, method_key = jax.random.split(trial_key)
      return ja.construct.optimize_run(method_key, sampler(pattern_key), d, d, point.eps1,
                                       point.eps2)
    return jax.vmap(one)(keys)

  keys = jax.random.split(grid.point_key(seed, point), point.trials)
  jax.block_until_ready(fit(keys))
  start = time.perf_counter()
  result = jax.block_until_ready(fit(keys))
  seconds = (time.perf_counter() - start) / point.trials
  return dict(steps=float(np.mean(result.steps)), seconds=seconds,
              passed=float(np.mean(result.passed)))


def _select(records, **fields) -> list:
  return [r for r in distinct(records)
          if all((r.trials if k == "trials" else r.params[k]) == v for k, v in fields.items())]


def _fit(rows: list) -> LawFit | None:
  reached = [r for r in rows if r.d_min is not None]
  if len({r.params["length"] for r in reached}) < 3:
    return None
  return fit_log_law(np.array([r.params["length"] for r in reached], float),
                     np.array([r.d_min for r in reached], float))


def collect(records, seed: int) -> dict:
  """The numbers of the tables and figures, from stored records plus logit ranges."""
  data = {"seed": seed, "main": {}, "fit": {}, "curve": {}, "dtype": {}}
  main = {m: sorted(_select(records, method=m, **MAIN), key=lambda r: r.params["length"])
          for m in METHODS}
  curve = {(n, t): sorted(_select(records, method="moment_curve", nnz=n, dtype=t,
                                  trials=CURVE_TRIALS), key=lambda r: r.params["length"])
           for n in (1, 2) for t in ("float32", "float64")}
  work = sum(len(rows) for rows in main.values()) + len(main["optimize"]) + sum(
      len(rows) for (_, t), rows in curve.items() if t == "float64")
  with tqdm(total=work, desc="logit ranges", unit="point") as bar:
    for method, rows in main.items():
      fit = _fit(rows)
      data["fit"][method] = None if fit is None else dict(
          slope=fit.param, low=fit.param_low, high=fit.param_high, intercept=fit.constant,
          r2=fit.r2, n=fit.n)
      data["main"][method] = []
      for record in rows:
        entry = {"length": record.params["length"], "d_min": record.d_min,
                 "top": int(record.d[-1]), "logit_range": None, "optimize": None}
        if record.d_min is not None:
          _, logits = trial_logit_range(_point(record), seed, record.d_min)
          entry["logit_range"] = float(logits.max())
          if method == "optimize":
            bar.update()
            entry["optimize"] = optimize_steps(_point(record), seed, record.d_min)
        bar.update()
        data["main"][method].append(entry)
    for (nnz, dtype), rows in curve.items():
      verified = [r.params["length"] for r in rows if r.d_min is not None]
      failed = [r.params["length"] for r in rows if r.d_min is None]
      entry = {"largest": max(verified) if verified else None,
               "first_failure": min(failed) if failed else None,
               "tested_up_to": max(r.params["length"] for r in rows) if rows else None,
               "logit_range": {}}
      if dtype == "float64":  # the range the construction needs, computed where it is exact
        for record in rows:
          _, logits = trial_logit_range(_point(record), seed, 2 * nnz)
          entry["logit_range"][record.params["length"]] = float(logits.max())
          bar.update()
      data["curve"][f"N={nnz} {dtype}"] = entry
  for method in METHODS:
    by_dtype = {r.params["dtype"]: r.d_min if r.d_min is not None else f"> {int(r.d[-1])}"
                for r in _select(records, method=method, nnz=2, length=DTYPE_LENGTH, trials=8)}
    data["dtype"][method] = {t: by_dtype.get(t) for t in DTYPES}
  return data


def figures(data: dict, out: pathlib.Path) -> list[pathlib.Path]:
  """d_min against ln L with fitted slopes, and the logit range against L."""
  from matplotlib.figure import Figure

  written = []
  fig = Figure(figsize=(6.8, 4.6), layout="constrained")
  ax = fig.subplots()
  for method in METHODS:
    rows = data["main"][method]
    reached = [(np.log(e["length"]), e["d_min"]) for e in rows if e["d_min"] is not None]
    missed = [(np.log(e["length"]), e["top"]) for e in rows if e["d_min"] is None]
    fit = data["fit"][method]
    name = method if fit is None else (
        f"{method}: slope {fit['slope']:.1f} [{fit['low']:.1f}, {fit['high']:.1f}]")
    line, = ax.plot(*zip(*reached), "o", label=name) if reached else ax.plot([], [], "o")
    if missed:
      ax.plot(*zip(*missed), "^", mfc="white", color=line.get_color())
    if fit is not None:
      xs = np.linspace(min(x for x, _ in reached), max(x for x, _ in reached), 50)
      ax.plot(xs, np.maximum(fit["intercept"] + fit["slope"] * xs, 1.0), "-",
              color=line.get_color(), lw=1)
  ax.set_yscale("log", base=2)
  written.append(_finish(fig, ax, out / "dmin_vs_lnL.png", "ln L", "d_min",
                         "d_min against ln L; slope a of d = a ln L + b (95% CI); "
                         "△ not reached (top of grid)", title_size=9, legend_size=8))

  fig = Figure(figsize=(6.8, 4.6), layout="constrained")
  ax = fig.subplots()
  for method in METHODS:
    points = [(e["length"], e["logit_range"]) for e in data["main"][method]
              if e["logit_range"] is not None]
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
  written.append(_finish(fig, ax, out / "logit_range.png", "L", "max |logit| needed",
                         "logit range; grey lines: largest L where moment_curve verifies "
                         "(dotted float32, dash-dot float64)", title_size=8, legend_size=7))
  return written


def _finish(fig, ax, path: pathlib.Path, xlabel: str, ylabel: str, title: str, *,
            title_size: int, legend_size: int) -> pathlib.Path:
  """Labels, title, legend and grid of ``ax``; ``fig`` saved to ``path``, which is returned."""
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=title_size)
  ax.legend(fontsize=legend_size)
  ax.grid(True, alpha=0.3)
  fig.savefig(path, dpi=130)
  return path


def tables(data: dict) -> str:
  """The README "Beyond the paper" tables (Markdown)."""
  show = lambda value: "—" if value is None else str(value)
  lengths = sorted({e["length"] for rows in data["main"].values() for e in rows})
  at = {m: {e["length"]: e for e in rows} for m, rows in data["main"].items()}

  def d_cell(method, length):
    entry = at[method].get(length)
    if entry is None:
      return "n/a"
    return show(entry["d_min"]) if entry["d_min"] is not None else f"> {entry['top']}"

  lines = ["| L | " + " | ".join(METHODS) + " | jl / lstsq |", "|---:|" + "---:|" * 5]
  for length in lengths:
    jl, lstsq = (at[m].get(length, {}).get("d_min") for m in ("jl", "lstsq"))
    ratio = f"{jl / lstsq:.0f}×" if jl and lstsq else "—"
    lines.append(f"| {length} | " + " | ".join(d_cell(m, length) for m in METHODS)
                 + f" | {ratio} |")
  slopes = [f"{m} {f['slope']:.1f} [{f['low']:.1f}, {f['high']:.1f}]"
            for m, f in data["fit"].items() if f is not None]
  lines += ["", "Fitted slope a of d_min = a ln L + b (95% CI): " + "; ".join(slopes) + ".", ""]
  lines += ["| L | " + " | ".join(f"max\\|ℓ\\| {m}" for m in METHODS)
            + " | optimize: Adam steps | optimize: s / trial |", "|---:|" + "---:|" * 6]
  for length in lengths:
    cells = []
    for method in METHODS:
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
  lines += ["", f"| d_min at L = {DTYPE_LENGTH}, N = 2 | " + " | ".join(DTYPES) + " |",
            "|---|" + "---:|" * len(DTYPES)]
  for method in METHODS:
    lines.append(f"| {method} | " + " | ".join(show(data["dtype"][method][t]) for t in DTYPES)
                 + " |")
  return "\n".join(lines)


def run_preset(results: pathlib.Path, out: pathlib.Path, seed: int | None) -> int:
  """``python -m bench run --preset beyond --results RESULTS --figures OUT [--seed SEED]``."""
  parser = argparse.ArgumentParser(prog="python -m bench")
  run.add_parser(parser.add_subparsers(dest="command"))
  argv = ["run", "--preset", PRESET, "--results", str(results), "--figures", str(out)]
  args = parser.parse_args(argv + ([] if seed is None else ["--seed", str(seed)]))
  return args.func(args)


def main(args) -> int:
  start = time.perf_counter()
  run_preset(args.results, args.out, args.seed)
  seed = grid.load_preset(PRESET).seed if args.seed is None else args.seed
  with ResultsStore(args.results) as store:
    records = [r for r in store.records() if r.seed == seed]
  data = collect(records, seed)
  data["seconds"] = time.perf_counter() - start
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "beyond.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
  written = figures(data, args.out)
  print(f"\nBeyond the paper: random_regular, eps1 = eps2 = 0.5, a_min = 0.2, T = 8 "
        f"(moment_curve limits T = {CURVE_TRIALS}), delta = 0.1, seed {seed}, "
        f"{jax.devices()[0].device_kind}, {data['seconds']:.0f} s\n")
  print(tables(data))
  print(f"\nwrote {', '.join(map(str, written))}, {args.out / 'beyond.json'}")
  return 0
