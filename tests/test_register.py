"""``ja.construct.register_method`` and ``unregister_method``: a construction of one's own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattn as ja

KEY = jax.random.PRNGKey(0)
PATTERN = ja.patterns.random_regular(KEY, length=16, nnz=2, a_min=0.5)


def one_hot(key, pattern, d, width, eps1, eps2, *, dtype=None):
  """The trivial construction at d = L: keys one-hot, queries the target logits on the support."""
  del key, dtype
  keys = jnp.where(jnp.arange(width) < d, jnp.eye(pattern.length, width), 0.0)
  support = ja.construct.target_logits(pattern, eps1, eps2)
  return jnp.einsum("ln,lnw->lw", support, keys[pattern.cols]), keys


def doubled(key, pattern, d, width, eps1, eps2, *, dtype=None):
  """``one_hot`` with twice its queries: other logits, the same support."""
  queries, keys = one_hot(key, pattern, d, width, eps1, eps2, dtype=dtype)
  return 2 * queries, keys


@pytest.fixture
def registered():
  """Registers ``one_hot`` as "one_hot_test" and removes it afterwards, whatever the test did."""
  ja.construct.register_method("one_hot_test", one_hot, mass_aware=False)
  yield "one_hot_test"
  if "one_hot_test" in ja.construct.METHODS:
    ja.construct.unregister_method("one_hot_test")


def test_a_registered_method_builds_verifies_and_is_searched(registered):
  sol = ja.construct.build(registered, KEY, PATTERN, d=16, eps1=0.5, eps2=0.5)
  logits = np.asarray(sol.logits())
  target = np.asarray(ja.construct.target_logits(PATTERN, 0.5, 0.5))
  rows = np.arange(16)[:, None]
  np.testing.assert_allclose(logits[rows, np.asarray(PATTERN.cols)], target, rtol=1e-6)
  assert bool(ja.verify(sol, PATTERN, eps1=0.5, eps2=0.5).ok)
  verdicts = ja.verify_grid(KEY, PATTERN, [4, 16], eps1=0.5, eps2=0.5, method=registered)
  assert verdicts.tolist() == [False, True]  # one-hot keys cut to 4 columns miss most supports


def test_registering_the_same_function_again_does_nothing(registered):
  ja.construct.register_method(registered, one_hot)
  assert ja.construct.METHODS[registered] is one_hot
  assert registered not in ja.construct.NESTED and registered not in ja.construct.MASS_AWARE


@pytest.mark.parametrize(
  "name, factors, flags",
  [
    ("one_hot_test", doubled, {}),
    ("one_hot_test", one_hot, {"nested": True}),
    ("jl", one_hot, {}),
  ],
)
def test_a_taken_name_raises(registered, name, factors, flags):
  before = dict(ja.construct.METHODS)
  with pytest.raises(ValueError, match="already registered"):
    ja.construct.register_method(name, factors, **flags)
  assert ja.construct.METHODS == before


def test_unregister_frees_the_name_and_a_new_function_is_traced_anew(registered):
  first = ja.construct.build(registered, KEY, PATTERN, d=16, eps1=0.5, eps2=0.5).logits()
  ja.construct.unregister_method(registered)
  assert registered not in ja.construct.METHODS
  with pytest.raises(ValueError, match="unknown method"):
    ja.construct.build(registered, KEY, PATTERN, d=16, eps1=0.5, eps2=0.5)
  ja.construct.register_method(registered, doubled, nested=True, mass_aware=True)
  assert registered in ja.construct.NESTED and registered in ja.construct.MASS_AWARE
  second = ja.construct.build(registered, KEY, PATTERN, d=16, eps1=0.5, eps2=0.5).logits()
  np.testing.assert_allclose(second, 2 * first, rtol=1e-6)  # not the compiled one_hot
  ja.construct.unregister_method(registered)
  assert registered not in ja.construct.NESTED and registered not in ja.construct.MASS_AWARE


@pytest.mark.parametrize(
  "name, message", [("jl", "built in"), ("no_such_method", "not registered")]
)
def test_unregister_refuses_built_in_and_unknown_names(name, message):
  with pytest.raises(ValueError, match=message):
    ja.construct.unregister_method(name)
  assert {"jl", "lstsq", "moment_curve", "optimize"} <= set(ja.construct.METHODS)
