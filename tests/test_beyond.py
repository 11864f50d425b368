"""Constructions beyond the paper (lstsq, optimize, moment_curve), random parameters, dtypes."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import jaxattn as ja
from jaxattn import construct
from jaxattn._src import base, lstsq, mining, moment_curve, optimize
from tests.reference import reference_figures, reference_ok

KEY = jax.random.PRNGKey(0)
EPS1, EPS2 = 0.5, 0.5
# method -> (L, N, d) at which it is documented to succeed: lstsq d ≈ 4N ln L (33 at L=64, N=2),
# optimize far below it, moment_curve d = 2N.
DOCUMENTED = {"lstsq": (64, 2, 48), "optimize": (64, 2, 8), "moment_curve": (64, 2, 4)}
METHODS = tuple(DOCUMENTED)


def _pattern(length, nnz, key=KEY):
  return ja.patterns.random_regular(key, length=length, nnz=nnz, a_min=0.2)


def _constructor(method):
  return getattr(ja.construct, method)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1])
def test_succeeds_at_documented_d_with_float64_reference(method, seed):
  """Independent NumPy float64 check of the solution at the d each method claims."""
  length, nnz, d = DOCUMENTED[method]
  p = _pattern(length, nnz, jax.random.PRNGKey(seed))
  sol = _constructor(method)(jax.random.PRNGKey(seed + 10), p, d, eps1=EPS1, eps2=EPS2)
  chex.assert_shape(sol.X, (length, 2 * d))
  rep = ja.verify(sol, p, eps1=EPS1, eps2=EPS2)
  ref = reference_figures(sol.X, sol.w_q, sol.w_k, p.to_dense())
  assert bool(rep.ok) and reference_ok(ref, EPS1, EPS2)
  np.testing.assert_allclose(float(rep.leak), ref["leak"], rtol=1e-3)
  np.testing.assert_allclose(float(rep.max_abs_logit), ref["max_abs_logit"], rtol=1e-4)


@pytest.mark.parametrize(
  "method, d",
  [("lstsq", 1), ("lstsq", 8), ("optimize", 1), ("moment_curve", 1), ("moment_curve", 3)],
)
def test_fails_gracefully_below_its_d(method, d):
  p = _pattern(64, 2)
  sol = _constructor(method)(KEY, p, d, eps1=EPS1, eps2=EPS2)
  assert np.all(np.isfinite(np.asarray(sol.X)))
  rep = ja.verify(sol, p, eps1=EPS1, eps2=EPS2)
  assert not bool(rep.ok)
  assert not any(np.isnan(float(x)) for x in (rep.ratio_error, rep.leak, rep.max_abs_logit))
  assert not reference_ok(reference_figures(sol.X, sol.w_q, sol.w_k, p.to_dense()), EPS1, EPS2)


def test_moment_curve_fails_gracefully_where_float32_runs_out():
  """N = 2 at L = 256 needs logits ~1e8: float32 fails (no NaN), float64 verifies."""
  p = _pattern(256, 2)
  rep = ja.verify(
    ja.construct.moment_curve(KEY, p, 4, eps1=EPS1, eps2=EPS2), p, eps1=EPS1, eps2=EPS2
  )
  assert not bool(rep.ok) and float(rep.max_abs_logit) > 1e7
  assert not np.isnan(float(rep.ratio_error)) and not np.isnan(float(rep.leak))
  with jax.enable_x64(True):
    p64 = base.cast_pattern(p, jnp.float64)
    sol = ja.construct.moment_curve(KEY, p64, 4, eps1=EPS1, eps2=EPS2, dtype="float64")
    assert sol.X.dtype == jnp.float64
    assert bool(ja.verify(sol, p64, eps1=EPS1, eps2=EPS2).ok)


@pytest.mark.parametrize(
  "method, params",
  [(m, "identity") for m in ("jl",) + METHODS]
  + [(m, "random") for m in ("jl", "lstsq", "moment_curve")],
)
def test_parameters_fixed_across_patterns_and_keys(method, params):
  build = functools.partial(_constructor(method), d=8, eps1=EPS1, eps2=EPS2, params=params)
  a = build(KEY, _pattern(16, 2))
  b = build(jax.random.PRNGKey(5), _pattern(16, 2, jax.random.PRNGKey(3)))
  chex.assert_trees_all_equal((a.w_q, a.w_k), (b.w_q, b.w_k))
  depth = {"identity": 16, "random": 32}[params]
  chex.assert_shape([a.w_q, a.w_k], (depth, 8))
  chex.assert_shape(a.X, (16, depth))


def test_random_params_reproduce_factors_and_verdicts():
  """params="random": X W_Q = Q, X W_K = K to float precision, and the same verdicts as identity."""
  p = _pattern(64, 2)
  verdicts = []
  for method, d in (("jl", 4), ("moment_curve", 4), ("lstsq", 48)):
    queries, keys = construct.METHODS[method](KEY, p, d, d, EPS1, EPS2)
    identity = construct.solution_from_factors(queries, keys, "identity")
    random = construct.solution_from_factors(queries, keys, "random")
    w_q, w_k = construct.random_params(d)
    chex.assert_trees_all_equal((random.w_q, random.w_k), (w_q, w_k))
    scale = float(jnp.max(jnp.abs(identity.logits())))
    np.testing.assert_allclose(random.logits(), identity.logits(), rtol=1e-5, atol=1e-5 * scale)
    same = [bool(ja.verify(s, p, eps1=EPS1, eps2=EPS2).ok) for s in (identity, random)]
    assert same[0] == same[1], (method, d)
    verdicts.append(same[0])
  assert verdicts == [False, True, True]


@pytest.mark.parametrize("method", METHODS)
def test_factors_padded_to_width_equal_factors_at_d(method):
  """factors(d, width) = [factors(d, d), 0] with d traced: what min_d relies on."""
  p = _pattern(16, 2)
  factors = jax.jit(construct.METHODS[method], static_argnums=3)
  for d in (4, 6):  # ≥ 2N: moment_curve's factors are zero below
    wide, narrow = factors(KEY, p, jnp.asarray(d), 8, EPS1, EPS2), factors(KEY, p, d, d, EPS1, EPS2)
    for w, n in zip(wide, narrow):
      assert np.all(np.any(np.asarray(n) != 0, axis=-1))  # a nonzero row each: not 0 == 0
      np.testing.assert_allclose(w[:, :d], n, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(n))))
      np.testing.assert_array_equal(w[:, d:], 0.0)


def test_lstsq_support_logits_are_exact_and_keys_unit():
  p = _pattern(64, 2)
  sol = ja.construct.lstsq(KEY, p, 16, eps1=EPS1, eps2=EPS2)
  np.testing.assert_allclose(np.linalg.norm(sol.keys(), axis=-1), 1.0, rtol=1e-5)
  rep = ja.verify(sol, p, eps1=EPS1, eps2=EPS2)
  assert float(rep.ratio_error) < 1e-3  # spread only from rounding
  # keys do not depend on A
  other = ja.construct.lstsq(KEY, _pattern(64, 2, jax.random.PRNGKey(9)), 16, eps1=EPS1, eps2=EPS2)
  chex.assert_trees_all_equal(sol.keys(), other.keys())


def test_lstsq_shift_is_clipped_below_at_c_jl():
  """Guards the lower clip c_i ≥ c_jl,i of ``lstsq``: in bfloat16 at ε1 = ε2 = 0.1 the rounding
  cap is below c_jl,i, so without the clip the support logits would sit only cap above ln A."""
  eps1, eps2, d = 0.1, 0.1, 32
  p = _pattern(32, 2)
  c_jl = np.asarray(construct.target_logits(p, eps1, eps2) - p.log_weights)
  assert float(lstsq.precision_shift(eps1, p.nnz, d, jnp.bfloat16)) < c_jl.min()
  factors = jax.jit(construct.METHODS["lstsq"], static_argnums=3, static_argnames="dtype")
  queries, keys = factors(KEY, p, d, d, eps1, eps2, dtype=jnp.bfloat16)
  support = jnp.take_along_axis(queries @ keys.T, p.cols, axis=1)
  np.testing.assert_allclose(support - p.log_weights, c_jl, rtol=1e-5)


def test_moment_curve_depth_is_the_minimum_over_all_outside_points():
  """The neighbour rule (concavity of log|g| between zeros) against a brute-force float64 min."""
  length = 40
  theta = 2 * np.pi * np.arange(length) / length
  for nnz, seed in ((2, 0), (3, 1)):
    p = ja.patterns.random_sparse(jax.random.PRNGKey(seed), length=length, nnz=nnz, a_min=0.2)
    depth = np.asarray(moment_curve.vanishing_depth(p, jnp.float32))
    cols, valid = np.asarray(p.cols), np.asarray(p.valid)
    for i in range(length):
      support = np.unique(cols[i][valid[i]])
      outside = np.setdiff1d(np.arange(length), support)
      g = np.prod(1 - np.cos(theta[outside, None] - theta[support][None, :]), axis=1)
      np.testing.assert_allclose(depth[i], g.min(), rtol=1e-4)


class TestOptimizeLoop(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_steps_zero_when_start_passes_and_positive_otherwise(self):
    p = _pattern(64, 2)
    run = self.variant(functools.partial(optimize.optimize_run, eps1=EPS1, eps2=EPS2, width=64))
    easy = run(KEY, p, 64)
    assert int(easy.steps) == 0 and bool(easy.passed)
    hard = run(KEY, p, 8)
    assert 0 < int(hard.steps) <= optimize.MAX_STEPS and bool(hard.passed)
    np.testing.assert_array_equal(hard.queries[:, 8:], 0.0)
    np.testing.assert_array_equal(hard.keys[:, 8:], 0.0)

  def test_excess_is_the_reference_figures_shifted_by_the_margins(self):
    """optimize's loss sees the conditions of ``ja.reference.dense_check``, shifted by its margins.

    max ratio excess = max_i spread_i − (1 − s) ln(1 + ε1) and max zeros excess
    = max_i gap_i − ln ε2 + s ln(1 + ε1), with spread and gap from the dense
    float64 reference, both densely and on mined negatives (whose largest is
    each row's largest off-support logit); guards a loss whose pairs or margins
    drift from the definitions (the hinge reads ``excess``).
    """
    p = _pattern(32, 2)
    queries, keys = construct.METHODS["lstsq"](KEY, p, 6, 6, EPS1, EPS2)
    slack = 0.3
    sol = construct.solution_from_factors(queries, keys)
    dense = ja.reference.dense_check(sol.X, sol.w_q, sol.w_k, p.to_dense(), eps1=EPS1, eps2=EPS2)
    margin = np.log1p(EPS1)
    for mined in (None, mining.mine(queries, keys, p, 4)):
      ratio, zeros = optimize.excess(queries, keys, p, EPS1, EPS2, slack, mined)
      np.testing.assert_allclose(
        np.max(ratio), dense.spread.max() - (1 - slack) * margin, rtol=1e-4, atol=1e-4
      )
      np.testing.assert_allclose(
        np.max(zeros), dense.gap.max() - np.log(EPS2) + slack * margin, rtol=1e-4, atol=1e-4
      )

  @parameterized.parameters((64, 16), (32, 16), (32, 4))
  def test_mine_finds_the_dense_top_k(self, block_size, merge_blocks):
    """``mine``'s negatives are each row's K largest off-support logits, in order, against a
    float64 NumPy sort of the dense logits, and its spread and gap are the dense reference's.

    L = 300 in 64-key blocks (the last one partial) of two 32-key chunks, or 32-key
    blocks of one, and 64-row blocks, K = 4 of 10 chunks, merged in 5 groups of 1
    block, 2 of 5 or 5 of 2: guards the chunk-maximum selection, the support and
    padding masks and the merges within and across groups of blocks.
    """
    p = ja.patterns.random_regular(KEY, length=300, nnz=3, a_min=0.2)
    queries, keys = (jax.random.normal(k, (300, 5)) for k in jax.random.split(KEY))
    mined = jax.jit(
      functools.partial(
        mining.mine, count=4, block_size=block_size, row_block=64, merge_blocks=merge_blocks
      )
    )(queries, keys, p)
    logits = np.asarray(queries, np.float64) @ np.asarray(keys, np.float64).T
    dense = p.to_dense() > 0
    top = np.sort(np.where(dense, -np.inf, logits), axis=1)[:, ::-1][:, :4]
    found = np.take_along_axis(logits, np.asarray(mined.negatives), axis=1)
    assert bool(np.all(mined.valid)) and not np.any(
      np.take_along_axis(dense, np.asarray(mined.negatives), axis=1)
    )
    np.testing.assert_allclose(found, top, rtol=1e-5, atol=1e-5)
    sol = construct.solution_from_factors(queries, keys)
    ref = ja.reference.dense_check(sol.X, sol.w_q, sol.w_k, p.to_dense(), eps1=EPS1, eps2=EPS2)
    np.testing.assert_allclose(mined.gap, ref.gap, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mined.spread, ref.spread, rtol=1e-5, atol=1e-5)

  def test_mine_runs_in_float64(self):
    """Under 64-bit JAX ``mine`` keeps its int32 chunk ids (a search in float64 runs it inside
    ``lax.scan``, whose carry must keep its dtype) and finds the top 3 of a NumPy sort."""
    p = _pattern(96, 2)
    queries, keys = (
      np.asarray(jax.random.normal(k, (96, 4)), np.float64) for k in jax.random.split(KEY)
    )
    with jax.enable_x64(True):
      mined = mining.mine(
        jnp.asarray(queries), jnp.asarray(keys), base.cast_pattern(p, jnp.float64), 3, block_size=32
      )
    assert mined.gap.dtype == jnp.float64
    logits = np.where(p.to_dense() > 0, -np.inf, queries @ keys.T)
    np.testing.assert_array_equal(mined.negatives, np.argsort(-logits, axis=1)[:, :3])

  def test_hard_negatives_agree_with_the_dense_loss(self):
    """At small L the hard-negative loop (K = 4 of L = 48) and the dense loss reach the same
    verdict at every d of a grid, and each verdict is the float64 dense reference's (the
    certificate). Guards hard-negative training that stops on a mined set instead of the
    exact check, or that loses the d the dense loss reaches."""
    p = _pattern(48, 2)
    grid = jnp.asarray([2, 3, 4, 6])
    verdicts = {}
    for negatives in (4, None):
      run = jax.jit(
        jax.vmap(
          lambda d, negatives=negatives: optimize.optimize_run(
            KEY, p, d, 6, EPS1, EPS2, training=optimize.Training(negatives=negatives)
          )
        )
      )
      result = run(grid)
      for d, q, k, passed in zip(grid, result.queries, result.keys, result.passed):
        sol = construct.solution_from_factors(q, k)
        assert ja.reference.dense_check(
          sol.X, sol.w_q, sol.w_k, p.to_dense(), eps1=EPS1, eps2=EPS2
        ).ok == bool(passed), (negatives, d)
      verdicts[negatives] = np.asarray(result.passed).tolist()
    assert verdicts[4] == verdicts[None] and True in verdicts[4] and False in verdicts[4]

  def test_stops_with_half_the_margin(self):
    """Guards the stopping margin SLACK/2: the loop stops only once the float64 dense check
    passes with spread ≤ (1 − SLACK/2) ln(1 + ε1) and gap ≤ ln ε2 − SLACK/2 ln(1 + ε1)
    (with margin 0 it stops earlier, at spread ≈ ln(1 + ε1))."""
    p = _pattern(32, 2)
    result = optimize.optimize_run(KEY, p, 6, 6, EPS1, EPS2)
    assert int(result.steps) > 0 and bool(result.passed)
    sol = construct.solution_from_factors(result.queries, result.keys)
    rep = ja.reference.dense_check(sol.X, sol.w_q, sol.w_k, p.to_dense(), eps1=EPS1, eps2=EPS2)
    margin, rounding = optimize.SLACK / 2 * np.log1p(EPS1), 1e-4
    assert rep.spread.max() <= np.log1p(EPS1) - margin + rounding
    assert rep.gap.max() <= np.log(EPS2) - margin + rounding

  def test_queries_only_keeps_keys(self):
    p = _pattern(16, 2)
    result = optimize.optimize_run(
      KEY, p, 16, 16, EPS1, EPS2, training=optimize.Training(train_keys=False, max_steps=5)
    )
    _, keys = construct.METHODS["lstsq"](KEY, p, 16, 16, EPS1, EPS2)
    np.testing.assert_array_equal(result.keys, keys)


def test_resource_plan_mirrors_optimize():
  """The memory plan's bounds of optimize (negatives, chunk) are optimize's own: guards a
  change of optimize that leaves ``bench resources`` planning for the old loop."""
  from jaxattn_bench import resources

  assert (resources.OPTIMIZE_NEGATIVES, resources.OPTIMIZE_CHUNK) == (
    optimize.NEGATIVES,
    mining.CHUNK,
  )


@pytest.mark.parametrize(
  "method, grid", [("lstsq", (4, 48)), ("moment_curve", (2, 4)), ("optimize", (1, 8))]
)
def test_min_d_runs_every_method(method, grid):
  sampler = ja.patterns.Sampler("random_regular", length=16, nnz=2, a_min=0.2)
  result = ja.min_d(KEY, sampler, grid, eps1=EPS1, eps2=EPS2, method=method, trials=2, delta=0.0)
  assert result.successes[0] == 0 and result.d_min == grid[-1]


def test_dtype_axis():
  p = _pattern(32, 2)
  sol = ja.construct.lstsq(KEY, p, 32, eps1=EPS1, eps2=EPS2, dtype="bfloat16")
  assert sol.X.dtype == jnp.bfloat16
  rep = ja.verify(sol, p, eps1=EPS1, eps2=EPS2)
  assert rep.leak.dtype == jnp.bfloat16
  rounded = ja.verify(
    ja.construct.lstsq(KEY, p, 32, eps1=EPS1, eps2=EPS2), p, eps1=EPS1, eps2=EPS2, dtype="bfloat16"
  )
  assert rounded.leak.dtype == jnp.bfloat16
  sampler = ja.patterns.Sampler("random_regular", length=16, nnz=1, a_min=0.2)
  result = ja.min_d(
    KEY, sampler, (2, 64), eps1=EPS1, eps2=EPS2, method="moment_curve", trials=2, dtype="bfloat16"
  )
  assert result.successes[0] == 2


@pytest.mark.parametrize(
  "call",
  [
    lambda: ja.construct.lstsq(KEY, _pattern(16, 1), 4, eps1=EPS1, eps2=EPS2, dtype="float64"),
    lambda: ja.verify(
      ja.construct.jl(KEY, _pattern(16, 1), 4, eps1=EPS1, eps2=EPS2),
      _pattern(16, 1),
      eps1=EPS1,
      eps2=EPS2,
      dtype=jnp.float64,
    ),
    lambda: ja.min_d(
      KEY, ja.patterns.Sampler("random_regular", 16, 1), (4,), eps1=EPS1, eps2=EPS2, dtype="float64"
    ),
  ],
)
def test_float64_without_x64_is_a_clear_error(call):
  with pytest.raises(ValueError, match="jax_enable_x64"):
    call()


def test_bad_dtype_and_params():
  with pytest.raises(ValueError, match="unknown dtype"):
    ja.construct.jl(KEY, _pattern(16, 1), 4, eps1=EPS1, eps2=EPS2, dtype="float16")
  with pytest.raises(ValueError, match="unknown params"):
    ja.construct.jl(KEY, _pattern(16, 1), 4, eps1=EPS1, eps2=EPS2, params="orthogonal")


def test_beyond_preset_and_dtype_axis():
  from jaxattn_bench import grid

  points = grid.load_preset("beyond").points
  assert {p.method for p in points} == set(DOCUMENTED) | {"jl"}
  assert {p.dtype for p in points} == {"bfloat16", "float32", "float64"}
  assert all(p.dtype == "float32" for p in grid.load_preset("quick").points)
  point = points[0]
  wider = point._replace(dtype="float64")
  assert grid.point_key(0, point).tolist() == grid.point_key(0, wider).tolist()
  with pytest.raises(Exception, match="dtype"):
    grid.parse_preset(
      'method = "jl"\n[[grid]]\nfamily = "banded"\nlength = 8\nnnz = 1\n'
      'a_min = 0.5\neps1 = 0.5\neps2 = 0.5\ndtype = "float16"\nd_grid = [2]\n'
      "trials = 1\ndelta = 0.0",
      "bad",
    )
