"""Statistics of success counts over trials."""

from jaxattn._src.stats import clopper_pearson

__all__ = ["clopper_pearson"]
