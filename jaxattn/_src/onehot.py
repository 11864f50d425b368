"""The trivial reference construction: one-hot keys, queries the target logits (d = L).

K = I_L (key j is the j-th standard basis vector) and Q_i = B_i, the row of
target logits (``base.target_logits``: B_ij = ln A_ij + c_i on S_i, 0 off it),
so that ℓ = Q Kᵀ = B exactly and row-softmax(B) meets both conditions. It
needs d = L: below L, keys j ≥ d are zero and their logits 0, so a row with
support beyond the first d keys fails. Every pattern verifies at d = L with
this construction, which therefore bounds every grid: no search need go above L.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Int, PRNGKeyArray

from jaxattn._src.base import Factors, target_logits
from jaxattn._src.pattern import SparsePattern


def onehot_factors(
  key: PRNGKeyArray,
  pattern: SparsePattern,
  d: Int[Array, ""] | int,
  width: int,
  eps1,
  eps2,
  *,
  dtype=None,
  max_outside_mass=None,
) -> Factors:
  """Q[i, j] = B_ij, K[j, j] = 1 for j < min(d, width), zero elsewhere: Q Kᵀ = B once d ≥ L.

  ``key`` and ``dtype`` are unused (computed in the pattern's float dtype).
  With η = ``max_outside_mass``, B carries the mass criterion's shift.
  Memory O(L·width).
  """
  del key, dtype
  length = pattern.length
  logits = target_logits(pattern, eps1, eps2, max_outside_mass)
  kept = pattern.valid & (pattern.cols < d) & (pattern.cols < width)
  rows = jnp.broadcast_to(jnp.arange(length)[:, None], pattern.cols.shape)
  queries = (
    jnp.zeros((length, width), logits.dtype)
    .at[rows, jnp.minimum(pattern.cols, width - 1)]
    .add(jnp.where(kept, logits, 0.0))
  )
  columns = jnp.arange(width)
  keys = ((jnp.arange(length)[:, None] == columns) & (columns < d)).astype(logits.dtype)
  return queries, keys
