"""The search over d for methods built per d, and its cost model (docs/practice.md,
docs/scale-and-speed.md).

Adaptive: per trial, up by doublings of d until it verifies, ``check_above``
levels above that top, then down to the first failure (``next_level``); each
probe built at ``probe_width``; the levels left out are ``NOT_EVALUATED`` and
imputed by monotonicity (``impute_verdicts``). Full: every grid d. ``ja.min_d``
and ``ja.verify_grid`` run the one ``ja.Compute(schedule=...)`` names, or the
cheaper by ``search_cost`` (``choose_schedule``). These parts are public for
plans (``adaptive_probes``, ``search_cost``) and for checks of the schedule.
"""

from jaxattn._src.cost import (
  COMPILE_COST,
  LEVEL_COST,
  PASSES,
  SUPPORT_COST,
  SearchTerms,
  choose_schedule,
  probes,
  search_cost,
  search_terms,
  threshold_hint,
)
from jaxattn._src.estimators import NOT_EVALUATED, impute_verdicts
from jaxattn._src.schedule import MIN_PROBE_WIDTH, adaptive_probes, next_level, probe_width

__all__ = [
  "COMPILE_COST",
  "LEVEL_COST",
  "MIN_PROBE_WIDTH",
  "NOT_EVALUATED",
  "PASSES",
  "SUPPORT_COST",
  "SearchTerms",
  "adaptive_probes",
  "choose_schedule",
  "impute_verdicts",
  "next_level",
  "probe_width",
  "probes",
  "search_cost",
  "search_terms",
  "threshold_hint",
]
