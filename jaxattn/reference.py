"""A dense float64 NumPy check of the (ε1, ε2)-approximation, for small L."""

from jaxattn._src.reference import DenseReport, dense_check, logits_check

__all__ = ["DenseReport", "dense_check", "logits_check"]
