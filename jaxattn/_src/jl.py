"""The paper's construction (Likhosherstov et al. 2021, Thm. 1) as a factor function.

Q = B R, K = R with B_{i,S_i} = ln A_{i,S_i} + c_i (``base.target_logits``)
and R ∈ R^{L×d} Gaussian with variance 1/d: Q Kᵀ = B R Rᵀ is an unbiased
Johnson–Lindenstrauss estimate of B (docs/definitions.md).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Int, PRNGKeyArray

from jaxattn._src.base import Factors, prefix_gaussian, sparse_matmul, target_logits
from jaxattn._src.pattern import SparsePattern


def jl_factors(
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
  """Factors of the paper's construction at dimension d, padded to ``width``.

  R = G[:, :d]/√d with G = ``prefix_gaussian(key, L, width)``; Q = B R, K = R,
  columns ≥ d zero. Q Kᵀ = B R Rᵀ is an unbiased estimate of B. Computed in
  the pattern's float dtype; the evaluation ``dtype`` does not change it.
  With η = ``max_outside_mass``, B carries the mass criterion's larger shift
  (``target_logits``).
  """
  del dtype
  gauss = prefix_gaussian(key, pattern.length, width, pattern.weights.dtype)
  r = jnp.where(jnp.arange(width) < d, gauss, 0.0) / jnp.sqrt(jnp.asarray(d, gauss.dtype))
  return sparse_matmul(pattern, target_logits(pattern, eps1, eps2, max_outside_mass), r), r
