"""Certified verdicts: the rounding bound, the row states, the exact host stage (docs/certified.md).

``ja.verify``, ``ja.verify_grid`` and ``ja.min_d`` use these already; they are
public for benchmarks and for checks of other kernels' figures.
"""

from jaxattn._src.certify import (
  CERTAIN_FAIL,
  CERTAIN_OK,
  LOG_ULPS,
  MATMUL_FORMATS,
  ROUNDING_MODELS,
  UNDECIDED,
  RoundingModel,
  Thresholds,
  certifiable,
  level_states,
  rounding_model,
  thresholds,
  unit_roundoff,
)
from jaxattn._src.exact import exact_dot, exp_at_most, rows_ok_exact
from jaxattn._src.grid_kernel import RECHECK_SHARE, recheck_rows
from jaxattn._src.host_stage import HOST_ROWS, HostRows, exact_level, undecided_rows
from jaxattn._src.verify import row_states, settle_rows

__all__ = [
  "CERTAIN_FAIL",
  "CERTAIN_OK",
  "HOST_ROWS",
  "LOG_ULPS",
  "MATMUL_FORMATS",
  "RECHECK_SHARE",
  "ROUNDING_MODELS",
  "UNDECIDED",
  "HostRows",
  "RoundingModel",
  "Thresholds",
  "certifiable",
  "exact_dot",
  "exact_level",
  "exp_at_most",
  "level_states",
  "recheck_rows",
  "rounding_model",
  "row_states",
  "rows_ok_exact",
  "settle_rows",
  "thresholds",
  "undecided_rows",
  "unit_roundoff",
]
