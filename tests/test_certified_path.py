"""Each term of the rounding bound and each step of the host stage, forced by an input that a
weaker version decides wrongly (docs/certified.md, "What each part is for").

Every tile here is tiny and built so that the float32 pass cannot decide it without the part
under test: with the part, the verdict is the exact oracle's (tests/exact_oracle.py); without
it (checked by hand and by the mutation run, docs/certified.md), a row is certified wrongly.
"""

import decimal
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattn as ja
from jaxattn._src import certify, exact
from jaxattn.construct import solution_from_factors
from jaxattn_bench import rounding_probe as probe

from tests import exact_oracle as oracle


def _verify(queries, keys, a, eps1, eps2, matmul="float32"):
  """``ja.verify`` of the factors against the dense A, whose verdicts must be certified."""
  sol = solution_from_factors(jnp.asarray(queries), jnp.asarray(keys))
  report = ja.verify(sol, ja.SparsePattern.from_dense(a), eps1=eps1, eps2=eps2, matmul=matmul)
  assert bool(report.certified)
  return report


def _spread_errors(queries, keys, a):
  """(|ŝ_i − spread_i|, σ_i) per row of ``ja.row_stats`` (the full pass), the exact spread from
  the oracle at 60 digits."""
  pattern = ja.SparsePattern.from_dense(a)
  stats = ja.row_stats(
    jnp.asarray(queries), jnp.asarray(keys), pattern, (queries.shape[1],), jnp.ones(1)
  )
  errors = []
  with decimal.localcontext() as context:
    context.prec = 60
    for i, row in enumerate(oracle.exact_logits(queries, keys)):
      support = [int(j) for j in np.flatnonzero(a[i] > 0)]
      spread = oracle._row_figures(row, a[i], support, len(row), (0.5, 0.5), 60)[0]
      errors.append(
        (
          abs(decimal.Decimal(float(stats.spread[0, i])) - spread),
          decimal.Decimal(float(stats.spread_bound[0, i])),
        )
      )
  return errors


# --- the logit bound's subnormal term -------------------------------------------------------


def test_products_flushed_to_zero_are_covered_by_the_subnormal_term():
  """Every product 2⁻¹³⁰ is subnormal, which XLA's CPU flushes: the pass computes spread 0 where
  the exact spread is 64·2⁻¹³⁰ = 2⁻¹²⁴. Only φ_d = (d + 2)·2⁻¹²⁶(1 + ‖q‖)(1 + κ) bounds that
  error; without it σ ≈ 0 and the row would be certainly ok at ε1 = 2⁻¹²⁵."""
  d = 64
  queries = np.full((2, d), 2.0**-65, np.float32)
  keys = np.zeros((2, d), np.float32)
  keys[0] = 2.0**-65
  a = np.ones((2, 2), np.float32)
  report = _verify(queries, keys, a, eps1=2.0**-125, eps2=0.5)
  assert float(report.ratio_error) == 0  # every product flushed
  np.testing.assert_array_equal(
    report.row_ok, oracle.exact_row_ok(queries, keys, a, 2.0**-125, 0.5)
  )
  assert not bool(report.ok) and int(report.settled_on_host) == 2


# --- the ln A term ----------------------------------------------------------------------------

# Two float32 weights near 10⁻³⁰ (|ln w| ≈ 69) whose float32 logs err by +3.8·10⁻⁶ and
# −3.8·10⁻⁶ (XLA's CPU log; found by scanning 6000 neighbours): the computed spread of a row
# with these weights and equal logits is the exact one less 7.7·10⁻⁶.
FAR_WEIGHTS = np.array([9.999885e-31, 1.0002404e-30], np.float32)


def test_the_log_term_covers_float32_logs_of_weights_far_from_one():
  """Row 0 has equal logits (Q = 0) and the weights ``FAR_WEIGHTS``: its spread is
  |ln w_1 − ln w_0| = 2.52·10⁻⁴ exactly and 7.7·10⁻⁶ less in float32. ln(1 + ε1) placed halfway
  fails the row; only e_ln = LOG_ULPS·u·2 max|ln w| covers that error, so without it the row
  would be certainly ok."""
  a = np.array([FAR_WEIGHTS, [0, 1]], np.float32)
  queries, keys = np.zeros((2, 2), np.float32), np.eye(2, dtype=np.float32)
  (error, bound), _ = _spread_errors(queries, keys, a)
  assert error > 7e-6 and error <= bound  # the float32 logs' error, covered
  true_spread = math.log(float(FAR_WEIGHTS[1]) / float(FAR_WEIGHTS[0]))
  eps1 = math.expm1(true_spread - 3.8e-6)
  report = _verify(queries, keys, a, eps1=eps1, eps2=0.5)
  np.testing.assert_array_equal(report.row_ok, oracle.exact_row_ok(queries, keys, a, eps1, 0.5))
  assert not bool(report.row_ok[0]) and int(report.settled_on_host) == 1


# --- the host stage: e^Δ ≤ R at a precision that grows -----------------------------------------


def _ln(value, digits=120):
  """ln of a rational ``value`` to ``digits`` digits (``decimal``), as a rational."""
  value = Fraction(value)
  with decimal.localcontext() as context:
    context.prec = digits
    return Fraction((decimal.Decimal(value.numerator) / decimal.Decimal(value.denominator)).ln())


@pytest.mark.parametrize(
  "delta, bound, want",
  [
    (0, 1, True),
    (0, Fraction(1, 2), False),
    (0, Fraction(3, 2), True),
    (1, 2, False),
    (1, 3, True),
    (-1, Fraction(1, 2), True),
    (-1, Fraction(1, 3), False),
    (-5, 0, False),
    (-5, -1, False),
    (Fraction(1, 10**30), 1, False),
    (Fraction(-1, 10**30), 1, True),
  ],
)
def test_exp_at_most_on_its_special_cases(delta, bound, want):
  """e^Δ ≤ R where Δ = 0, R = 1, R ≤ 0 or Δ = ±1 (e^±1 against 2, 3, ½, ⅓), and R = 1 against
  Δ = ±10⁻³⁰ (below float64's resolution of ln R = 0)."""
  assert exact.exp_at_most(Fraction(delta), Fraction(bound)) is want


@pytest.mark.parametrize("offset", [-7e-44, -1e-45, 1e-45, 7e-44])
def test_exp_at_most_grows_its_precision_near_ln_r(offset):
  """Δ = ln 2 + offset against R = 2 (ε1 = 1): 40 digits of ln 2 (the first precision, off by
  1.3·10⁻⁴³) decide none of these, so a stage that answers at its first precision errs on one
  side or the other."""
  delta = _ln(2) + Fraction(offset)
  assert exact.exp_at_most(delta, Fraction(2)) == (offset < 0)
  assert exact.exp_at_most(-delta, Fraction(1, 2)) == (offset > 0)


@pytest.mark.parametrize("num, den", [(3, 1), (5, 1), (2**100 + 1, 2**100)])
def test_exp_at_most_trusts_decimal_no_further_than_its_rounding(num, den):
  """ln R = ln num − ln den at 40 digits each errs by 4.9·10⁻⁴⁰ (R = 3, low), 4.0·10⁻⁴⁰ (R = 5,
  high) and 4.8·10⁻³⁹ (R = 1 + 2⁻¹⁰⁰, from two logs of size 69). Δ halfway between ln R and that
  value is decided wrongly by a stage that trusts the 40-digit value further than its rounding
  (e.g. 11⁻³⁹ instead of 10⁻³⁹ per unit, or not scaled by the logs' size)."""
  exact_log = _ln(num, 100) - _ln(den, 100)
  rounded = _ln(num, 40) - _ln(den, 40)
  delta = (exact_log + rounded) / 2
  assert abs(rounded - exact_log) > Fraction(3, 10**40)
  assert exact.exp_at_most(delta, Fraction(num, den)) == (delta < exact_log)


def _ln2_factors(below, third=-10.0, share=1):
  """Factors whose row 0 has logits Δ, 0 and ``third``, Δ within 2⁻¹⁵⁰ of (ln 2)/``share``
  (below it or above): float32 chunks of that number's binary expansion, k_c ≈ r_c·2^{12c}
  against q_c = 2^{−12c}, every product exact in float64 and their sum the rational Δ. Rows 1
  and 2 have q = 0."""
  target = _ln(2) / share
  residual = target + Fraction(-1 if below else 1, 2**150)
  query, key = [], []
  while abs(residual) > Fraction(1, 2**170):
    q = 2.0 ** (-12 * len(query))
    k = np.float32(float(residual / Fraction(q)))
    query.append(q)
    key.append(k)
    residual -= Fraction(q) * Fraction(float(k))
  d = len(query)
  queries = np.array([query, [0] * d, [0] * d], np.float32)
  keys = np.array([key, [0] * d, [third] + [0] * (d - 1)], np.float32)
  delta = sum(Fraction(float(q)) * Fraction(float(k)) for q, k in zip(queries[0], keys[0]))
  assert 0 < abs(delta - target) < Fraction(1, 2**149) and (delta < target) == below
  return queries, keys


@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
@pytest.mark.parametrize("below", [True, False], ids=["below", "above"])
def test_a_spread_within_1e_45_of_ln_2_is_decided_exactly(below, dense):
  """Row 0's spread is Δ, within 2⁻¹⁵⁰ ≈ 7·10⁻⁴⁶ of ln(1 + ε1) = ln 2: ok just below, failing
  just above, through the sparse path (support {0, 1}, key 2 outside at logit −10) and the dense
  one (a row of ones, key 2 at logit 0). Rows 1 and 2 are dense rows with q = 0."""
  queries, keys = _ln2_factors(below, third=0.0 if dense else -10.0)
  a = np.array([[1, 1, dense], [1, 1, 1], [1, 1, 1]], np.float32)
  report = _verify(queries, keys, a, eps1=1.0, eps2=0.9)
  assert list(np.asarray(report.row_ok)) == [below, True, True]
  assert int(report.settled_on_host) >= 1


def test_a_tie_counts_as_ok():
  """Equal logits, weights ½ and 1, ε1 = 1: the pair's bound R = (1 + ε1)·½ is exactly 1 and
  Δ = 0, the one tie exact arithmetic can meet (spread = ln 2 = ln(1 + ε1)); ≤ makes it ok."""
  a = np.array([[0.5, 1], [0, 1]], np.float32)
  queries, keys = np.array([[1, 0], [-1, 0]], np.float32), np.array([[1, 0], [1, 0]], np.float32)
  report = _verify(queries, keys, a, eps1=1.0, eps2=0.5)
  assert bool(report.row_ok[0]) and int(report.settled_on_host) >= 1
  assert exact.exp_at_most(Fraction(0), Fraction(1))
  assert not exact.exp_at_most(Fraction(0), Fraction(1) - Fraction(1, 2**60))


# --- the host stage: which outside columns are summed exactly -----------------------------------


def _cancelling_tile(dense):
  """Row 0 (q = (1, 1, 1)) sees key A, whose products 2⁶⁰, 5, −2⁶⁰ sum to 5 exactly and to 0 or 5
  in float64 (by summation order) within an interval of about ±2¹⁰; key B, logit 4 (a narrow
  interval); and key C (sparse: its support, logit 10; dense: logit −3, the row's support every
  key). The true maximum over A and B is A's, which a stage that chose columns by the lower
  ends of their intervals would skip. Rows 1 and 2 are dense rows with q = 0."""
  queries = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0]], np.float32)
  keys = np.array([[2.0**60, 5, -(2.0**60)], [4, 0, 0], [-3 if dense else 10, 0, 0]], np.float32)
  a = np.array([[1, 1, 1] if dense else [0, 0, 1], [1, 1, 1], [1, 1, 1]], np.float32)
  return queries, keys, a


@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
@pytest.mark.parametrize("margin", [-0.5, 0.5])
def test_outside_columns_with_wide_intervals_are_summed_exactly(dense, margin):
  """Sparse: gap 5 − 10 = −5 against ln ε2 = −5 + margin; dense: spread 5 − (−3) = 8 against
  ln(1 + ε1) = 8 + margin. At margin −0.5 the exact maximum (A's 5) fails row 0 where B's 4
  alone would pass it; at +0.5 the row passes (a dense row's spread is max + (−min), both
  extremes summed exactly)."""
  queries, keys, a = _cancelling_tile(dense)
  eps1, eps2 = (math.expm1(8 + margin), 0.5) if dense else (0.5, math.exp(-5 + margin))
  report = _verify(queries, keys, a, eps1=eps1, eps2=eps2)
  assert bool(report.row_ok[0]) == (margin > 0) and int(report.settled_on_host) >= 1
  np.testing.assert_array_equal(report.row_ok, oracle.exact_row_ok(queries, keys, a, eps1, eps2))


@pytest.mark.parametrize("margin", [-0.5, 0.5])
def test_a_causal_rows_host_stage_sees_its_own_key_and_none_after(margin):
  """Causal layer: row 2 (q = (1, 1, 1), support {0}, logit 10) sees key 2 (the cancelling key,
  logit 5, outside its support) and not key 3 (logit 1000). Its gap is 5 − 10 against
  ln ε2 = −5 + margin: it fails at −0.5 (key 2 seen) and passes at +0.5 (key 3 unseen)."""
  queries = np.array([[0, 0, 0], [0, 0, 0], [1, 1, 1], [0, 0, 0]], np.float32)
  keys = np.array([[10, 0, 0], [0, 0, 0], [2.0**60, 5, -(2.0**60)], [1000, 0, 0]], np.float32)
  a = np.tril(np.ones((4, 4), np.float32))
  a[2] = [1, 0, 0, 0]
  eps2 = math.exp(-5 + margin)
  sol = solution_from_factors(jnp.asarray(queries), jnp.asarray(keys))
  report = ja.verify(sol, ja.SparsePattern.from_dense(a), eps1=0.5, eps2=eps2, causal=True)
  assert bool(report.certified) and int(report.settled_on_host) >= 1
  assert bool(report.row_ok[2]) == (margin > 0)
  np.testing.assert_array_equal(
    report.row_ok, oracle.exact_row_ok(queries, keys, a, 0.5, eps2, causal=True)
  )


# --- the same host steps inside a search (``host_stage.exact_level``) ---------------------------


def _fixed_method(queries, keys):
  """A registered construction that returns these factors at every d (padded to the width)."""

  def factors(key, pattern, d, width, eps1, eps2, **kw):
    del key, pattern, d, eps1, eps2, kw
    pad = ((0, 0), (0, width - queries.shape[1]))
    return jnp.asarray(np.pad(queries, pad)), jnp.asarray(np.pad(keys, pad))

  return factors


def _many_ln2_rows(below, length=70):
  """``length`` rows like row 0 of ``_ln2_factors`` (support {0, 1}, every other key at logit
  −10): more undecided rows than ``HOST_ROWS``, so that the host re-does the level's pass."""
  queries, keys = _ln2_factors(below)
  keys = np.concatenate([keys, np.repeat(keys[2:], length - 3, axis=0)])
  a = np.zeros((length, length), np.float32)
  a[:, :2] = 1
  return np.repeat(queries[:1], length, axis=0), keys, a


@pytest.mark.parametrize(
  "case, nested",
  [
    ("cancelling", False),
    ("ln2-above", True),
    ("ln2-above at d = 8", True),
    ("ln2-below, 70 rows", False),
  ],
)
def test_a_searchs_undecided_levels_meet_the_same_cases(case, nested):
  """``ja.min_d`` on a construction that returns the tiles above at every d of (8, 12, 16): each
  level is left undecided by the compiled pass and settled on the host, with the exact verdict.
  Declared nested, level d reads (16/d)·Q_{:, :d}K_{:, :d}ᵀ off the same factors: d = 8 and 12
  fail clearly (Δ scaled by 2 and 4/3), d = 16 is the near-tie; with Δ ≈ (ln 2)/2 instead, the
  near-tie is at d = 8 (the host must scale by 2) and d = 12, 16 pass clearly. With 70 such rows
  (more than ``HOST_ROWS``) the host re-does the level. (A search takes q = 0 on dense rows
  whatever the method, so only sparse rows reach its host stage.)"""
  below = case.startswith("ln2-below")
  if case == "cancelling":
    queries, keys, a = _cancelling_tile(dense=False)
    eps1, eps2, want = 0.5, math.exp(-5.5), False
  elif case.endswith("70 rows"):
    queries, keys, a = _many_ln2_rows(below)
    eps1, eps2, want = 1.0, 0.9, below
  else:
    queries, keys = _ln2_factors(below, share=2 if case.endswith("d = 8") else 1)
    a = np.array([[1, 1, 0], [1, 1, 1], [1, 1, 1]], np.float32)
    eps1, eps2, want = 1.0, 0.9, below
  pattern = ja.SparsePattern.from_dense(a)
  name = f"fixed_{case}_{nested}"
  ja.construct.register_method(name, _fixed_method(queries, keys), nested=nested)
  try:
    result = ja.min_d(
      jax.random.PRNGKey(0),
      lambda key: pattern,
      (8, 12, 16),
      eps1=eps1,
      eps2=eps2,
      trials=1,
      method=name,
      compute=ja.Compute(schedule="full"),
    )
  finally:
    ja.construct.unregister_method(name)
  expected = (
    [want, True, True] if case.endswith("d = 8") else [False, False, want] if nested else [want] * 3
  )
  assert result.certified and result.levels_on_host == (1 if nested else 3)
  np.testing.assert_array_equal(result.verdicts, [expected])


def test_a_nested_levels_host_verdict_reads_only_its_first_d_columns():
  """Nested, the near-tie of ``_ln2_factors`` (ln 2/2, just below) in columns 0..6 and a column 8
  that adds 5 to row 0's supported logit 0: level d = 8 reads 2·Q_{:, :8}K_{:, :8}ᵀ, the exact
  near-tie (ok), settled on the host from its listed rows; levels 12 and 16 read column 8 and
  fail clearly. A host stage that read the columns up to d_max at level 8 would fail it."""
  queries, keys = _ln2_factors(True, share=2)
  queries, keys = (np.pad(x, ((0, 0), (0, 9 - x.shape[1]))) for x in (queries, keys))
  queries[0, 8], keys[0, 8] = 1.0, 5.0
  pattern = ja.SparsePattern.from_dense(np.array([[1, 1, 0], [1, 1, 1], [1, 1, 1]], np.float32))
  ja.construct.register_method("fixed_columns_above", _fixed_method(queries, keys), nested=True)
  try:
    result = ja.min_d(
      jax.random.PRNGKey(0),
      lambda key: pattern,
      (8, 12, 16),
      eps1=1.0,
      eps2=0.9,
      trials=1,
      method="fixed_columns_above",
    )
  finally:
    ja.construct.unregister_method("fixed_columns_above")
  assert result.certified and result.levels_on_host == 1
  np.testing.assert_array_equal(result.verdicts, [[True, False, False]])


# --- the thresholds ----------------------------------------------------------------------------


def _edge_tolerances():
  """ε1, ε2 whose ln(1 + ε1) and ln ε2 lie on a float32 number F or within a float64 ulp or two
  of it (either side), and random ones (half of which float32 rounds inwards, half outwards)."""
  edges = [np.float32(x) for x in (0.5, -0.5, 0.1, -0.1, 2.0**-20, -3.0, 1e-6)]
  values = [
    np.nextafter(float(f), (-1) ** k * np.inf) if k else float(f) for f in edges for k in range(3)
  ]
  rng = np.random.default_rng(0)
  logs = values + list(rng.uniform(-8, -1e-3, 40))
  return ([math.expm1(abs(t)) for t in logs], [math.exp(-abs(t)) for t in logs])


def test_thresholds_bracket_the_exact_logs_and_are_the_nearest_float32_outside():
  """t⁻ ≤ t ≤ t⁺ exactly, for t = ln(1 + ε1) and ln ε2 (``certify.thresholds``), and each is one
  float32 step from the bracket at most: the next float32 inwards lies within a few float64
  ulps of t. Rounding inwards breaks the first; stepping out twice, the second."""
  ratio_eps, gap_eps = _edge_tolerances()
  for eps1, eps2 in zip(ratio_eps, gap_eps):
    limits = certify.thresholds(eps1, eps2)
    for below, above, exact_value in (
      (limits.ratio_below, limits.ratio_above, _ln(1 + Fraction(eps1))),
      (limits.gap_below, limits.gap_above, _ln(eps2)),
    ):
      below, above = np.float32(below), np.float32(above)
      slack = Fraction(4 * 2.0**-52) * abs(exact_value)
      assert Fraction(float(below)) <= exact_value <= Fraction(float(above)), eps1
      assert Fraction(float(np.nextafter(below, np.float32(np.inf)))) > exact_value - slack
      assert Fraction(float(np.nextafter(above, np.float32(-np.inf)))) < exact_value + slack


# --- planted ratio near-ties with weights far from 1 ------------------------------------------


@pytest.mark.parametrize("weight", [2.0**-60, 1e-30, 0.37])
@pytest.mark.parametrize("offset", [-3e-5, 3e-5])
@pytest.mark.parametrize("matmul", ["float32", "bfloat16"])
def test_planted_weighted_ratio_near_ties_are_decided_exactly(weight, offset, matmul):
  """Row 0: support {0, 1} with weights (w, 1), logits 2000 + x_j, x_1 = x_0 − ln w − ln 2 −
  offset: its spread is ln 2 + offset against ln(1 + ε1) = ln 2, while float32 rounds the logits
  to multiples of 2⁻¹³ and ln w (|ln w| up to 69) to 4·10⁻⁶. Rows 1 and 2 are dense (q = 0)."""
  x0 = 0.4 * 2.0**-13
  x1 = x0 - math.log(np.float32(weight)) - math.log(2) - offset
  queries = np.array([[1, 1], [0, 0], [0, 0]], np.float32)
  keys = np.array([[2000, x0], [2000, x1], [1950, 0]], np.float32)
  a = np.array([[weight, 1, 0], [1, 1, 1], [1, 1, 1]], np.float32)
  report = _verify(queries, keys, a, eps1=1.0, eps2=0.5, matmul=matmul)
  want = oracle.exact_row_ok(queries, keys, a, 1.0, 0.5)
  assert bool(want[0]) == (offset < 0)
  np.testing.assert_array_equal(report.row_ok, want)
  assert int(report.settled_on_host) >= 1


# --- the bound as documented, recomputed in float64 ---------------------------------------------


def _documented_bounds(queries, keys, a, splits, u_in=0.0):
  """σ, τ [G, L] of docs/certified.md ("The bound, term by term"), in float64 from the stored
  factors: an implementation of the page, not of ``certify``."""
  u, q, k = 2.0**-24, queries.astype(np.float64), keys.astype(np.float64)
  q, k = (np.where(np.abs(x) < 2.0**-126, 0, x) for x in (q, k))  # subnormals flush to 0
  width, sigmas, taus = keys.shape[1], [], []
  valid = a > 0
  log_w = np.where(valid, np.log(np.where(valid, a, 1).astype(np.float64)), 0.0)
  log_max = np.abs(log_w).max(1)
  normalised = np.where(valid, log_w - np.where(valid, log_w, -np.inf).max(1, keepdims=True), 0)
  log_norm = np.abs(normalised).max(1)
  for d in splits:
    scale, inflate = width / d, 1 + (d + 4) * 2 * u
    q_norm = np.linalg.norm(q[:, :d], axis=1) * inflate
    kappa = np.linalg.norm(k[:, :d], axis=1).max() * inflate
    gamma = (d + 1) * u / (1 - (d + 1) * u)
    beta = (1 + u_in) ** 2 - 1 + gamma * (1 + u_in) ** 2
    reach = scale * q_norm * kappa
    tiny = (d + 2) * 2.0**-126 * (1 + q_norm) * (1 + kappa)
    logit = scale * (beta * q_norm * kappa + tiny) * (1 + u) ** 2 + 3 * u * reach
    e_ln = 4 * u * 2 * log_max + u * log_norm  # LOG_ULPS = 4
    shifted = logit + e_ln + 2 * u * (reach * (1 + beta) + logit + log_norm)
    sigmas.append(shifted)
    taus.append(logit)
  return np.array(sigmas), np.array(taus)


def _bound_tiles():
  rng = np.random.default_rng(5)
  q, k = rng.standard_normal((2, 4, 512)).astype(np.float32) * np.float32(3)
  weights = np.array(
    [[1e-30, 1, 0, 0], [1, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 1, 2.0**-40]], np.float32
  )
  tiny_q = np.full((4, 512), 2.0**-70, np.float32)
  subnormal_k = np.full((4, 512), 2.0**-130, np.float32)
  return {
    "gaussian": (q, k, weights),
    "far weights, q = 0": (0 * q, k, weights),
    "subnormal products": (tiny_q, tiny_q, weights),
    "large q, subnormal keys": (q * np.float32(2.0**50), subnormal_k, weights),
  }


@pytest.mark.parametrize("tile", sorted(_bound_tiles()))
@pytest.mark.parametrize("matmul_dtype", [None, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_the_bound_is_the_documented_one(tile, matmul_dtype):
  """σ and τ of ``ja.row_stats`` equal docs/certified.md's formula to within their own float32
  rounding (relative 2·10⁻⁶; the (1 + 2⁻¹⁶) inflation on top), on nested levels d = 1, 3, 512:
  a term changed, dropped or loosened beyond that (γ_{d+1}, u_in, the subnormal term, the norms'
  inflation, ``LOG_ULPS``, the scale's rounding, a truncating model on the CPU) fails."""
  queries, keys, a = _bound_tiles()[tile]
  splits = (1, 3, 512)
  pattern = ja.SparsePattern.from_dense(a)
  stats = ja.row_stats(
    jnp.asarray(queries),
    jnp.asarray(keys),
    pattern,
    splits,
    jnp.asarray([512 / d for d in splits], jnp.float32),
    matmul_dtype=matmul_dtype,
  )
  u_in = 0.0 if matmul_dtype is None else 2.0**-8
  sigma, tau = _documented_bounds(queries, keys, a, splits, u_in)
  u, inflate = 2.0**-24, 1 + 2.0**-16
  spread, gap = np.asarray(stats.spread, np.float64), np.asarray(stats.gap, np.float64)
  want_sigma = (2 * sigma + 2 * u * np.abs(spread)) * inflate
  want_tau = np.where(np.isneginf(gap), 0, (2 * tau + 2 * u * np.abs(gap)) * inflate)
  np.testing.assert_allclose(stats.spread_bound, want_sigma, rtol=2e-6)
  np.testing.assert_allclose(stats.gap_bound, want_tau, rtol=2e-6)


def test_the_hosts_float64_interval_is_the_documented_one():
  """The host's float64 logits lie within 1.01·γ_{d+1}(2⁻⁵³)·Σ|q_c k_c| + 2⁻¹⁰⁰⁰ of the exact
  ones (docs/certified.md, stage 3), and that is the interval it uses: a narrower one could
  skip the true maximum (``test_outside_columns_with_wide_intervals_are_summed_exactly``)."""
  queries, keys, _ = _cancelling_tile(dense=False)
  rng = np.random.default_rng(2)
  queries = np.concatenate([queries, rng.standard_normal((3, 3)).astype(np.float32)])
  keys = np.concatenate([keys, rng.standard_normal((4, 3)).astype(np.float32)])  # L = 7, d = 3
  values, bound = exact.float64_logits(queries, keys)
  d, u = 3, 2.0**-53
  magnitude = np.abs(queries.astype(np.float64)) @ np.abs(keys.astype(np.float64)).T
  np.testing.assert_array_equal(bound, 1.01 * (d + 1) * u * magnitude + 2.0**-1000)
  exact_values = oracle.exact_logits(queries, keys)
  for i, row in enumerate(exact_values):
    for j, value in enumerate(row):
      assert abs(Fraction(float(values[i, j])) - value) <= Fraction(float(bound[i, j]))


def test_rounding_models_are_the_documented_ones():
  """The CPU rounds to nearest and is validated; a GPU truncates and is not validated yet; any
  other backend is taken as truncating and unvalidated (docs/certified.md, Backends)."""
  model = certify.RoundingModel
  assert certify.rounding_model("cpu") == model(truncating=False, validated=True)
  assert certify.rounding_model("gpu") == model(truncating=True, validated=False)
  assert certify.rounding_model("tpu") == model(truncating=True, validated=False)
  assert certify.certifiable(jnp.float32, backend="cpu")
  assert not certify.certifiable(jnp.float32, backend="gpu")
  assert not certify.certifiable(jnp.float32, max_outside_mass=0.5, backend="cpu")
  assert not certify.certifiable(jnp.bfloat16, backend="cpu")


def test_traced_tolerances_get_the_devices_logs():
  """Inside ``jit`` (ε traced: uncertified verdicts) the thresholds are the device's log1p(ε1) and
  log(ε2) in the evaluation dtype, unwidened."""
  limits = jax.jit(certify.thresholds)(0.5, 0.25)
  np.testing.assert_allclose(limits, [math.log1p(0.5)] * 2 + [math.log(0.25)] * 2, rtol=1e-6)


def test_gamma_is_unbounded_from_n_u_equal_one_and_truncation_doubles_u():
  """γ_n(u) = nu/(1 − nu) while nu < 1 and +inf from nu = 1 on (no bound); a truncating
  accumulation takes u' = 2u: β_d = γ_{d+1}(2u) for exact inputs."""
  u = 2.0**-24
  np.testing.assert_array_equal(
    certify.gamma(jnp.asarray([2**23, 2**24, 3 * 2**23]), u), np.float32([1.0, np.inf, np.inf])
  )
  dims = jnp.asarray([1, 100, 4096])
  for truncating, u_acc in ((False, u), (True, 2 * u)):
    n = np.array([2, 101, 4097])
    np.testing.assert_allclose(
      certify.logit_factor(dims, 0.0, u, truncating), n * u_acc / (1 - n * u_acc), rtol=1e-6
    )


def test_float64_factors_keep_float64_norms():
  """A float64 evaluation (``dtype="float64"``) bounds with float64 norms, inflated for float64
  rounding: norms computed in float32 would err by 2⁻²⁴, far beyond (d + 4)·2⁻⁵²."""
  rng = np.random.default_rng(1)
  with jax.enable_x64(True):
    x = rng.standard_normal((3, 8))
    norms = certify.prefix_norms(jnp.asarray(x), (3, 8), 2.0**-53)
    assert norms.dtype == jnp.float64
    want = np.stack(
      [np.linalg.norm(x[:, :d], axis=1) * (1 + (d + 4) * 2.0**-52) for d in (3, 8)], 1
    )
    np.testing.assert_allclose(norms, want, rtol=1e-14)


def test_norms_of_entries_whose_squares_underflow_still_bound_the_logits():
  """q = 2⁻⁶⁴·(1, t, …, t) and k = 2⁴⁰·(1, t, …, t) (the sequential tile, rescaled): every entry
  and product is a normal float32, but every square of q underflows. Norms summed from raw
  squares came out 0, the bound 7·10⁻¹⁵, the true gap error 3·10⁻¹³ at d = 700, and with ln ε2
  halfway between the computed and the exact gap the row was certified wrongly. Norms of rows
  rescaled by a power of two first bound the error and leave the row to the host."""
  tile_queries, tile_keys = probe.sequential_case(700)
  key = tile_keys[1] * np.float32(2.0**40)  # support logit q·k > 0, outside −q·k: gap < 0
  queries, keys = probe.tile(tile_queries[0] * np.float32(2.0**-64), -key, key)
  ((error, bound),) = probe.gap_errors(queries, keys, (700,))
  assert 0 < error <= bound
  eye = np.eye(3, dtype=np.float32)
  computed = float(_verify(queries, keys, eye, eps1=0.5, eps2=0.5).gap[0])
  logits = oracle.exact_logits(queries, keys)
  exact_gap = max(logits[0][1:]) - logits[0][0]  # key 2 is zero: logit 0
  eps2 = math.exp((computed + float(exact_gap)) / 2)
  report = _verify(queries, keys, eye, eps1=0.5, eps2=eps2)
  assert int(report.settled_on_host) >= 1
  np.testing.assert_array_equal(report.row_ok, oracle.exact_row_ok(queries, keys, eye, 0.5, eps2))


def test_exact_dot_is_exact_for_mixed_widths():
  """A float64 query against float32 keys (or the reverse): the products are not exact in float64,
  so ``exact_dot`` must take rational products unless both factors are 4 bytes or narrower."""
  rng = np.random.default_rng(4)
  wide = rng.standard_normal(50) * (1 + 2.0**-40)  # float64 with more than 24 significant bits
  narrow = rng.standard_normal(50).astype(np.float32)
  want = sum(Fraction(float(a)) * Fraction(float(b)) for a, b in zip(wide, narrow))
  assert exact.exact_dot(wide, narrow) == want and exact.exact_dot(narrow, wide) == want


def test_a_row_with_a_non_finite_factor_fails_on_the_host():
  """A NaN query leaves its row undecided by the pass (NaN figures) and the host fails it without
  forming rationals of NaN; rows 0 and 2 (the cancelling row, passing at ln ε2 = −4.5) keep
  their exact verdicts: three host rows, each verdict in its own place."""
  queries, keys, a = _cancelling_tile(dense=False)
  queries[1], queries[2], a[2] = np.nan, queries[0], a[0]
  report = _verify(queries, keys, a, eps1=0.5, eps2=math.exp(-4.5))
  assert int(report.settled_on_host) == 3
  np.testing.assert_array_equal(report.row_ok, [True, False, True])


def test_the_searchs_float32_recheck_keeps_the_rows_it_finds_failing():
  """``recheck_rows`` re-does a bfloat16 pass's undecided rows with float32 products, up to
  ⌈``RECHECK_SHARE``·L⌉ of them: each comes back with its float32 state, so a row that certainly
  fails stays failing (a re-check that passed the rows it re-did would certify failing levels
  of a ``matmul="bfloat16"`` search); the rows past its buffer stay undecided."""
  key = jax.random.PRNGKey(0)
  pattern = ja.patterns.random_regular(key, length=64, nnz=2, a_min=0.5)
  solution = ja.construct.jl(key, pattern, d=4, eps1=0.5, eps2=0.5)  # far below jl's d: fails
  queries, keys = solution.queries(), solution.keys()
  splits, scales = (queries.shape[1],), jnp.ones(1)
  limits = ja.certify.thresholds(0.5, 0.5, jnp.float32)
  stats = ja.row_stats(queries, keys, pattern, splits, scales, full=False)
  float32 = np.asarray(ja.certify.row_states(stats, limits))
  undecided = jnp.full(float32.shape, ja.certify.UNDECIDED, jnp.int8)
  redone = np.asarray(
    ja.certify.recheck_rows(queries, keys, pattern, undecided, splits, scales, limits)
  )
  capacity = math.ceil(ja.certify.RECHECK_SHARE * pattern.length)
  assert (float32[:, :capacity] == ja.certify.CERTAIN_FAIL).any()  # the case under test
  np.testing.assert_array_equal(redone[:, :capacity], float32[:, :capacity])
  assert (redone[:, capacity:] == ja.certify.UNDECIDED).all()
