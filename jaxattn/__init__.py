"""jaxattn: what a fixed self-attention layer can express, tested exactly and at scale.

Likhosherstov, Choromanski & Weller, *On the Expressive Power of
Self-Attention Matrices* (arXiv 2106.03764): a layer with fixed W_Q, W_K
(ε1, ε2)-approximates any pattern with ≤ N nonzeros per row and column, by
choosing its input X, once d = O(log L). See DESIGN §2 and docs/theory.md.
"""

from jaxattn import construct, patterns, theory
from jaxattn._src.construct import Solution
from jaxattn._src.pattern import SparsePattern
from jaxattn._src.search import MinDResult, min_d, verify_grid
from jaxattn._src.verify import Report, verify

__version__ = "0.1.0"

__all__ = [
    "MinDResult",
    "Report",
    "Solution",
    "SparsePattern",
    "construct",
    "min_d",
    "patterns",
    "theory",
    "verify",
    "verify_grid",
]
