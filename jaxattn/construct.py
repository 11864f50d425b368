"""Constructions of the input X for fixed W_Q, W_K: ``method(key, pattern, d, eps1, eps2)``."""

from jaxattn._src.construct import METHODS, Solution, build, identity_params, jl, target_logits

__all__ = ["METHODS", "Solution", "build", "identity_params", "jl", "target_logits"]
