"""Constructions of the input X for fixed W_Q, W_K: ``method(key, pattern, d, eps1, eps2)``."""

from jaxattn._src.construct import (DTYPES, METHODS, PARAMS, Solution, build, identity_params, jl, lstsq,
                                    moment_curve, optimize, random_params, solution_from_factors,
                                    target_logits)
from jaxattn._src.optimize import OptimizeResult, optimize_run

__all__ = ["DTYPES", "METHODS", "OptimizeResult", "PARAMS", "Solution", "build", "identity_params", "jl",
           "lstsq", "moment_curve", "optimize", "optimize_run", "random_params",
           "solution_from_factors", "target_logits"]
