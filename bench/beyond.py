"""``python -m bench beyond``: the constructions beyond the paper, side by side.

Four measurements, all on random_regular patterns with N = 2, ε1 = ε2 = 0.5,
a_min = 0.2 unless stated, every number from ``ja.min_d`` / ``ja.verify``:

1. d_min against L for every method (float32): figure ``dmin_vs_lnL.png``
   with the least-squares slope of d_min = a + b ln L per method.
2. The logit range max|ℓ| each method needs at its d_min, against L
   (``logit_range.png``); for ``optimize`` also the Adam steps and time.
3. ``moment_curve`` (d = 2N): the largest L = 2^k at which every trial
   verifies, in float32 and float64, for N = 1 and 2, with its logit range.
4. Precision as an axis: d_min per method and dtype at one L.

Prints the README "Beyond the paper" tables (Markdown) and writes the figures
and ``beyond.json`` to ``--out``.
"""

from __future__ import annotations

import contextlib
import json
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import jaxattn as ja
from bench._cli import CommandError
from bench.min_d import geometric_grid

FAMILY, NNZ, EPS1, EPS2, A_MIN, TRIALS, DELTA = "random_regular", 2, 0.5, 0.5, 0.2, 8, 0.1
LENGTHS = (64, 128, 256, 512, 1024)
METHODS = ("jl", "lstsq", "optimize", "moment_curve")


def _grid(start: int, stop: int, per_octave: int) -> tuple[int, ...]:
  return tuple(d for d in geometric_grid(stop, per_octave) if d >= start)


D_GRIDS = {"jl": _grid(128, 8192, 2), "lstsq": _grid(8, 512, 4), "optimize": _grid(2, 64, 2),
           "moment_curve": (2, 4, 8)}
DTYPE_LENGTH = 256
DTYPES = ("bfloat16", "float32", "float64")
CURVE_LENGTHS = tuple(4**k for k in range(2, 8))


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser("beyond", help="lstsq, optimize, moment_curve vs jl: d_min, "
                                 "logit range, precision")
  parser.add_argument("--out", default="results/beyond", help="folder for figures and JSON")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS),
                      help="L values of measurements 1 and 2")
  parser.add_argument("--trials", type=int, default=TRIALS)
  parser.set_defaults(func=main)


def _precision(dtype: str):
  """Context in which ``dtype`` is available (64-bit JAX for float64 only)."""
  return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def _sampler(length: int, nnz: int = NNZ) -> ja.patterns.Sampler:
  return ja.patterns.Sampler(FAMILY, length=length, nnz=nnz, a_min=A_MIN)


def _min_d(key, method: str, length: int, trials: int, dtype: str = "float32") -> int | None:
  with _precision(dtype):
    return ja.min_d(key, _sampler(length), D_GRIDS[method], eps1=EPS1, eps2=EPS2, method=method,
                    trials=trials, delta=DELTA, dtype=dtype).d_min


def _verify_trials(key, method: str, sampler, d: int, trials: int, dtype: str = "float32"):
  """(ok [T], max|ℓ| [T]) of ``method`` at d on T fresh patterns, one compiled loop."""

  @jax.jit
  def run(keys):
    def one(trial_key):
      pattern_key, method_key = jax.random.split(trial_key)
      pattern = sampler(pattern_key)
      solution = ja.construct.build(method, method_key, pattern, d, EPS1, EPS2, dtype=dtype)
      report = ja.verify(solution, pattern, EPS1, EPS2)
      return report.ok, report.max_abs_logit.astype(jnp.float32)
    return jax.lax.map(one, keys)

  with _precision(dtype):
    ok, logits = run(jax.random.split(key, trials))
    return np.asarray(ok), np.asarray(logits)


def _optimize_steps(key, length: int, d: int, trials: int) -> tuple[float, float, float]:
  """(mean steps, seconds per trial, passed fraction) of ``optimize_run`` vmapped over trials."""
  sampler = _sampler(length)

  @jax.jit
  def run(keys):
    def one(trial_key):
      pattern_key, method_key = jax.random.split(trial_key)
      return ja.construct.optimize_run(method_key, sampler(pattern_key), d, d, EPS1, EPS2)
    return jax.vmap(one)(keys)

  keys = jax.random.split(key, trials)
  jax.block_until_ready(run(keys))  # compile
  start = time.perf_counter()
  result = jax.block_until_ready(run(keys))
  seconds = (time.perf_counter() - start) / trials
  return float(np.mean(result.steps)), seconds, float(np.mean(result.passed))


def _fit(lengths, dims) -> tuple[float, float] | None:
  """(a, b) of the least-squares line d = a + b ln L over the points with a d_min."""
  points = [(math.log(n), d) for n, d in zip(lengths, dims) if d is not None]
  if len(points) < 2:
    return None
  slope, intercept = np.polyfit(*zip(*points), 1)
  return float(intercept), float(slope)


def _largest_verified(key, nnz: int, dtype: str, bar) -> dict:
  """Largest L of ``CURVE_LENGTHS`` up to which every trial of moment_curve verifies at d = 2N."""
  largest, ranges = None, {}
  for count, length in enumerate(CURVE_LENGTHS, 1):
    ok, logits = _verify_trials(jax.random.fold_in(key, length), "moment_curve", _sampler(length, nnz),
                                2 * nnz, 4, dtype)
    bar.update()
    ranges[length] = float(logits.max())
    if not ok.all():
      break
    largest = length
  bar.update(len(CURVE_LENGTHS) - count)
  return {"largest_length": largest, "tested_up_to": length, "max_abs_logit": ranges}


def _figures(out: pathlib.Path, data: dict) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  lengths = data["lengths"]
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  for method in METHODS:
    dims = data["d_min"][method]
    xs = [math.log(n) for n, d in zip(lengths, dims) if d is not None]
    ys = [d for d in dims if d is not None]
    fit = data["fit"][method]
    label = method if fit is None else f"{method}: d ≈ {fit[1]:.1f}·ln L {fit[0]:+.0f}"
    line, = ax.plot(xs, ys, "o", label=label)
    if fit is not None:
      grid = np.linspace(min(xs), max(xs), 50)
      ax.plot(grid, np.maximum(fit[0] + fit[1] * grid, 1), "-", color=line.get_color(), lw=1)
  ax.set_yscale("log", base=2)
  ax.set_xlabel("ln L")
  ax.set_ylabel("d_min")
  ax.set_title(f"{FAMILY}, N={NNZ}, ε1=ε2={EPS1}, a_min={A_MIN}, T={data['trials']}, float32",
               fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(out / "dmin_vs_lnL.png", dpi=130)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  for method in METHODS:
    ranges = data["logit_range"][method]
    points = [(n, r) for n, r in zip(lengths, ranges) if r is not None]
    if points:
      ax.plot(*zip(*points), "o-", label=f"{method} at d_min (N={NNZ})")
  for key, curve in data["moment_curve"].items():
    points = sorted((int(n), r) for n, r in curve["max_abs_logit"].items())
    ax.plot(*zip(*points), ".--", lw=1, label=f"moment_curve {key} (d=2N), until it fails")
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xlabel("L")
  ax.set_ylabel("max |logit|")
  ax.set_title("logit range each construction needs", fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out / "logit_range.png", dpi=130)
  plt.close(fig)


def _tables(data: dict) -> str:
  fmt = lambda d: "—" if d is None else str(d)
  lines = ["| L | " + " | ".join(f"d_min {m}" for m in METHODS) + " | jl / lstsq |",
           "|---:|" + "---:|" * (len(METHODS) + 1)]
  for i, length in enumerate(data["lengths"]):
    dims = [data["d_min"][m][i] for m in METHODS]
    jl, lstsq = data["d_min"]["jl"][i], data["d_min"]["lstsq"][i]
    ratio = "—" if jl is None or lstsq is None else f"{jl / lstsq:.0f}×"
    lines.append(f"| {length} | " + " | ".join(map(fmt, dims)) + f" | {ratio} |")
  fits = ", ".join(f"{m} {f[1]:.1f}" for m, f in data["fit"].items() if f is not None)
  lines += ["", f"Fitted slope b of d_min = a + b ln L: {fits}.", ""]
  lines += ["| L | max\\|ℓ\\| " + " | max\\|ℓ\\| ".join(METHODS) + " | optimize steps | optimize s/trial |",
            "|---:|" + "---:|" * (len(METHODS) + 2)]
  for i, length in enumerate(data["lengths"]):
    ranges = ["—" if r is None else f"{r:.3g}" for r in (data["logit_range"][m][i] for m in METHODS)]
    steps = data["optimize_steps"][i]
    extra = ["—", "—"] if steps is None else [f"{steps['steps']:.0f}", f"{steps['seconds']:.2f}"]
    lines.append(f"| {length} | " + " | ".join(ranges + extra) + " |")
  lines += ["", "| moment_curve (d = 2N) | largest L verified | max\\|ℓ\\| there |", "|---|---:|---:|"]
  for key, curve in data["moment_curve"].items():
    largest = curve["largest_length"]
    shown = f"≥ {largest}" if largest == CURVE_LENGTHS[-1] else fmt(largest)
    logit = "—" if largest is None else f"{curve['max_abs_logit'][largest]:.3g}"
    lines.append(f"| {key} | {shown} | {logit} |")
  lines += ["", f"| d_min at L = {DTYPE_LENGTH} | " + " | ".join(DTYPES) + " |",
            "|---|" + "---:|" * len(DTYPES)]
  for method in METHODS:
    lines.append(f"| {method} | " + " | ".join(fmt(data['dtype'][method][t]) for t in DTYPES) + " |")
  return "\n".join(lines)


def main(args) -> int:
  if args.trials < 1 or any(n < 2 * NNZ for n in args.lengths):
    raise CommandError(f"need --trials >= 1 and every length >= {2 * NNZ}")
  lengths = sorted(set(args.lengths))
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  key = jax.random.PRNGKey(args.seed)
  data = {"lengths": lengths, "trials": args.trials, "d_grid": D_GRIDS,
          "d_min": {m: [] for m in METHODS}, "logit_range": {m: [] for m in METHODS},
          "optimize_steps": [], "moment_curve": {}, "dtype": {m: {} for m in METHODS}}
  start = time.perf_counter()
  total = len(lengths) * len(METHODS) * 2 + 4 * len(CURVE_LENGTHS) + len(METHODS) * len(DTYPES)
  with tqdm(total=total, desc="beyond", unit="step") as bar:
    for length in lengths:
      for m_index, method in enumerate(METHODS):
        point_key = jax.random.fold_in(jax.random.fold_in(key, length), m_index)
        bar.set_postfix_str(f"{method} L={length}")
        d_min = _min_d(point_key, method, length, args.trials)
        data["d_min"][method].append(d_min)
        bar.update()
        if d_min is None:
          data["logit_range"][method].append(None)
        else:
          _, logits = _verify_trials(jax.random.fold_in(point_key, 1), method, _sampler(length),
                                     d_min, args.trials)
          data["logit_range"][method].append(float(logits.max()))
        bar.update()
      d_opt = data["d_min"]["optimize"][-1]
      data["optimize_steps"].append(None if d_opt is None else dict(zip(
          ("steps", "seconds", "passed"), _optimize_steps(jax.random.fold_in(key, length), length,
                                                          d_opt, args.trials))))
    for nnz in (1, 2):
      for dtype in ("float32", "float64"):
        bar.set_postfix_str(f"moment_curve N={nnz} {dtype}")
        curve = _largest_verified(jax.random.fold_in(key, nnz), nnz, dtype, bar)
        data["moment_curve"][f"N={nnz} {dtype}"] = curve
    for m_index, method in enumerate(METHODS):
      for dtype in DTYPES:
        bar.set_postfix_str(f"{method} {dtype}")
        data["dtype"][method][dtype] = _min_d(jax.random.fold_in(key, 7 + m_index), method,
                                              DTYPE_LENGTH, args.trials, dtype)
        bar.update()
  data["fit"] = {m: _fit(lengths, data["d_min"][m]) for m in METHODS}
  data["seconds"] = time.perf_counter() - start
  (out / "beyond.json").write_text(json.dumps(data, indent=1))
  _figures(out, data)
  print(f"{FAMILY}, N={NNZ}, eps1=eps2={EPS1}, a_min={A_MIN}, T={args.trials}, delta={DELTA}, "
        f"seed={args.seed} ({jax.devices()[0].device_kind}, {data['seconds']:.0f} s)")
  print(_tables(data))
  print(f"\nwrote {out / 'dmin_vs_lnL.png'}, {out / 'logit_range.png'}, {out / 'beyond.json'}")
  return 0
