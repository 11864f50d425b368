"""jaxattn: what a fixed self-attention layer can express, tested exactly and at scale.

Likhosherstov, Choromanski & Weller, *On the Expressive Power of
Self-Attention Matrices* (arXiv 2106.03764): a layer with fixed W_Q, W_K
(ε1, ε2)-approximates any pattern with ≤ N nonzeros per row and column, by
choosing its input X, once d = O(log L). Definitions: docs/definitions.md;
proofs and bounds: docs/theory.md.

Modules: ``certify`` (certified verdicts: the rounding bound and the exact host stage),
``construct`` (the constructions and their registry), ``patterns``
(pattern generators), ``reference`` (a dense float64 check), ``stats``
(binomial intervals), ``theory`` (provable bounds).
"""

from jaxattn import certify, construct, patterns, reference, stats, theory
from jaxattn._src.base import (DTYPES, Solution, check_d, check_d_grid, check_eps,
                               check_outside_mass, dtype_context)
from jaxattn._src.pattern import SparsePattern, check_causal
from jaxattn._src.precision import precision_bits
from jaxattn._src.estimators import NOT_EVALUATED, MinDResult, impute_verdicts
from jaxattn._src.grid_kernel import trial_keys
from jaxattn._src.schedule import adaptive_probes, next_level, probe_width
from jaxattn._src.search import geometric_grid, min_d, verify_grid
from jaxattn._src.tiles import default_tiles
from jaxattn._src.verify import Report, RowStats, check_block_size, row_stats, verify

__version__ = "0.1.0"

__all__ = [
    "DTYPES",
    "MinDResult",
    "NOT_EVALUATED",
    "Report",
    "RowStats",
    "Solution",
    "adaptive_probes",
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
    "impute_verdicts",
    "min_d",
    "next_level",
    "patterns",
    "precision_bits",
    "probe_width",
    "reference",
    "row_stats",
    "stats",
    "theory",
    "trial_keys",
    "verify",
    "verify_grid",
]
