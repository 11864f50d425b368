"""``python -m jaxattn_bench.cost_fit STORE ...``: the cost model's rate and constants, fitted to
the wall times of stored points.

The model (``ja.schedule.search_cost``) puts a point's seconds at

  wall = (keys + S_m·support + C·compiles) / rate,

with the terms of the search the point ran (``runner.search_terms``, on the schedule
``ja.min_d`` chooses: a store does not record it, and an adaptive search that evaluates every
level is stored as a full one). That is linear in 1/rate, C/rate and S_m/rate, so one
non-negative least-squares fit over every stored point gives them all: the rate
(``runner.COST_RATE``), C (``ja.schedule.COMPILE_COST``) and S per method
(``ja.schedule.SUPPORT_COST``); P and c stay as measured (``bench perf``, the beyond preset).
The fit weighs every point by 1/wall, so that it fits ratios, not the longest points.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import NamedTuple, Sequence

import numpy as np
from scipy.optimize import nnls

import jaxattn as ja
from jaxattn_bench import runner
from jaxattn_bench.store import Record, ResultsStore


class CostFit(NamedTuple):
  """The fitted constants and the model's seconds against the measured ones."""

  rate: float  # units of search_cost per second
  compile_cost: float  # C
  support_cost: dict[str, float]  # S per method with a support term
  measured: np.ndarray  # wall seconds per point
  modelled: np.ndarray  # the fitted model's seconds per point


def point_terms(record: Record) -> ja.schedule.SearchTerms:
  """``runner.search_terms`` of the search a stored point ran."""
  params = record.params
  return runner.search_terms(
    params["method"],
    params["length"],
    params["nnz"],
    tuple(int(d) for d in record.d),
    trials=record.trials,
    causal=params.get("causal", False),
  )


def fit(records: Sequence[Record], methods: Sequence[str] = ("lstsq", "optimize")) -> CostFit:
  """Non-negative least squares of the model (module docstring) on the records' wall times."""
  terms = [point_terms(r) for r in records]
  columns = [[t.keys for t in terms], [t.compiles for t in terms]]
  columns += [
    [t.support if r.params["method"] == m else 0.0 for r, t in zip(records, terms)] for m in methods
  ]
  design = np.array(columns, dtype=float).T
  wall = np.array([r.wall_s for r in records], dtype=float)
  coefficients, _ = nnls(design / wall[:, None], np.ones_like(wall))
  per_key, per_compile, *per_support = coefficients
  rate = 1.0 / per_key
  return CostFit(
    rate,
    per_compile * rate,
    {m: s * rate for m, s in zip(methods, per_support)},
    wall,
    design @ coefficients,
  )


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m jaxattn_bench.cost_fit", description=__doc__.splitlines()[0]
  )
  parser.add_argument("stores", nargs="+", type=pathlib.Path, help="results files")
  args = parser.parse_args(argv)
  records: list[Record] = []
  for path in args.stores:
    with ResultsStore(path, create=False) as store:
      records += store.records()
  result = fit(records)
  ratio = result.modelled / result.measured
  print(
    f"{len(records)} points; rate {result.rate:.3g} units/s, C {result.compile_cost:.3g} "
    f"({result.compile_cost / result.rate:.2f} s), S "
    + ", ".join(f"{m} {s:.3g}" for m, s in result.support_cost.items())
  )
  print(
    f"model / measured per point: median {np.median(ratio):.2f}, "
    f"range {ratio.min():.2f}–{ratio.max():.2f}; total {result.modelled.sum():.0f} s "
    f"against {result.measured.sum():.0f} s"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
