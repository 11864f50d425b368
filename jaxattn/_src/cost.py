"""The cost model of a search over d: the schedule a search runs when none is named, and the
plans of the commands (docs/practice.md, "Which schedule, when none is named").

A search of T trials over a grid of G dimensions up to d_max costs, in
multiply-adds of the logit products plus its compilations,

  nested (one pass, every d read off one draw):  T·L·s·(P·L + S·N²)·(d_max + c·G) + C
  full, built per d (one loop padded to d_max):  T·L·s·(P·L + S·N²)·G·(d_max + c) + C
  adaptive (``schedule``: probes (d, w)):         T·L·s·(P·L + S·N²)·Σ_probes (w + c) + C·#widths

with c = ``LEVEL_COST`` columns per level, C = ``COMPILE_COST`` per compiled
program, P = ``PASSES`` streamed passes per build, S = ``SUPPORT_COST`` the work
of a build on each row's N support entries per column (optimize's Adam steps,
lstsq's solves), and s the share of key tiles a causal pass runs (1 for a
bidirectional layer). The adaptive search's
probes are those of a trial whose threshold is ``threshold_hint``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

from jaxattn._src.construct import NESTED
from jaxattn._src.schedule import adaptive_probes

# c: the cost of a level in columns of the product, measured by `python -m bench perf` ("search
# cost per level"): 33 at L = 4096 (d = 128…512) and 34 at L = 8192 (d = 181…724), 17 levels
# each, on the 2-core CPU; runs under load ranged 16–54 (docs/certified.md).
LEVEL_COST = 34
# C and S: fitted with the runner's rate (``runner.COST_RATE``) to the stored wall times of the
# quick, long, practice and causal presets on the 2-core CPU at bf0dccb and e0bf915 (docs/data/,
# 138 points, relative errors in non-negative least squares):
#   python -m jaxattn_bench.cost_fit docs/data/{quick,long,practice,causal}.sqlite
# C: one compiled program, in the units of the products: about 1.43 s at 7.98e10 units per second.
COMPILE_COST = 1.14e11
# P: streamed passes per build: 1, but 25 for optimize (8–21 mining passes and checks per trial and
# d in `python -m bench beyond`, each dearer than a verification pass: P is set so that the beyond
# preset's optimize and lstsq points at L = 65536 cost 2.85x, as measured: 1015 s and 356 s).
PASSES = {"optimize": 25}
# S: a build's work on the N support entries of a row, per column (optimize's Adam steps on the
# support and hard negatives, lstsq's solves); none for the other methods.
SUPPORT_COST = {"optimize": 869.0, "lstsq": 261.0}


def threshold_hint(method: str, length: int, nnz: int) -> float:
  """Where a plan assumes a method's trials first verify (d*_t): lstsq 4·N·ln L and optimize
  a fifth of it (docs/beyond.md's fitted slopes at N = 2: 8.1 and 1.6 per unit of ln L),
  moment_curve 2N, onehot L; +inf (never: the bracket to the top of the grid, the most an
  adaptive search builds) for any other method."""
  lstsq = 4 * nnz * math.log(length)
  return {"lstsq": lstsq, "optimize": lstsq / 5, "moment_curve": 2 * nnz, "onehot": length}.get(
    method, math.inf
  )


def probes(method: str, length: int, nnz: int, d_grid: Sequence[int]) -> list[tuple[int, int]]:
  """(d, padded width) of each probe of an adaptive search per trial, were its threshold
  ``threshold_hint`` (``schedule.adaptive_probes``)."""
  return adaptive_probes(d_grid, threshold_hint(method, length, nnz))


class SearchTerms(NamedTuple):
  """The parts of a search's cost (``search_cost``) before its constants S and C."""

  keys: float  # T·L²·s·P·columns: multiply-adds of the logit products
  support: float  # T·L·s·N²·columns: the work on the rows' supports, in units of S
  compiles: int  # compiled programs

  def cost(self, method: str) -> float:
    """keys + S·support + C·compiles, with ``method``'s S (``SUPPORT_COST``, 0 if not listed)."""
    return self.keys + SUPPORT_COST.get(method, 0.0) * self.support + COMPILE_COST * self.compiles


def search_terms(
  method: str,
  length: int,
  nnz: int,
  d_grid: Sequence[int],
  *,
  schedule: str,
  trials: int = 1,
  causal_share: float = 1.0,
) -> SearchTerms:
  """The terms of ``search_cost`` on ``schedule`` ("full" or "adaptive"; a nested method always
  reads its grid off one pass): columns = d_max + c·G (nested), G·(d_max + c) (full) or
  Σ_probes (w + c) (adaptive)."""
  d_max, levels = d_grid[-1], len(d_grid)
  if method in NESTED:
    columns, compiles = d_max + LEVEL_COST * levels, 1
  elif schedule == "full":
    columns, compiles = levels * (d_max + LEVEL_COST), 1
  else:
    widths = [w for _, w in probes(method, length, nnz, d_grid)]
    columns, compiles = sum(widths) + LEVEL_COST * len(widths), len(set(widths))
  rows = trials * length * causal_share * columns
  return SearchTerms(rows * length * PASSES.get(method, 1), rows * nnz**2, compiles)


def search_cost(
  method: str,
  length: int,
  nnz: int,
  d_grid: Sequence[int],
  *,
  schedule: str,
  trials: int = 1,
  causal_share: float = 1.0,
) -> float:
  """The model's cost of a search (module docstring): keys + S·support + C·compiles of its
  ``search_terms``."""
  return search_terms(
    method, length, nnz, d_grid, schedule=schedule, trials=trials, causal_share=causal_share
  ).cost(method)


def choose_schedule(
  method: str, length: int, nnz: int, d_grid: Sequence[int], trials: int = 1
) -> str:
  """The schedule of a search whose caller names none: "full" for a nested method, else the
  cheaper of "full" and "adaptive" by ``search_cost`` — full where compilation dominates
  (small L, cheap builds: one program instead of one per probe width), adaptive where
  building every grid d does (large L, or optimize's passes)."""
  if method in NESTED:
    return "full"
  costs = {
    name: search_cost(method, length, nnz, d_grid, schedule=name, trials=trials)
    for name in ("full", "adaptive")
  }
  return min(costs, key=costs.__getitem__)
