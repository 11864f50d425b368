"""The measurements of ``python -m bench bits``: the bits per token a solution spends, beside the
counting bound.

The ``bits`` preset (run by the grid runner) gives d_min per method and L.
Every trial of a point is rebuilt at the point's d_min on its own keys
(``ja.trial_keys``, the searched solutions), and ``ja.precision_bits``
gives the b from which its Q = X W_Q and K = X W_K, rounded to b-bit fixed
point, verify: a token then carries 2d·b bits (D·b, D = 2d the width of X).
The counting bound is ``ja.theory.pattern_bits`` at the same L and N, of the
family's supports and of all N-regular 0-1 matrices (docs/theory.md §7).
Figures and tables: ``jaxattn_plots.bits``.
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

import jaxattn as ja
from jaxattn_bench import grid
from jaxattn_bench.store import distinct

PRESET = "bits"
BOUNDS = ("random_regular", "regular")  # pattern classes whose counting bound is reported


def trial_bits(point: grid.Point, seed: int, d: int) -> list[int | None]:
  """``ja.precision_bits`` of each trial of the point built at d (None: it does not verify)."""
  sampler = point.sampler()
  pattern_keys, method_keys = ja.trial_keys(grid.point_key(seed, point), point.trials)
  bits = []
  with ja.dtype_context(point.dtype):
    for pattern_key, method_key in zip(pattern_keys, method_keys):
      pattern = sampler(pattern_key)
      solution = ja.construct.build(
        point.method,
        method_key,
        pattern,
        d,
        eps1=point.eps1,
        eps2=point.eps2,
        dtype=point.dtype,
        max_outside_mass=point.max_outside_mass,
      )
      bits.append(
        ja.precision_bits(
          solution,
          pattern,
          eps1=point.eps1,
          eps2=point.eps2,
          max_outside_mass=point.max_outside_mass,
        )
      )
  return bits


def bits_per_token(d: int, bits: list[int | None]) -> dict | None:
  """2d·b per token: median, min and max over the trials that verify (None if none does)."""
  spent = [2 * d * b for b in bits if b is not None]
  if not spent:
    return None
  return {"median": float(np.median(spent)), "min": min(spent), "max": max(spent)}


def collect(records, seed: int) -> dict:
  """Per stored point of ``seed``: d_min, per-trial b and 2d·b; and the bounds per (N, L).
  Progress on stderr."""
  rows = sorted(
    distinct([r for r in records if r.seed == seed]),
    key=lambda r: (r.params["method"], r.params["length"]),
  )
  data: dict[str, Any] = {"seed": seed, "points": [], "bounds": {}}
  for record in tqdm(rows, desc="bits per token", unit="point", file=sys.stderr):
    point = grid.Point(**{**record.params, "d_grid": tuple(record.params["d_grid"])})
    bits = [] if record.d_min is None else trial_bits(point, seed, record.d_min)
    data["points"].append(
      {
        "method": point.method,
        "dtype": point.dtype,
        "length": point.length,
        "nnz": point.nnz,
        "d": record.d_min,
        "top": int(record.d[-1]),
        "bits": bits,
        "bits_per_token": None if record.d_min is None else bits_per_token(record.d_min, bits),
      }
    )
    data["bounds"].setdefault(str(point.nnz), {})[str(point.length)] = {
      family: ja.theory.pattern_bits(family, point.length, point.nnz) for family in BOUNDS
    }
  data["device"] = jax.devices()[0].device_kind
  return data
