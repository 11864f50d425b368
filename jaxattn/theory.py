"""Provable bounds for the constructions (derivations in docs/theory.md)."""

from jaxattn._src.theory import jl_dim, jl_inner_product_failure, pattern_bits

__all__ = ["jl_dim", "jl_inner_product_failure", "pattern_bits"]
