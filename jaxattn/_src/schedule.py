"""The adaptive schedule of a search over d for methods built per d (docs/practice.md).

Per trial: bracket upward by doublings of d until it verifies (its top),
check ``check_above`` levels above the top, then scan down to the first
failure; every probe is built at its own d, padded to ``probe_width``. The
levels it does not evaluate are imputed by monotonicity
(``estimators.impute_verdicts``).
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from jaxattn._src.base import check_d_grid
from jaxattn._src.construct import NESTED
from jaxattn._src.estimators import NOT_EVALUATED, highest_failure
from jaxattn._src.host_stage import settle_levels


def next_level(d_grid: Sequence[int], states: np.ndarray, check_above: int = 1) -> int | None:
  """The grid level an adaptive search evaluates next for one trial, from its states int8 [G]
  (1, 0, ``NOT_EVALUATED``); None when its d*_t is settled.

  With floor = its highest failing level and top = its lowest verifying level
  above the floor: (1) no top yet: bracket upward in d, the first grid d ≥
  twice the highest evaluated d (None if that was the top of the grid:
  not reached); (2) the ``check_above`` levels above the top (a failure
  there raises the floor and the bracket resumes); (3) down from the top to
  the floor. The top is at most the first grid d ≥ 2·d*_t, and only
  ``check_above`` levels above it are built. d*_t = the grid d above the
  floor is exact when the trial verifies at every grid d above its top that
  was not evaluated.
  """
  states = np.asarray(states)
  levels, floor = len(d_grid), int(highest_failure(states[None])[0])
  passed = np.flatnonzero(states[floor + 1 :] == 1) + floor + 1
  if not passed.size:
    known = np.flatnonzero(states != NOT_EVALUATED)
    if not known.size:
      return 0
    last = int(known.max())
    if last == levels - 1:
      return None
    return max(last + 1, min(int(np.searchsorted(d_grid, 2 * d_grid[last])), levels - 1))
  top = int(passed.min())
  above = range(top + 1, min(top + 1 + check_above, levels))
  for level in [*above, *range(top - 1, floor, -1)]:
    if states[level] == NOT_EVALUATED:
      return level
  return None


# The narrowest padded width of an adaptive search's probes: fewer compiled programs, and a
# build's fixed cost (``bench perf``'s c ≈ 34 in units of d) dominates below it.
MIN_PROBE_WIDTH = 32


def probe_width(d: int, d_max: int) -> int:
  """The padded width of an adaptive probe at d: min(d_max, max(MIN_PROBE_WIDTH, 2^⌈log2 d⌉))."""
  return min(d_max, max(MIN_PROBE_WIDTH, 1 << (int(d) - 1).bit_length()))


def adaptive_probes(
  d_grid: Sequence[int], threshold: float, check_above: int = 1
) -> list[tuple[int, int]]:
  """(d, padded width) of each probe, in order, of ``min_d``'s adaptive search for a trial whose
  verdicts are monotone with d*_t = the first grid d ≥ ``threshold`` (+inf: never verifies).

  The cost model of a plan: each probe builds the method once at its width.
  """
  d_grid = check_d_grid(d_grid)
  states = np.full(len(d_grid), NOT_EVALUATED, np.int8)
  probes = []
  while (level := next_level(d_grid, states, check_above)) is not None:
    states[level] = d_grid[level] >= threshold
    probes.append((d_grid[level], probe_width(d_grid[level], d_grid[-1])))
  return probes


def adaptive_states(
  run, exact, d_grid: tuple[int, ...], trials: int, check_above: int
) -> tuple[np.ndarray, int]:
  """(states int8 [T, G] with ``NOT_EVALUATED``, levels settled on the host) of an adaptive
  search: each round, every unsettled trial's ``next_level``, one ``run`` per probe width."""
  states = np.full((trials, len(d_grid)), NOT_EVALUATED, np.int8)
  host_levels = 0
  while True:
    wanted = np.array([_or(next_level(d_grid, row, check_above), -1) for row in states])
    if np.all(wanted < 0):
      return states, host_levels
    widths = np.array([probe_width(d_grid[g], d_grid[-1]) if g >= 0 else 0 for g in wanted])
    for width in np.unique(widths[wanted >= 0]).tolist():
      host_levels += _probe(run, exact, states, wanted, widths == width, width, d_grid)


def _probe(
  run,
  exact,
  states: np.ndarray,
  levels: np.ndarray,
  active: np.ndarray,
  width: int,
  d_grid: tuple[int, ...],
) -> int:
  """Writes into ``states`` every active trial t's verdict at ``d_grid[levels[t]]``, built
  padded to ``width``; returns how many needed the host stage."""
  d = np.where(active, np.asarray(d_grid)[np.maximum(levels, 0)], 0)
  level_states, host_rows = run((jnp.asarray(d, jnp.int32), jnp.asarray(active)), width=width)
  verdicts, settled = settle_levels(
    level_states, host_rows, lambda t, _, rows: exact(t, int(levels[t]), rows, width=width)
  )
  states[active, levels[active]] = verdicts[active, 0]
  return settled


def _or(value, default):
  return default if value is None else value


def check_schedule(schedule: str | None, method: str) -> None:
  """ValueError for ``schedule="adaptive"`` with a nested method (every d is read off one draw);
  the values themselves are ``options.check_compute``'s."""
  if schedule == "adaptive" and method in NESTED:
    raise ValueError(
      f"schedule='adaptive' needs a method built per d; {method!r} is nested "
      "(every d is read off one draw)"
    )
