"""Pattern generators ``f(key, length, nnz, a_min) -> SparsePattern`` (jit-able, vmappable), and
the published masks of efficient transformers as families ``family(key, length, a_min=1.0)``."""

from jaxattn._src.graphs import from_graph, knn
from jaxattn._src.pattern import SparsePattern, from_rows
from jaxattn._src.patterns import (
  CAUSAL_GENERATORS,
  GENERATORS,
  Sampler,
  banded,
  block_diagonal,
  is_causal,
  random_causal,
  random_regular,
  random_sparse,
  strided,
)
from jaxattn._src.lsh import hash_rotated, lsh_buckets, lsh_candidates
from jaxattn._src.family import Bounds, Family, union
from jaxattn._src.published import (
  FAMILIES,
  BigBird,
  Longformer,
  ReformerLSH,
  SparseTransformerFixed,
  SparseTransformerStrided,
  family_from_spec,
)

__all__ = [
  "CAUSAL_GENERATORS",
  "FAMILIES",
  "GENERATORS",
  "BigBird",
  "Bounds",
  "Family",
  "Longformer",
  "ReformerLSH",
  "Sampler",
  "SparsePattern",
  "SparseTransformerFixed",
  "SparseTransformerStrided",
  "banded",
  "block_diagonal",
  "family_from_spec",
  "from_graph",
  "from_rows",
  "hash_rotated",
  "is_causal",
  "knn",
  "lsh_buckets",
  "lsh_candidates",
  "random_causal",
  "random_regular",
  "random_sparse",
  "strided",
  "union",
]
