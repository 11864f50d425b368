"""Certified verdicts: the rounding bound covers the true error, and every verdict is the exact one.

The exact references are independent of the kernel and of ``jaxattn._src.exact``:
the exact oracle of tests/exact_oracle.py (integer products for the logits,
correctly rounded ``decimal`` logarithms), and the dense float64 check
``ja.reference.dense_check`` only through ``exact_oracle.float_row_ok``,
which refuses a row whose figure lies inside float64's margin.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattn as ja
from jaxattn._src import certify, exact
from jaxattn.construct import solution_from_factors
from jaxattn_bench import rounding_probe as probe

from tests import exact_oracle as oracle


@pytest.mark.parametrize("d", [1, 16, 17, 700, 4096])
@pytest.mark.parametrize("case", sorted(probe.CASES))
@pytest.mark.parametrize("matmul_dtype", [None, jnp.bfloat16])
def test_the_bound_covers_the_exact_error(d, case, matmul_dtype):
  queries, keys = probe.CASES[case](d)
  splits = sorted({1, max(1, d // 3), d})  # nested levels, scales d/d_g
  assert probe.worst_violation(queries, keys, splits, matmul_dtype) < 0
  assert probe.worst_violation(queries, keys, (d,), matmul_dtype, full=True) < 0


@pytest.mark.parametrize("d", [16, 700, 4096])
def test_a_bound_without_the_accumulation_term_fails(d, monkeypatch):
  """γ_{d+1} dropped on the float32-input path: the sequential case's error escapes it."""
  queries, keys = probe.sequential_case(d)
  assert probe.worst_violation(queries, keys, (d,)) < 0
  monkeypatch.setattr(certify, "gamma", lambda n, u: jnp.zeros_like(jnp.asarray(n, jnp.float32)))
  assert probe.worst_violation(queries, keys, (d,)) > 0


@pytest.mark.parametrize("d", [1, 64, 4096])
def test_a_bound_with_half_the_bfloat16_roundoff_fails(d, monkeypatch):
  """u_in = 2⁻⁹ instead of 2⁻⁸: same-direction input roundings escape it, in any order."""
  queries, keys = probe.bfloat16_case(d)
  assert probe.worst_violation(queries, keys, (d,), jnp.bfloat16) < 0
  unit = certify.unit_roundoff
  monkeypatch.setattr(
    certify,
    "unit_roundoff",
    lambda dtype: unit(dtype) / (2 if jnp.dtype(dtype) == jnp.bfloat16 else 1),
  )
  assert probe.worst_violation(queries, keys, (d,), jnp.bfloat16) > 0


def test_the_log_model_covers_xla_log():
  """|log(w) − ln w| ≤ LOG_ULPS·u·|ln w| for float32 weights over the whole range, near 1 too."""
  rng = np.random.default_rng(0)
  weights = np.concatenate(
    [
      np.exp2(rng.uniform(-126, 127, 200_000)),
      1 + rng.uniform(-1e-3, 1e-3, 100_000),
      np.nextafter(np.float32(1), np.float32(0)) - np.arange(1000) * 2.0**-24,
      1 + np.arange(1, 1000) * 2.0**-23,
      [2.0**-126, 1.0, 2.0**127],
    ]
  ).astype(np.float32)
  computed = np.asarray(jax.jit(jnp.log)(weights), np.float64)
  true = np.log(weights.astype(np.float64))
  excess = np.abs(computed - true) - certify.LOG_ULPS * certify.unit_roundoff(jnp.float32) * (
    np.abs(true)
  )
  assert np.max(excess) <= 0, weights[np.argmax(excess)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_dot_is_exact(dtype):
  rng = np.random.default_rng(3)
  q = (rng.standard_normal(300) * np.exp2(rng.integers(-60, 60, 300))).astype(dtype)
  k = (rng.standard_normal(300) * np.exp2(rng.integers(-60, 60, 300))).astype(dtype)
  q[:5] = 0
  want = sum(exact.Fraction(float(a)) * exact.Fraction(float(b)) for a, b in zip(q, k))
  assert exact.exact_dot(q, k) == want
  assert exact.exact_dot(np.zeros(3, dtype), k[:3]) == 0


def test_exp_at_most_decides_exactly():
  frac = exact.Fraction
  assert exact.exp_at_most(frac(0), frac(1)) and not exact.exp_at_most(frac(0), frac(1, 2))
  assert not exact.exp_at_most(frac(1, 10**30), frac(1))
  log_half = frac(-0.6931471805599453)  # the float64 nearest ln ½, just above it
  assert not exact.exp_at_most(log_half, frac(1, 2))
  assert exact.exp_at_most(log_half - frac(1, 10**16), frac(1, 2))
  assert not exact.exp_at_most(frac(-5), frac(-1))


PLANTED = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], np.float32)


def _planted_tie(offset, base=2000.0):
  """Logits base + x_j with x_0 = 0.4·2⁻¹³ and x_1 = x_0 + ln ½ + ``offset``: row 0's gap is
  ln ε2 + offset (ε2 = ½) and row 1's spread ln(1 + ε1) − offset (ε1 = 1), while float32 rounds
  base + x to multiples of 2⁻¹³ ≈ 1.2e-4, on every summation order (one addition per logit).
  Row 2 passes with a margin of 50."""
  x0 = 0.4 * 2.0**-13
  queries = np.array([[1, 1], [1, 1], [-1, 0]], np.float32)
  keys = np.array([[base, x0], [base, x0 + math.log(0.5) + offset], [base - 50, 0]], np.float32)
  return solution_from_factors(jnp.asarray(queries), jnp.asarray(keys))


def _exact_rows(sol):
  """Row verdicts of the dense float64 check, which resolves them (the offsets are ≫ float64's
  margin at logits of 2000; ``float_row_ok`` checks it)."""
  want = ja.reference.dense_check(
    sol.X, np.asarray(sol.w_q), np.asarray(sol.w_k), PLANTED, eps1=1.0, eps2=0.5
  )
  return oracle.float_row_ok(
    want, np.asarray(sol.queries()), np.asarray(sol.keys()), PLANTED, 1.0, 0.5
  )


@pytest.mark.parametrize("offset", [-3e-5, -1e-5, 1e-5, 3e-5])
@pytest.mark.parametrize("matmul", ["float32", "bfloat16"])
def test_planted_near_ties_are_decided_exactly(offset, matmul):
  sol = _planted_tie(offset)
  rep = ja.verify(sol, ja.SparsePattern.from_dense(PLANTED), eps1=1.0, eps2=0.5, matmul=matmul)
  assert bool(rep.certified)
  np.testing.assert_array_equal(rep.row_ok, _exact_rows(sol))
  assert int(rep.settled_on_host) > 0  # the bound cannot decide rows 0 and 1


def test_uncertified_float32_decides_some_planted_ties_wrongly():
  """The planted set is hard: the computed float32 figures decide some of it wrongly."""
  wrong = 0
  pattern = ja.SparsePattern.from_dense(PLANTED)
  for offset in np.linspace(-1e-4, 1e-4, 21):
    sol = _planted_tie(offset)
    want = _exact_rows(sol)
    computed = ja.verify(
      sol, pattern, eps1=1.0, eps2=0.5, max_outside_mass=0.999
    )  # uncertified path
    np.testing.assert_array_equal(ja.verify(sol, pattern, eps1=1.0, eps2=0.5).row_ok, want)
    wrong += int(np.sum(np.asarray(computed.row_ok) != want))
  assert wrong > 0


@pytest.mark.parametrize("eps1, ok", [(2.0**-41, False), (2.0**-39, True)])
def test_support_logits_are_exact_products_on_the_host(eps1, ok):
  """Row 0's support logits are 2²⁰ + 2⁻⁴⁰ and 2²⁰ (float32 factors): float64 rounds the first to
  2²⁰ (a tie, spread 0), the exact spread is 2⁻⁴⁰. The pass cannot decide the row; the host must
  take exact products, not float64 values, to fail it at ε1 = 2⁻⁴¹."""
  queries = np.array([[1, 1, 0], [0, 0, 1], [-1, 0, 0]], np.float32)
  keys = np.array([[2.0**20, 2.0**-40, 0], [2.0**20, 0, 10], [0, 0, 0]], np.float32)
  a = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]], np.float32)
  sol = solution_from_factors(jnp.asarray(queries), jnp.asarray(keys))
  rep = ja.verify(sol, ja.SparsePattern.from_dense(a), eps1=eps1, eps2=0.5)
  assert bool(rep.certified) and int(rep.settled_on_host) >= 1
  want = oracle.exact_row_ok(queries, keys, a, eps1, 0.5)
  assert bool(want[0]) == ok
  np.testing.assert_array_equal(rep.row_ok, want)


def test_wide_margins_need_no_recheck():
  pattern = ja.patterns.random_regular(jax.random.PRNGKey(0), length=64, nnz=2, a_min=0.5)
  for d, ok in ((32, False), (48, True)):  # leak 2.9 and 8e-6 against ε2 = 0.5
    rep = ja.verify(
      ja.construct.lstsq(jax.random.PRNGKey(1), pattern, d, eps1=0.5, eps2=0.5),
      pattern,
      eps1=0.5,
      eps2=0.5,
    )
    assert bool(rep.ok) == ok and bool(rep.certified)
    assert int(rep.settled_by_bound) == 64 and int(rep.settled_on_host) == 0


def test_uncertified_settings_say_so():
  pattern = ja.patterns.random_regular(jax.random.PRNGKey(0), length=32, nnz=1, a_min=0.5)
  sol = ja.construct.lstsq(jax.random.PRNGKey(1), pattern, 16, eps1=0.5, eps2=0.5)
  assert bool(ja.verify(sol, pattern, eps1=0.5, eps2=0.5).certified)
  assert not bool(ja.verify(sol, pattern, eps1=0.5, eps2=0.5, max_outside_mass=0.5).certified)
  assert not bool(ja.verify(sol, pattern, eps1=0.5, eps2=0.5, layer_dtype=jnp.bfloat16).certified)
  assert not bool(ja.verify(sol, pattern, eps1=0.5, eps2=0.5, dtype="bfloat16").certified)
  assert not bool(jax.jit(lambda s: ja.verify(s, pattern, eps1=0.5, eps2=0.5))(sol).certified)
  with pytest.raises(ValueError, match="matmul must be one of"):
    ja.verify(sol, pattern, eps1=0.5, eps2=0.5, matmul="float16")


def test_min_d_settles_undecided_levels_exactly():
  """ε1 placed at trial 0's computed spread of one nested level: the pass cannot decide that
  level, the host does (from the listed rows, or, had there been more than ``HOST_ROWS``, by
  redoing the level's pass: the same verdict), and every verdict equals exact arithmetic on the
  trial's factors."""
  from jaxattn._src import grid_kernel, host_stage
  from jaxattn._src.options import Criterion, SearchSpec

  trials = 2
  if "jl_fixed_eps" not in ja.construct.METHODS:  # jl whose factors do not depend on ε
    jl = ja.construct.METHODS["jl"]
    ja.construct.register_method(
      "jl_fixed_eps",
      lambda key, p, d, width, eps1, eps2, **kw: jl(key, p, d, width, 0.5, 0.5, **kw),
      nested=True,
    )
  sampler = ja.patterns.Sampler("random_regular", length=32, nnz=2, a_min=0.5)
  key, grid = jax.random.PRNGKey(2), (16, 32, 64, 128)
  pattern_keys, method_keys = ja.trial_keys(key, trials)
  pattern = sampler(pattern_keys[0])
  queries, keys = host_stage.trial_factors(
    method_keys[0], pattern, 128, 0.5, 0.5, method="jl_fixed_eps", width=128, dtype="float32"
  )
  scales = jnp.asarray([128 / d for d in grid], jnp.float32)
  stats = ja.row_stats(queries, keys, pattern, grid, scales, full=False)
  eps2 = 0.9
  level = int(np.argmax(np.max(stats.gap, 1) < math.log(eps2) - 0.1))  # zeros held with margin
  eps1 = float(np.expm1(np.float64(np.max(stats.spread[level]))))
  res = ja.min_d(
    key, sampler, grid, eps1=eps1, eps2=eps2, trials=trials, delta=0.5, method="jl_fixed_eps"
  )
  assert res.certified and res.levels_on_host >= 1
  spec = SearchSpec("jl_fixed_eps", grid)
  undecided = np.flatnonzero(
    np.asarray(
      grid_kernel.compiled_grid_states(
        method_keys[0],
        pattern,
        spec,
        Criterion(eps1, eps2, None, ja.certify.thresholds(eps1, eps2)),
      )[0]
    )
    == ja.certify.UNDECIDED
  )
  assert level in undecided
  both = [
    host_stage.exact_level(
      method_keys[0], pattern, spec, level=level, eps1=eps1, eps2=eps2, rows=rows
    )
    for rows in (np.arange(32), None)
  ]
  assert both[0] == both[1] == res.verdicts[0, level]
  q, k = np.asarray(queries), np.asarray(keys)
  cols, weights, valid = (np.asarray(x) for x in pattern[:3])
  for g, d in enumerate(grid):
    exact_ok = exact.rows_ok_exact(
      q[:, :d], k[:, :d], cols, weights, valid, range(32), eps1, eps2, exact.Fraction(128, d)
    ).all()
    assert res.verdicts[0, g] == exact_ok, d


@pytest.mark.parametrize(
  "method, d", [("jl", 96), ("lstsq", 24), ("optimize", 12), ("moment_curve", 8)]
)
@pytest.mark.parametrize("nnz", [2, 4])  # nnz = 1 (no spread): test_certified_path's gap tiles
def test_certified_verdicts_equal_the_exact_oracle(method, d, nnz):
  """ε at relative distances 1e-9 and 1e-7 from a row's own float64 figures: row verdicts equal
  the exact oracle's (tests/exact_oracle.py). At 1e-9 float64 does not resolve the row (its
  spread is ~1e-6 on logits of size ~40), so the float oracle must refuse there."""
  pattern = ja.patterns.random_regular(jax.random.PRNGKey(nnz), length=96, nnz=nnz, a_min=0.3)
  sol = ja.construct.build(method, jax.random.PRNGKey(7), pattern, d, eps1=0.5, eps2=0.5)
  a = np.asarray(pattern.to_dense())
  queries, keys = np.asarray(sol.queries()), np.asarray(sol.keys())
  base = ja.reference.dense_check(
    sol.X, np.asarray(sol.w_q), np.asarray(sol.w_k), a, eps1=0.5, eps2=0.5
  )
  row = nnz % 3  # a row whose figures set the tolerances
  ratio_at, leak_at = float(np.expm1(base.spread[row])), float(np.exp(base.gap[row]))
  for rel in (-1e-7, -1e-9, 1e-9, 1e-7):
    eps1 = max(ratio_at * (1 + rel), 1e-6)
    eps2 = min(leak_at * (1 + rel), 0.999) if leak_at < 0.999 else 0.5
    rep = ja.verify(sol, pattern, eps1=eps1, eps2=eps2)
    assert bool(rep.certified)
    np.testing.assert_array_equal(
      rep.row_ok, oracle.exact_row_ok(queries, keys, a, eps1, eps2), err_msg=rel
    )


def test_the_float_oracle_refuses_inside_float64s_margin():
  """``float_row_ok`` answers at a wide margin and fails the test at a margin below float64's
  accuracy relative to the logits' size (row 2 of the lstsq case above, ε1 at 1 + 1e-9)."""
  pattern = ja.patterns.random_regular(jax.random.PRNGKey(2), length=96, nnz=2, a_min=0.3)
  sol = ja.construct.build("lstsq", jax.random.PRNGKey(7), pattern, 24, eps1=0.5, eps2=0.5)
  a = np.asarray(pattern.to_dense())
  queries, keys = np.asarray(sol.queries()), np.asarray(sol.keys())
  report = ja.reference.dense_check(
    sol.X, np.asarray(sol.w_q), np.asarray(sol.w_k), a, eps1=0.5, eps2=0.5
  )
  np.testing.assert_array_equal(
    oracle.float_row_ok(report, queries, keys, a, 0.5, 0.5),
    oracle.exact_row_ok(queries, keys, a, 0.5, 0.5),
  )
  eps1 = float(np.expm1(report.spread[2])) * (1 + 1e-9)
  with pytest.raises(pytest.fail.Exception, match="row 2: its float64 spread"):
    oracle.float_row_ok(report, queries, keys, a, eps1, 0.5)
