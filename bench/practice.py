"""The measurements of ``python -m bench practice``: what d a fixed layer needs for published masks.

The ``practice`` preset (run by the grid runner) gives, per published family
(``ja.patterns.FAMILIES``), method and L, the per-trial thresholds and their
median d_50 with its 95% order-statistic interval. ``collect`` arranges the
stored records into ``points`` (every point, per (family, method), for the
table) and three series:

1. ``length``: d_50 against L per (family, layer, method), the layer being
   "bidirectional" or "causal" (a causal family may be judged in both);
2. ``window``: d_50 against Longformer's window w (no global token) per (L, method);
3. ``globals``: d_50 against the number g of Longformer global tokens per (w, L, method)
   (both bidirectional).

Plans come from the runner's cost model (``runner.point_seconds``). Fits,
figures and the table: ``jaxattn_plots.practice``.
"""

from __future__ import annotations

import math
from collections import defaultdict

import jaxattn as ja
from jaxattn_bench.store import distinct

PRESET = "practice"
CAUSAL_PRESET = "practice_causal"  # bench practice --causal


def _finite(value) -> float | None:
  """A stored estimate as JSON: None where it is ±inf (not reached, or an unbounded end)."""
  return None if value is None or not math.isfinite(value) else float(value)


def entry(record) -> dict:
  """One point: L, N, the grid, d_50 with its interval (None: not reached / unbounded), seconds."""
  return {
    "length": record.params["length"],
    "nnz": record.params["nnz"],
    "trials": record.trials,
    "d_grid": [int(d) for d in record.d],
    "top": int(record.d[-1]),
    "d_median": _finite(record.d_median),
    "d_median_low": _finite(record.d_median_low),
    "d_median_high": _finite(record.d_median_high),
    "seconds": float(record.wall_s),
  }


def _fields(family: str) -> dict | None:
  """The fields of a published family spec (with its name); None for a ``GENERATORS`` family."""
  if family in ja.patterns.GENERATORS:
    return None
  published = ja.patterns.family_from_spec(family)
  return {"name": published.name, **{k: v for k, v in vars(published).items()}}


def layer_name(params: dict) -> str:
  """The layer a point is judged in (``grid.Point.params``): "causal" or "bidirectional"."""
  return "causal" if params.get("causal", False) else "bidirectional"


def collect(records) -> dict:
  """The three series of ``python -m bench practice`` from stored records (any seed mix: the
  caller passes one seed's records)."""
  length, window, globals_ = defaultdict(list), defaultdict(list), defaultdict(list)
  for record in distinct(records):
    family, method = record.params["family"], record.params["method"]
    fields = _fields(family)
    if fields is None:
      continue
    bounds = ja.patterns.family_from_spec(family).bounds(record.params["length"])
    layer = layer_name(record.params)
    point = {
      **entry(record),
      "row_bound": bounds.row,
      "column_bound": bounds.column,
      "inside_theorem": bounds.inside_theorem,
      "layer": layer,
    }
    length[f"{family} | {layer} | {method}"].append(point)
    if fields["name"] == "longformer" and layer == "bidirectional":
      key = f"L={point['length']} | {method}"
      if fields["globals"] == 0:
        window[key].append({**point, "window": fields["window"]})
      if fields["globals"] == 0 or not fields["global_rows"]:
        globals_[f"w={fields['window']} | {key}"].append({**point, "globals": fields["globals"]})
  order = lambda series, x: {
    k: sorted(v, key=lambda e: e[x])
    for k, v in sorted(series.items())
    if len({e[x] for e in v}) >= 2
  }
  points = {k: sorted(v, key=lambda e: e["length"]) for k, v in sorted(length.items())}
  return {
    "points": points,
    "length": order(length, "length"),
    "window": order(window, "window"),
    "globals": order(globals_, "globals"),
  }
