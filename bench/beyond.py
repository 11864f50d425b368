"""The measurements of ``python -m bench beyond``: the constructions beyond the paper, side by side.

The ``beyond`` preset (run by the grid runner) gives, per method and L, the
per-trial thresholds d*_t and their median d_50 with its 95% order-statistic
interval (``ja.MinDResult``); on top of it, on the very trials of the search
(same keys, ``ja.trial_keys``):

1. the logit range max|ℓ| (``Report.max_abs_logit``) each method needs at
   its d_50, over the first ``MEASURED_TRIALS`` trials, and for ``optimize``
   also the Adam steps, streamed passes and seconds per trial;
2. ``moment_curve`` at d = 2N: the largest L at which every trial verifies,
   in float32 and float64, for N = 1 and 2, and the logit range it needs;
3. precision as an axis: d_50 per method and dtype at L = 256.

Fits, figures and tables of these numbers: ``jaxattn_plots.beyond``.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

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
MAIN = dict(nnz=2, dtype="float32")  # the d-against-L series (with the curve series excluded)
CURVE_TRIALS, CURVE_D = 4, 4  # the moment_curve precision series: T and d
DTYPE_LENGTH = 256
MEASURED_TRIALS = 1  # trials whose logit range (and optimize's cost) are
# measured again after the search (an optimize trial
# at L = 65536 runs for over a minute)


def _point(record) -> grid.Point:
  return grid.Point(**{**record.params, "d_grid": tuple(record.params["d_grid"])})


def _finite(value) -> float | None:
  """A stored estimate as JSON: None where it is ±inf (not reached, or an unbounded end)."""
  return None if value is None or not math.isfinite(value) else float(value)


def trial_figures(point: grid.Point, seed: int, d: int, trials: int) -> dict:
  """max|ℓ| over the point's first ``trials`` trials at d, and for ``optimize`` its mean Adam
  steps, streamed passes and seconds per trial (compiled ahead, construction only).

  The keys are those of ``ja.min_d`` for the point (``ja.trial_keys``), so
  these are the searched solutions at d.
  """
  sampler = point.sampler()

  def construct(pattern_key, method_key):
    pattern = sampler(pattern_key)
    if point.method != "optimize":
      return ja.construct.build(
        point.method, method_key, pattern, d, eps1=point.eps1, eps2=point.eps2, dtype=point.dtype
      ), jnp.zeros(2, jnp.int32)
    result = ja.construct.optimize_run(
      method_key, pattern, d, d, point.eps1, point.eps2, dtype=jnp.dtype(point.dtype)
    )
    solution = ja.construct.solution_from_factors(result.queries, result.keys)
    return (
      jax.tree.map(lambda x: x.astype(point.dtype), solution),
      jnp.stack([result.steps, result.passes]),
    )

  def logit_range(pattern_key, solution):
    report = ja.verify(solution, sampler(pattern_key), eps1=point.eps1, eps2=point.eps2)
    return report.max_abs_logit.astype(jnp.float32)

  with ja.dtype_context(point.dtype):
    pattern_keys, method_keys = ja.trial_keys(grid.point_key(seed, point), point.trials)
    build = jax.jit(construct).lower(pattern_keys[0], method_keys[0]).compile()
    measure = jax.jit(logit_range)
    logits, costs, seconds = [], [], []
    for t in range(min(trials, point.trials)):
      start = time.perf_counter()
      solution, cost = jax.block_until_ready(build(pattern_keys[t], method_keys[t]))
      seconds.append(time.perf_counter() - start)
      logits.append(float(measure(pattern_keys[t], solution)))
      costs.append(np.asarray(cost))
  figures: dict[str, Any] = {"logit_range": max(logits), "trials": len(logits)}
  if point.method == "optimize":
    steps, passes = np.mean(costs, axis=0)
    figures["optimize"] = dict(
      steps=float(steps), passes=float(passes), seconds=float(np.mean(seconds))
    )
  return figures


def select(records, **fields) -> list:
  """The ``distinct`` records whose params (or ``trials``) equal ``fields``."""
  return [
    r
    for r in distinct(records)
    if all((r.trials if k == "trials" else r.params[k]) == v for k, v in fields.items())
  ]


def is_curve(record) -> bool:
  """Whether a record is a point of the moment_curve precision series (2): T = CURVE_TRIALS,
  d grid [CURVE_D]."""
  return (
    record.params["method"] == "moment_curve"
    and record.trials == CURVE_TRIALS
    and list(record.params["d_grid"]) == [CURVE_D]
  )


def curve_verified(record) -> bool:
  """Whether the first CURVE_TRIALS trials of a moment_curve record all verify at d = CURVE_D.

  A main-series point with the same draws (more trials, a wider grid) is kept
  by ``distinct`` in place of the series' own point, and answers the same question.
  """
  if record.verdicts is None:  # stored without per-trial data: its own T and d_min
    return record.d_min is not None
  return bool(np.all(record.verdicts[:CURVE_TRIALS, list(record.d).index(CURVE_D)]))


def main_entry(record, seed: int) -> dict:
  """One point of the d-against-L series: d_50 with its interval, d_min, the grid, and the
  ``trial_figures`` at d_50 (None where d_50 is not reached)."""
  entry = {
    "length": record.params["length"],
    "trials": record.trials,
    "d_grid": [int(d) for d in record.d],
    "top": int(record.d[-1]),
    "d_median": _finite(record.d_median),
    "d_median_low": _finite(record.d_median_low),
    "d_median_high": _finite(record.d_median_high),
    "d_min": record.d_min,
    "logit_range": None,
    "measured_trials": 0,
    "optimize": None,
  }
  if entry["d_median"] is not None:
    figures = trial_figures(_point(record), seed, int(entry["d_median"]), MEASURED_TRIALS)
    entry.update(
      logit_range=figures["logit_range"],
      measured_trials=figures["trials"],
      optimize=figures.get("optimize"),
    )
  return entry


def collect(records, seed: int) -> dict:
  """The numbers of the tables and figures: stored records and logit ranges (progress on stderr)."""
  data: dict[str, Any] = {
    "seed": seed,
    "main": {},
    "curve": {},
    "dtype": {},
    "dtype_length": DTYPE_LENGTH,
    "measured_trials": MEASURED_TRIALS,
  }
  main = {
    m: sorted(
      (r for r in select(records, method=m, **MAIN) if not is_curve(r)),
      key=lambda r: r.params["length"],
    )
    for m in METHODS
  }
  curve = {
    (n, t): sorted(
      (r for r in select(records, method="moment_curve", nnz=n, dtype=t) if CURVE_D in r.d),
      key=lambda r: r.params["length"],
    )
    for n in (1, 2)
    for t in ("float32", "float64")
  }
  work = sum(len(rows) for rows in main.values()) + sum(
    len(rows) for (_, t), rows in curve.items() if t == "float64"
  )
  with tqdm(total=work, desc="logit ranges", unit="point", file=sys.stderr) as bar:
    for method, rows in main.items():
      data["main"][method] = []
      for record in rows:
        bar.set_description(f"logit ranges: {method} L={record.params['length']}")
        data["main"][method].append(main_entry(record, seed))
        bar.update()
    for (nnz, dtype), rows in curve.items():
      verified = [r.params["length"] for r in rows if curve_verified(r)]
      failed = [r.params["length"] for r in rows if not curve_verified(r)]
      entry: dict[str, Any] = {
        "largest": max(verified) if verified else None,
        "first_failure": min(failed) if failed else None,
        "tested_up_to": max(r.params["length"] for r in rows) if rows else None,
        "logit_range": {},
      }
      if dtype == "float64":  # the range the construction needs, computed where it is exact
        for record in rows:
          figures = trial_figures(_point(record), seed, 2 * nnz, record.trials)
          entry["logit_range"][record.params["length"]] = figures["logit_range"]
          bar.update()
      data["curve"][f"N={nnz} {dtype}"] = entry
  for method in METHODS:
    by_dtype = {
      r.params["dtype"]: _finite(r.d_median)
      if _finite(r.d_median) is not None
      else f"> {int(r.d[-1])}"
      for r in select(records, method=method, nnz=2, length=DTYPE_LENGTH)
      if not is_curve(r)
    }
    data["dtype"][method] = {t: by_dtype.get(t) for t in DTYPES}
  return data
