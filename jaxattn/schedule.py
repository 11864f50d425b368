"""The adaptive search over d for methods built per d (docs/practice.md).

Per trial: up by doublings of d until it verifies, ``check_above`` levels
above that top, then down to the first failure (``next_level``); each probe
built at ``probe_width``; the levels left out are ``NOT_EVALUATED`` and
imputed by monotonicity (``impute_verdicts``). ``ja.min_d`` and
``ja.verify_grid`` run it; these parts are public for plans
(``adaptive_probes``) and for checks of the schedule.
"""

from jaxattn._src.estimators import NOT_EVALUATED, impute_verdicts
from jaxattn._src.schedule import MIN_PROBE_WIDTH, adaptive_probes, next_level, probe_width

__all__ = ["MIN_PROBE_WIDTH", "NOT_EVALUATED", "adaptive_probes", "impute_verdicts", "next_level",
           "probe_width"]
