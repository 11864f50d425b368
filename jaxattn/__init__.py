"""jaxattn: what a fixed self-attention layer can express, tested exactly and at scale.

Likhosherstov, Choromanski & Weller, *On the Expressive Power of
Self-Attention Matrices* (arXiv 2106.03764): a layer with fixed W_Q, W_K
(ε1, ε2)-approximates any pattern with ≤ N nonzeros per row and column, by
choosing its input X, once d = O(log L). Definitions: docs/definitions.md;
proofs and bounds: docs/theory.md.

Modules: ``certify`` (certified verdicts: the rounding bound and the exact host stage),
``schedule`` (the adaptive search over d for methods built per d),
``construct`` (the constructions and their registry), ``patterns``
(pattern generators), ``reference`` (a dense float64 check), ``stats``
(binomial intervals), ``theory`` (provable bounds).
"""

import warnings

from jaxattn import certify, construct, patterns, reference, schedule, stats, theory
from jaxattn._src.base import (
  DTYPES,
  Solution,
  check_d,
  check_d_grid,
  check_eps,
  check_outside_mass,
  dtype_context,
)
from jaxattn._src.options import Compute
from jaxattn._src.pattern import SparsePattern, check_causal
from jaxattn._src.precision import precision_bits
from jaxattn._src.estimators import MinDResult
from jaxattn._src.grid_kernel import trial_keys
from jaxattn._src.search import geometric_grid, min_d, verify_grid
from jaxattn._src.tiles import default_tiles
from jaxattn._src.stream import RowStats, row_stats
from jaxattn._src.verify import Report, check_block_size, verify

__version__ = "0.1.0"

__all__ = [
  "Compute",
  "DTYPES",
  "MinDResult",
  "Report",
  "RowStats",
  "Solution",
  "SparsePattern",
  "check_block_size",
  "check_causal",
  "check_d",
  "check_d_grid",
  "check_eps",
  "check_outside_mass",
  "certify",
  "construct",
  "default_tiles",
  "dtype_context",
  "geometric_grid",
  "min_d",
  "patterns",
  "precision_bits",
  "reference",
  "schedule",
  "row_stats",
  "stats",
  "theory",
  "trial_keys",
  "verify",
  "verify_grid",
]

# Names that moved to ``ja.schedule`` in 1.0: still found here, with a DeprecationWarning.
_MOVED_TO_SCHEDULE = (
  "NOT_EVALUATED",
  "adaptive_probes",
  "impute_verdicts",
  "next_level",
  "probe_width",
)


def __getattr__(name: str):
  if name in _MOVED_TO_SCHEDULE:
    warnings.warn(f"ja.{name} moved to ja.schedule.{name}", DeprecationWarning, stacklevel=2)
    return getattr(schedule, name)
  raise AttributeError(f"module 'jaxattn' has no attribute {name!r}")
