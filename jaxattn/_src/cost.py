"""The cost model of a search over d: the schedule a search runs when none is named, and the
plans of the commands (docs/practice.md, "Which schedule, when none is named").

A search of T trials over a grid of G dimensions up to d_max costs, in
multiply-adds of the logit products plus its compilations,

  nested (one pass, every d read off one draw):  T·L²·s·P·(d_max + c·G) + C
  full, built per d (one loop padded to d_max):  T·L²·s·P·G·(d_max + c) + C
  adaptive (``schedule``: probes (d, w)):         T·L²·s·P·Σ_probes (w + c) + C·#widths

with c = ``LEVEL_COST`` columns per level, C = ``COMPILE_COST`` per compiled
program, P = ``PASSES`` streamed passes per build, and s the share of key
tiles a causal pass runs (1 for a bidirectional layer). The adaptive search's
probes are those of a trial whose threshold is ``threshold_hint``.
"""

from __future__ import annotations

import math
from typing import Sequence

from jaxattn._src.construct import NESTED
from jaxattn._src.schedule import adaptive_probes

# c: the cost of a level in columns of the product, measured by `python -m bench perf` ("search
# cost per level"): 33 at L = 4096 (d = 128…512) and 34 at L = 8192 (d = 181…724), 17 levels
# each, on the 2-core CPU; runs under load ranged 16–54 (docs/certified.md).
LEVEL_COST = 34
# C: one compiled program, in the same units: about 2.8 s at the 2-core CPU's 2.5e10 units per
# second (bench's ``runner.COST_RATE``).
COMPILE_COST = 7e10
# P: streamed passes per build: 1, but 25 for optimize (8–21 mining passes and checks per trial and
# d in `python -m bench beyond`, each dearer than a verification pass: P is set so that the beyond
# preset's optimize and lstsq points at L = 65536 cost 2.85x, as measured: 1015 s and 356 s).
PASSES = {"optimize": 25}


def threshold_hint(method: str, length: int, nnz: int) -> float:
  """Where a plan assumes a method's trials first verify (d*_t): lstsq 4·N·ln L and optimize
  a fifth of it (docs/beyond.md's fitted slopes at N = 2: 8.1 and 1.6 per unit of ln L),
  moment_curve 2N, onehot L; +inf (never: the bracket to the top of the grid, the most an
  adaptive search builds) for any other method."""
  lstsq = 4 * nnz * math.log(length)
  return {"lstsq": lstsq, "optimize": lstsq / 5, "moment_curve": 2 * nnz,
          "onehot": length}.get(method, math.inf)


def probes(method: str, length: int, nnz: int, d_grid: Sequence[int]) -> list[tuple[int, int]]:
  """(d, padded width) of each probe of an adaptive search per trial, were its threshold
  ``threshold_hint`` (``schedule.adaptive_probes``)."""
  return adaptive_probes(d_grid, threshold_hint(method, length, nnz))


def search_cost(method: str, length: int, nnz: int, d_grid: Sequence[int], *, schedule: str,
                trials: int = 1, causal_share: float = 1.0) -> float:
  """The model's cost of a search (module docstring) on ``schedule`` ("full" or "adaptive"; a
  nested method always reads its grid off one pass)."""
  d_max, levels = d_grid[-1], len(d_grid)
  if method in NESTED:
    columns, compiles = d_max + LEVEL_COST * levels, 1
  elif schedule == "full":
    columns, compiles = levels * (d_max + LEVEL_COST), 1
  else:
    widths = [w for _, w in probes(method, length, nnz, d_grid)]
    columns, compiles = sum(widths) + LEVEL_COST * len(widths), len(set(widths))
  work = trials * length**2 * causal_share * columns * PASSES.get(method, 1)
  return work + COMPILE_COST * compiles


def choose_schedule(method: str, length: int, nnz: int, d_grid: Sequence[int],
                    trials: int = 1) -> str:
  """The schedule of a search whose caller names none: "full" for a nested method, else the
  cheaper of "full" and "adaptive" by ``search_cost`` — full where compilation dominates
  (small L, cheap builds: one program instead of one per probe width), adaptive where
  building every grid d does (large L, or optimize's passes)."""
  if method in NESTED:
    return "full"
  costs = {name: search_cost(method, length, nnz, d_grid, schedule=name, trials=trials)
           for name in ("full", "adaptive")}
  return min(costs, key=costs.__getitem__)
