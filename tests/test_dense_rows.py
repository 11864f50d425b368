"""Dense rows held apart (``SparsePattern.dense``): pattern utilities, every construction at
q_i = 0, the streamed spread over every key with its certified bound, the exact host stage, and
memory O(L) rather than O(L²)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io
import scipy.sparse

import jaxattn as ja
from jaxattn import SparsePattern
from jaxattn._src import exact
from jaxattn.construct import solution_from_factors
from tests import exact_oracle as oracle
from tests.test_row_stats import assert_bounds_cover, dense_stats

EPS1, EPS2 = 0.5, 0.5


def _windowed(length=12, dense_rows=(0, 5), window=1, weights=True) -> np.ndarray:
  """A band of ±``window`` (weights in [0.3, 1] if ``weights``), a global column 0 and rows
  ``dense_rows`` of L ones."""
  rng = np.random.default_rng(0)
  a = np.zeros((length, length))
  for i in range(length):
    band = slice(max(0, i - window), i + window + 1)
    a[i, band] = rng.uniform(0.3, 1.0, a[i, band].shape) if weights else 1.0
  a[:, 0] = 1.0
  a[list(dense_rows)] = 1.0
  return a


def test_from_dense_auto_holds_full_rows_apart_and_round_trips():
  a = _windowed()
  p = SparsePattern.from_dense(a, check_columns=False)
  np.testing.assert_array_equal(p.dense, np.isin(np.arange(12), (0, 5)))
  assert p.nnz == 4  # the band and the global column; the dense rows are apart
  np.testing.assert_allclose(p.to_dense(), a, rtol=1e-6)
  np.testing.assert_allclose(p.to_scipy().toarray(), a, rtol=1e-6)
  again = SparsePattern.from_scipy(p.to_scipy(), check_columns=False)
  np.testing.assert_array_equal(again.dense, p.dense)
  np.testing.assert_allclose(again.to_dense(), a, rtol=1e-6)
  np.testing.assert_array_equal(p.row_a_min[np.array([0, 5])], 1.0)
  # with the columns checked, N counts the dense rows in every column: 2 + the band's 3
  assert SparsePattern.from_dense(a).nnz == 12  # column 0 is global
  padded = SparsePattern.from_dense(a, check_columns=False, dense_rows="pad")
  assert padded.dense is None and padded.nnz == 12
  np.testing.assert_allclose(padded.to_dense(), a, rtol=1e-6)


def test_a_full_row_of_unequal_weights_stays_in_slots():
  a = _windowed(dense_rows=())
  a[3] = np.linspace(0.5, 1.0, 12)
  p = SparsePattern.from_dense(a, check_columns=False)
  assert p.dense is None and p.nnz == 12
  with pytest.raises(ValueError, match="dense_rows must be 'auto' or 'pad'"):
    SparsePattern.from_dense(a, dense_rows="yes")


def test_keep_top_n_cuts_a_dense_row_to_its_first_columns():
  p = SparsePattern.from_dense(_windowed(), check_columns=False)
  kept, dropped = p.keep_top_n(2)
  assert kept.dense is None and kept.nnz == 2
  np.testing.assert_array_equal(np.asarray(kept.to_dense())[5], [1, 1] + [0] * 10)
  np.testing.assert_allclose(dropped[[0, 5]], 10 / 12)
  whole, dropped = p.keep_top_n(12)
  np.testing.assert_array_equal(whole.dense, p.dense)
  np.testing.assert_array_equal(dropped[[0, 5]], 0.0)


def test_a_bad_dense_flag_is_refused():
  p = SparsePattern.from_dense(_windowed(), check_columns=False)
  sol = ja.construct.jl(jax.random.PRNGKey(0), p, 8, eps1=EPS1, eps2=EPS2)
  for bad in (p.dense[:5], p.dense.astype(jnp.int32)):
    with pytest.raises(ValueError, match=r"pattern.dense must be a bool array of shape \(12,\)"):
      ja.verify(sol, p._replace(dense=bad), eps1=EPS1, eps2=EPS2)


@pytest.mark.parametrize(
  "method, d", [("jl", 256), ("lstsq", 24), ("moment_curve", 14), ("optimize", 24), ("onehot", 32)]
)
def test_every_method_meets_global_rows_at_zero_queries(method, d):
  family = ja.patterns.Longformer(window=2, globals=2)
  pattern = family(jax.random.PRNGKey(0), 32)
  np.testing.assert_array_equal(pattern.dense, np.arange(32) < 2)
  assert pattern.nnz == family.bounds(32).row == 7
  sol = ja.construct.build(method, jax.random.PRNGKey(1), pattern, d, eps1=EPS1, eps2=EPS2)
  np.testing.assert_array_equal(sol.queries()[:2], 0.0)
  report = ja.verify(sol, pattern, eps1=EPS1, eps2=EPS2)
  a = np.asarray(pattern.to_dense())
  want = ja.reference.dense_check(sol.X, sol.w_q, sol.w_k, a, eps1=EPS1, eps2=EPS2)
  assert bool(report.certified)
  np.testing.assert_array_equal(
    report.row_ok,
    oracle.float_row_ok(want, np.asarray(sol.queries()), np.asarray(sol.keys()), a, EPS1, EPS2),
  )
  assert bool(report.row_ok[:2].all()) and np.all(np.asarray(report.gap[:2]) == -np.inf)
  np.testing.assert_array_equal(report.spread[:2], 0.0)
  np.testing.assert_array_equal(want.spread[:2], 0.0)


def test_optimize_run_holds_dense_rows_at_zero():
  """``optimize_run`` (public, bypassing ``build``) starts from lstsq's q_i = 0 and keeps it: a
  dense row has no loss terms."""
  pattern = ja.patterns.Longformer(window=2, globals=2)(jax.random.PRNGKey(0), 32)
  run = ja.construct.optimize_run(jax.random.PRNGKey(1), pattern, 12, 12, EPS1, EPS2)
  assert int(run.steps) > 0
  np.testing.assert_array_equal(run.queries[:2], 0.0)


def _planted(top: np.float32, length=16):
  """Dense row 0 whose logits are exactly x_j ∈ [1, ``top``] (q_0 = e_0, k_j0 = x_j; spread
  top − 1, exact in float32); every other row its own key, one-hot, met with a wide margin."""
  a = np.eye(length)
  a[0] = 1.0
  pattern = SparsePattern.from_dense(a, check_columns=False)
  x = np.float32(1) + np.linspace(1.0, 0.0, length, dtype=np.float32) * (top - np.float32(1))
  x[0], x[-1] = top, 1.0  # the largest at the placeholder's column (0)
  keys = np.concatenate([x[:, None], np.eye(length, dtype=np.float32)], axis=1)
  queries = 10 * np.eye(length, length + 1, 1, dtype=np.float32)
  queries[0] = np.eye(1, length + 1, dtype=np.float32)
  return pattern, queries, keys


@pytest.mark.parametrize(
  "offset, settled", [(-2e-3, "bound"), (2e-3, "bound"), (-1, "host"), (1, "host")]
)
def test_a_planted_dense_row_is_decided_exactly(offset, settled):
  t1 = math.log1p(EPS1)
  if settled == "bound":
    top = np.float32(1 + t1 * (1 + offset))
  else:  # a float32 next to 1 + ln(1 + ε1): inside the bound, decided on the host
    top = np.nextafter(np.float32(1 + t1), np.float32(np.inf * offset))
  pattern, queries, keys = _planted(top)
  assert pattern.dense is not None and bool(pattern.dense[0])
  sol = solution_from_factors(jnp.asarray(queries), jnp.asarray(keys))
  report = ja.verify(sol, pattern, eps1=EPS1, eps2=EPS2)
  want = float(top) - 1 <= t1  # exact in float64, and ≥ 10⁻⁸ away from t1
  assert bool(report.row_ok[0]) == want and bool(report.certified)
  assert bool(report.row_ok[1:].all())
  np.testing.assert_allclose(report.spread[0], float(top) - 1, rtol=1e-6)
  assert int(report.settled_on_host) == (settled == "host")
  exact_ok = exact.rows_ok_exact(
    queries, keys, *(np.asarray(x) for x in pattern[:3]), [0], EPS1, EPS2, dense=pattern.dense_host
  )
  assert exact_ok[0] == want


@pytest.mark.parametrize("full", [True, False])
def test_streamed_levels_of_dense_rows_match_float64(full):
  """Nested levels (rank-1 and summed, several key blocks): spread max_j − min_j over every key,
  gap −∞, no outside mass, and the bound covers the float64 spread."""
  pattern = SparsePattern.from_dense(_windowed(40, dense_rows=(0, 7, 39)), check_columns=False)
  queries, keys = ja.construct.METHODS["jl"](jax.random.PRNGKey(4), pattern, 48, 48, EPS1, EPS2)
  queries = queries + jax.random.normal(jax.random.PRNGKey(5), queries.shape)  # dense rows too
  splits = (3, 16, 20, 48)
  scales = 48 / np.array(splits, np.float64)
  stats = ja.row_stats(
    queries,
    keys,
    pattern,
    splits,
    jnp.asarray(scales, jnp.float32),
    block_size=16,
    row_block=8,
    full=full,
  )
  want = dense_stats(queries, keys, pattern, splits, scales)
  rows = np.array([0, 7, 39])
  assert np.all(want.spread[:, rows] > 1.0)
  np.testing.assert_allclose(stats.spread, want.spread, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(stats.gap[:, rows], -np.inf)
  np.testing.assert_allclose(stats.gap, want.gap, rtol=1e-5, atol=1e-5)
  assert_bounds_cover(stats, want)
  if full:
    np.testing.assert_array_equal(stats.outside_mass[:, rows], 0.0)
    np.testing.assert_allclose(stats.max_abs_logit, want.max_abs_logit, rtol=1e-5)


@pytest.mark.parametrize("method", ["jl", "onehot"])
def test_a_search_over_a_family_with_global_rows(method):
  """Nested (jl: rank-1 and summed levels) and built per d (onehot: verifies at d = L)."""
  sampler = ja.patterns.Sampler("longformer(window=2,globals=2)", 32, 7, 1.0)
  result = ja.min_d(
    jax.random.PRNGKey(0), sampler, (4, 16, 32), trials=2, eps1=EPS1, eps2=EPS2, method=method
  )
  assert bool(result.certified)
  if method == "onehot":
    np.testing.assert_array_equal(result.verdicts, [[False, False, True]] * 2)


def test_verify_memory_is_linear_with_a_dense_row():
  """``ja.verify``'s compiled pass at L = 16384 with one global row: arguments and temporaries
  far below the L² a padded dense row costs (its [L, L] slots alone: 9·L² bytes)."""
  length, d = 16384, 8
  pattern = ja.patterns.Longformer(window=1, globals=1)(jax.random.PRNGKey(0), length)
  assert pattern.nnz == 4 and pattern.dense is not None
  x = jax.ShapeDtypeStruct((length, 2 * d), jnp.float32)
  params = ja.construct.identity_params(d)
  compiled = (
    jax.jit(lambda x, p: ja.verify(ja.Solution(x, *params), p, eps1=EPS1, eps2=EPS2))
    .lower(x, pattern)
    .compile()
  )
  memory = compiled.memory_analysis()
  used = memory.temp_size_in_bytes + memory.argument_size_in_bytes
  assert used < length * length // 16, used


def test_pattern_files_and_solution_files_keep_dense_rows(tmp_path):
  """``bench``'s pattern files flag a row of L equal nonzeros; a solution file stores the flags
  and ``bench check`` reads A back with the row's L ones."""
  from jaxattn_bench import pattern_file, solution_file

  a = _windowed(weights=False)
  np.save(tmp_path / "a.npy", a)
  scipy.io.mmwrite(tmp_path / "a.mtx", scipy.sparse.coo_array(a))
  for name in ("a.npy", "a.mtx"):
    user = pattern_file.load_pattern(str(tmp_path / name))
    np.testing.assert_array_equal(user.pattern.dense, np.isin(np.arange(12), (0, 5)))
    rows, columns = user.pattern.counts()
    np.testing.assert_array_equal(rows, (a > 0).sum(1))
    np.testing.assert_array_equal(columns, (a > 0).sum(0))
    np.testing.assert_array_equal(user.dense_columns, np.flatnonzero((a > 0).sum(0) > 4))
  arrays = dict(
    zip(solution_file.PATTERN_KEYS, map(np.asarray, user.pattern[:3])),
    pattern_dense=np.asarray(user.pattern.dense),
  )
  np.testing.assert_array_equal(solution_file.saved_matrix(arrays, "s.npz").toarray(), a)
