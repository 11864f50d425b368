"""Statistics over trials: binomial intervals of success rates, order-statistic quantile
intervals."""

from jaxattn._src.stats import clopper_pearson, quantile_interval, quantile_ranks

__all__ = ["clopper_pearson", "quantile_interval", "quantile_ranks"]
