"""Constructions of the input X for fixed W_Q, W_K: ``method(key, pattern, d, eps1, eps2)``."""

from jaxattn._src.base import (DTYPES, HIGHEST, PARAMS, FactorFn, Factors, IdentityBlock,
                               Solution, identity_params, random_params, solution_from_factors,
                               target_logits)
from jaxattn._src.construct import (CAUSAL_AWARE, MASS_AWARE, METHODS, NESTED, build, jl, lstsq,
                                    moment_curve, onehot, optimize, register_method,
                                    unregister_method)
from jaxattn._src.optimize import NEGATIVES, OptimizeResult, Training, optimize_run

__all__ = ["CAUSAL_AWARE", "DTYPES", "HIGHEST", "MASS_AWARE", "METHODS", "NEGATIVES", "NESTED",
           "PARAMS", "FactorFn", "Factors", "IdentityBlock", "OptimizeResult", "Solution", "build",
           "identity_params", "jl", "lstsq", "moment_curve", "onehot", "optimize", "optimize_run",
           "random_params", "register_method", "solution_from_factors", "target_logits",
           "Training", "unregister_method"]
