"""Pattern generators ``f(key, length, nnz, a_min) -> SparsePattern`` (jit-able, vmappable)."""

from jaxattn._src.pattern import SparsePattern, from_rows
from jaxattn._src.patterns import (GENERATORS, Sampler, banded, block_diagonal, random_regular,
                                   random_sparse, strided)

__all__ = ["GENERATORS", "Sampler", "SparsePattern", "banded", "block_diagonal", "from_rows",
           "random_regular", "random_sparse", "strided"]
