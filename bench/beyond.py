"""The measurements of ``python -m bench beyond``: the constructions beyond the paper, side by side.

The ``beyond`` preset (run by the grid runner) gives d_min against L per
method; on top of it, on the very trials of the search (same keys,
``ja.trial_keys``):

1. the logit range max|ℓ| (``Report.max_abs_logit``) each method needs at
   its d_min, and for ``optimize`` also the Adam steps and time;
2. ``moment_curve`` at d = 2N: the largest L at which every trial verifies,
   in float32 and float64, for N = 1 and 2, and the logit range it needs;
3. precision as an axis: d_min per method and dtype at L = 256.

Fits, figures and tables of these numbers: ``jaxattn_plots.beyond``.
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import jaxattn as ja
from jaxattn_bench import grid
from jaxattn_bench.store import distinct

PRESET = "beyond"
METHODS = ("jl", "lstsq", "optimize", "moment_curve")
DTYPES = ("bfloat16", "float32", "float64")
MAIN = dict(nnz=2, dtype="float32", trials=8)  # the d_min-against-L series
CURVE_TRIALS = 4                                # the moment_curve precision series
DTYPE_LENGTH = 256


def _point(record) -> grid.Point:
  return grid.Point(**{**record.params, "d_grid": tuple(record.params["d_grid"])})


def trial_logit_range(point: grid.Point, seed: int, d: int) -> tuple[np.ndarray, np.ndarray]:
  """(ok [T], max|ℓ| [T]) of the point's method at d on the point's own trials.

  The keys are those of ``ja.min_d`` for the point (``ja.trial_keys``), so
  these are the searched solutions at d.
  """
  sampler = point.sampler()

  @jax.jit
  def measure(keys):
    def one(trial_keys):
      pattern_key, method_key = trial_keys
      pattern = sampler(pattern_key)
      solution = ja.construct.build(point.method, method_key, pattern, d, point.eps1, point.eps2,
                                    dtype=point.dtype)
      report = ja.verify(solution, pattern, point.eps1, point.eps2)
      return report.ok, report.max_abs_logit.astype(jnp.float32)
    return jax.lax.map(one, keys)

  with ja.dtype_context(point.dtype):
    ok, logits = measure(ja.trial_keys(grid.point_key(seed, point), point.trials))
    return np.asarray(ok), np.asarray(logits)


def optimize_steps(point: grid.Point, seed: int, d: int) -> dict:
  """Mean Adam steps, seconds per trial (compiled, vmapped) and passed fraction at d."""
  sampler = point.sampler()

  @jax.jit
  def fit(keys):
    def one(pattern_key, method_key):
      return ja.construct.optimize_run(method_key, sampler(pattern_key), d, d, point.eps1,
                                       point.eps2)
    return jax.vmap(one)(*keys)

  keys = ja.trial_keys(grid.point_key(seed, point), point.trials)
  jax.block_until_ready(fit(keys))
  start = time.perf_counter()
  result = jax.block_until_ready(fit(keys))
  seconds = (time.perf_counter() - start) / point.trials
  return dict(steps=float(np.mean(result.steps)), seconds=seconds,
              passed=float(np.mean(result.passed)))


def select(records, **fields) -> list:
  """The ``distinct`` records whose params (or ``trials``) equal ``fields``."""
  return [r for r in distinct(records)
          if all((r.trials if k == "trials" else r.params[k]) == v for k, v in fields.items())]


def collect(records, seed: int) -> dict:
  """The numbers of the tables and figures: stored records plus logit ranges (progress on stderr)."""
  data = {"seed": seed, "main": {}, "curve": {}, "dtype": {}, "dtype_length": DTYPE_LENGTH}
  main = {m: sorted(select(records, method=m, **MAIN), key=lambda r: r.params["length"])
          for m in METHODS}
  curve = {(n, t): sorted(select(records, method="moment_curve", nnz=n, dtype=t,
                                  trials=CURVE_TRIALS), key=lambda r: r.params["length"])
           for n in (1, 2) for t in ("float32", "float64")}
  work = sum(len(rows) for rows in main.values()) + len(main["optimize"]) + sum(
      len(rows) for (_, t), rows in curve.items() if t == "float64")
  with tqdm(total=work, desc="logit ranges", unit="point", file=sys.stderr) as bar:
    for method, rows in main.items():
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
                for r in select(records, method=method, nnz=2, length=DTYPE_LENGTH, trials=8)}
    data["dtype"][method] = {t: by_dtype.get(t) for t in DTYPES}
  return data


