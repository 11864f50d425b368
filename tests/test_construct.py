"""The paper's construction ``jl``."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattn as ja
from tests.reference import reference_figures, reference_ok

KEY = jax.random.PRNGKey(0)


def _pattern(length=24, nnz=2, key=KEY):
  return ja.patterns.random_regular(key, length=length, nnz=nnz, a_min=0.2)


def test_shapes_and_fixed_parameters():
  sol = ja.construct.jl(KEY, _pattern(), d=16, eps1=0.5, eps2=0.5)
  chex.assert_shape(sol.X, (24, 32))
  chex.assert_shape([sol.w_q, sol.w_k], (32, 16))
  chex.assert_shape([sol.queries(), sol.keys()], (24, 16))
  chex.assert_shape([sol.logits(), sol.attention()], (24, 24))
  np.testing.assert_allclose(sol.attention().sum(-1), 1.0, rtol=1e-5)
  other = ja.construct.jl(
    jax.random.PRNGKey(9), _pattern(40, 3, jax.random.PRNGKey(4)), d=16, eps1=0.1, eps2=0.01
  )
  chex.assert_trees_all_equal((sol.w_q, sol.w_k), (other.w_q, other.w_k))
  w_q, w_k = ja.construct.identity_params(16)
  chex.assert_trees_all_equal((sol.w_q, sol.w_k), (w_q, w_k))


def _avals(jaxpr):
  """Shapes of every constant, input and output of every equation of a (closed) jaxpr."""
  variables = [v for eqn in jaxpr.jaxpr.eqns for v in (*eqn.invars, *eqn.outvars)]
  return [np.shape(c) for c in jaxpr.consts] + [
    v.aval.shape for v in variables if hasattr(v, "aval")
  ]


def test_identity_queries_and_keys_are_slices_without_a_d_by_d_matrix():
  """X W_Q = X[:, :d] and X W_K = X[:, d:], equal to the dense products, and O(L·d): no dot
  and no array with d² or more elements. Guards a queries()/keys() that multiplies by dense
  identity parameters (X @ I, O(d²) memory) or slices the wrong half of X."""
  length, d = 12, 64
  x = jax.random.normal(KEY, (length, 2 * d))
  sol = ja.construct.solution_from_factors(x[:, :d], x[:, d:])
  assert isinstance(sol.w_q, ja.construct.IdentityBlock) and sol.w_q.shape == (2 * d, d)
  dense_q, dense_k = np.asarray(sol.w_q), np.asarray(sol.w_k)
  np.testing.assert_array_equal(dense_q, np.eye(2 * d)[:, :d])
  np.testing.assert_array_equal(dense_k, np.eye(2 * d)[:, d:])
  np.testing.assert_array_equal(sol.queries(), np.asarray(x) @ dense_q)
  np.testing.assert_array_equal(sol.keys(), np.asarray(x) @ dense_k)
  np.testing.assert_array_equal(np.asarray(x) @ sol.w_k, np.asarray(x) @ dense_k)  # NumPy's @
  np.testing.assert_allclose(
    sol.logits(), np.asarray(x) @ dense_q @ (np.asarray(x) @ dense_k).T, rtol=1e-5, atol=1e-4
  )
  jaxpr = jax.make_jaxpr(lambda s: (s.queries(), s.keys()))(sol)
  assert not [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"], jaxpr
  assert max(np.prod(shape) for shape in _avals(jaxpr)) == length * 2 * d, jaxpr
  with pytest.raises(ValueError, match="does not fit"):
    ja.construct.IdentityBlock(d + 1, 2 * d, d)


def test_same_key_bitwise_identical_and_keys_differ():
  p = _pattern()
  a = ja.construct.jl(KEY, p, d=32, eps1=0.5, eps2=0.5)
  b = ja.construct.jl(KEY, p, d=32, eps1=0.5, eps2=0.5)
  np.testing.assert_array_equal(np.asarray(a.X), np.asarray(b.X))
  c = ja.construct.jl(jax.random.PRNGKey(1), p, d=32, eps1=0.5, eps2=0.5)
  assert not np.array_equal(np.asarray(a.X), np.asarray(c.X))


def test_x_is_b_r_and_r():
  p = _pattern()
  d = 8
  sol = ja.construct.jl(KEY, p, d=d, eps1=0.5, eps2=0.25)
  a = np.asarray(p.to_dense(), np.float64)
  x1, r = np.asarray(sol.X[:, :d], np.float64), np.asarray(sol.X[:, d:], np.float64)
  # B_ij = ln(A_ij / max_j A_ij) + ln(1 + eps1) + ln(1/eps2) - ln(a_min,i) on the support
  support = a > 0
  log_a = np.where(support, np.log(np.where(support, a, 1.0)), 0.0)
  row_max = np.max(np.where(support, log_a, -np.inf), axis=1, keepdims=True)
  row_min = np.min(np.where(support, log_a, np.inf), axis=1, keepdims=True)
  b = np.where(support, log_a - row_min + np.log(1.5) + np.log(4.0), 0.0)
  np.testing.assert_allclose(x1, b @ r, rtol=1e-5, atol=1e-5)
  assert np.all(b[support] >= np.log(1.5) + np.log(4.0) - 1e-12)
  np.testing.assert_allclose(b.max(1), (row_max - row_min)[:, 0] + np.log(1.5) + np.log(4.0))
  # row-softmax(B) itself meets both conditions exactly
  eye, zero = np.eye(a.shape[0]), np.zeros((a.shape[0],) * 2)
  exact = reference_figures(np.hstack([b, eye]), np.vstack([eye, zero]), np.vstack([zero, eye]), a)
  assert exact["ratio_error"] < 1e-12 and exact["leak"] <= 0.25 / 1.5 * (1 + 1e-12)
  # R has variance 1/d
  np.testing.assert_allclose(np.var(r) * d, 1.0, rtol=0.3)


def test_prefix_consistency():
  """Column k of R is drawn from fold_in(key, k): a d-draw is a prefix of a d'-draw."""
  p = _pattern()
  small = ja.construct.jl(KEY, p, d=8, eps1=0.5, eps2=0.5)
  large = ja.construct.jl(KEY, p, d=32, eps1=0.5, eps2=0.5)
  np.testing.assert_allclose(small.keys(), large.keys()[:, :8] * np.sqrt(32 / 8), rtol=1e-5)


@pytest.mark.parametrize("length, nnz, generous_d", [(32, 1, 2048), (32, 2, 4096)])
def test_succeeds_at_generous_d_and_fails_at_tiny_d(length, nnz, generous_d):
  p = _pattern(length, nnz)
  generous = ja.construct.jl(KEY, p, d=generous_d, eps1=0.5, eps2=0.5)
  rep = ja.verify(generous, p, eps1=0.5, eps2=0.5)
  assert bool(rep.ok)
  assert reference_ok(
    reference_figures(generous.X, generous.w_q, generous.w_k, p.to_dense()), 0.5, 0.5
  )
  tiny = ja.construct.jl(KEY, p, d=2, eps1=0.5, eps2=0.5)
  rep = ja.verify(tiny, p, eps1=0.5, eps2=0.5)
  assert not bool(rep.ok)
  assert not np.isnan(float(rep.leak)) and not np.isnan(float(rep.ratio_error))


@pytest.mark.parametrize("d", [0, -3, 2.5, True, "8"])
def test_bad_d(d):
  with pytest.raises(ValueError, match="d must be"):
    ja.construct.jl(KEY, _pattern(), d=d, eps1=0.5, eps2=0.5)


@pytest.mark.parametrize(
  "eps1, eps2, name",
  [
    (0.0, 0.5, "eps1"),
    (-1.0, 0.5, "eps1"),
    (float("inf"), 0.5, "eps1"),
    (0.5, 1.0, "eps2"),
    (0.5, 0.0, "eps2"),
    (0.5, float("nan"), "eps2"),
  ],
)
def test_bad_eps(eps1, eps2, name):
  with pytest.raises(ValueError, match=name):
    ja.construct.jl(KEY, _pattern(), d=8, eps1=eps1, eps2=eps2)


def test_unknown_method():
  with pytest.raises(ValueError, match="unknown method"):
    ja.construct.build("nope", KEY, _pattern(), 8, eps1=0.5, eps2=0.5)


def test_jit_and_vmap_over_keys():
  p = _pattern()
  keys = jax.random.split(KEY, 3)
  batch = jax.vmap(lambda k: ja.construct.jl(k, p, d=8, eps1=0.5, eps2=0.5).X)(keys)
  single = jax.jit(lambda k: ja.construct.jl(k, p, d=8, eps1=0.5, eps2=0.5).X)(keys[1])
  np.testing.assert_allclose(batch[1], single, rtol=1e-6)
  assert batch.dtype == jnp.float32


@pytest.mark.parametrize("d, expected", [(8, False), (256, False), (2048, True)])
def test_jl_and_verify_agree_with_float64_reference(d, expected):
  """Independent NumPy float64 check of construct.jl + verify: every figure and verdict."""
  p = _pattern(32, 2, jax.random.PRNGKey(d))
  sol = ja.construct.jl(jax.random.PRNGKey(7), p, d=d, eps1=0.5, eps2=0.5)
  rep = ja.verify(sol, p, eps1=0.5, eps2=0.5)
  ref = reference_figures(sol.X, sol.w_q, sol.w_k, p.to_dense())
  for name in ("ratio_error", "leak", "outside_mass_max", "outside_mass_mean", "max_abs_logit"):
    np.testing.assert_allclose(float(getattr(rep, name)), ref[name], rtol=1e-3, err_msg=name)
  assert bool(rep.ok) == reference_ok(ref, 0.5, 0.5) == expected
