"""min_d: nested-prefix search, consistency with per-d construction, compilation."""

import functools
from unittest import mock

import jax
import numpy as np
import pytest

import jaxattn as ja
from jaxattn._src import grid_kernel

EPS1, EPS2 = 0.5, 0.5
GRID = (16, 32, 64, 128, 256, 512, 1024, 2048)


def _sampler(length=32, nnz=1, a_min=0.2):
  return functools.partial(ja.patterns.random_regular, length=length, nnz=nnz, a_min=a_min)


def test_nested_prefixes_match_independent_constructions():
  """The one-pass grid verdicts equal verify(jl(key, A, d)) at every d."""
  key, grid = jax.random.PRNGKey(1), (64, 256, 1024, 2048)
  for trial in range(2):
    pattern_key, method_key = jax.random.split(jax.random.fold_in(key, trial))
    p = _sampler(nnz=2)(pattern_key)
    nested = ja.verify_grid(method_key, p, grid, eps1=EPS1, eps2=EPS2)
    for g, d in enumerate(grid):
      rep = ja.verify(
        ja.construct.jl(method_key, p, d, eps1=EPS1, eps2=EPS2), p, eps1=EPS1, eps2=EPS2
      )
      near = (abs(float(rep.ratio_error) - EPS1) < 1e-4) or (abs(float(rep.leak) - EPS2) < 1e-4)
      assert near or nested[g] == bool(rep.ok), (trial, d)
    assert not nested[0] and nested[-1]


def test_min_d_result_and_determinism():
  res = ja.min_d(jax.random.PRNGKey(0), _sampler(), GRID, eps1=EPS1, eps2=EPS2, trials=8, delta=0.1)
  assert res.trials == 8
  np.testing.assert_array_equal(res.d_grid, GRID)
  assert res.d_min is not None and res.d_min in GRID
  first = GRID.index(res.d_min)
  assert res.successes[first] >= 8 * 0.9 and np.all(res.successes[:first] < 8 * 0.9)
  np.testing.assert_allclose(res.success_rate, res.successes / 8)
  assert np.all(res.ci_low <= res.success_rate) and np.all(res.success_rate <= res.ci_high)
  again = ja.min_d(
    jax.random.PRNGKey(0), _sampler(), GRID, eps1=EPS1, eps2=EPS2, trials=8, delta=0.1
  )
  np.testing.assert_array_equal(again.successes, res.successes)


def test_unreached_grid_gives_none():
  res = ja.min_d(jax.random.PRNGKey(0), _sampler(nnz=2), (2, 4), eps1=EPS1, eps2=EPS2, trials=4)
  assert res.d_min is None
  np.testing.assert_array_equal(res.successes, [0, 0])


def _count_traces():
  """Patch ``grid_states`` with a counting wrapper: ``min_d`` calls it once per trace."""
  return mock.patch.object(grid_kernel, "grid_states", wraps=grid_kernel.grid_states)


def test_compiles_once_for_the_whole_grid():
  sampler_traces = []

  def counting_sampler(key):
    sampler_traces.append(1)  # runs at trace time only
    return ja.patterns.random_regular(key, length=32, nnz=1, a_min=0.2)

  with _count_traces() as traced:
    ja.min_d(jax.random.PRNGKey(0), counting_sampler, GRID, eps1=EPS1, eps2=EPS2, trials=4)
    ja.min_d(jax.random.PRNGKey(1), counting_sampler, GRID, eps1=0.3, eps2=0.2, trials=4)
  assert traced.call_count == 1  # one trace for the whole grid; new key, new eps: no retrace
  assert len(sampler_traces) <= 2  # one shape probe and one trace, not one per grid d


@pytest.mark.parametrize("length", [16, 64])
def test_empirical_d_min_is_below_theory(length):
  """At d = jl_dim every trial succeeds (the bound holds), and d_min is found strictly below it."""
  bound = ja.theory.jl_dim(length, 2, eps1=EPS1, eps2=EPS2, a_min=0.2, delta=0.1)
  assert GRID[-1] < bound
  res = ja.min_d(
    jax.random.PRNGKey(2),
    _sampler(length, nnz=2),
    GRID + (bound,),
    eps1=EPS1,
    eps2=EPS2,
    trials=4,
    delta=0.1,
  )
  assert res.successes[-1] == 4
  assert res.d_min is not None and res.d_min < bound


def test_clopper_pearson_known_values():
  low, high = ja.stats.clopper_pearson(np.array([0, 10, 5]), 10, confidence=0.95)
  np.testing.assert_allclose(high[0], 1 - 0.025 ** (1 / 10), rtol=1e-9)
  np.testing.assert_allclose(low[1], 0.025 ** (1 / 10), rtol=1e-9)
  assert low[0] == 0.0 and high[1] == 1.0
  np.testing.assert_allclose([low[2], high[2]], [0.18708, 0.81292], atol=1e-5)


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(d_grid=(8, 4)), "increasing"),
    (dict(d_grid=()), "increasing"),
    (dict(d_grid=(0, 4)), "increasing"),
    (dict(method="nope"), "unknown method"),
    (dict(trials=0), "trials"),
    (dict(delta=1.0), "delta"),
    (dict(confidence=1.0), "confidence"),
    (dict(eps2=2.0), "eps2"),
  ],
)
def test_bad_arguments(kwargs, message):
  args = dict(d_grid=(4, 8), eps1=EPS1, eps2=EPS2) | kwargs
  with pytest.raises(ValueError, match=message):
    ja.min_d(jax.random.PRNGKey(0), _sampler(), **args)


def test_equal_samplers_share_one_compilation():
  with _count_traces() as traced:
    for seed, eps1 in ((0, 0.5), (1, 0.3)):
      # settings used by no other test, so nothing is cached before the first call
      sampler = ja.patterns.Sampler("random_regular", length=16, nnz=1, a_min=0.3)
      ja.min_d(jax.random.PRNGKey(seed), sampler, (4, 8, 16), eps1=eps1, eps2=EPS2, trials=2)
  assert traced.call_count == 1


def test_sampler_validates():
  with pytest.raises(ValueError, match="unknown pattern family"):
    ja.patterns.Sampler("nope", length=8, nnz=2)
  with pytest.raises(ValueError, match="nnz <= length"):
    ja.patterns.Sampler("banded", length=8, nnz=9)


def test_from_counts_needs_the_full_one_minus_delta():
  """Guards ``needed = ceil((1 − δ)T)``: with floor, 7/8 = 0.875 < 0.9 would pass at δ = 0.1."""
  res = ja.MinDResult.from_counts((4, 8, 16), np.array([6, 7, 8]), trials=8, delta=0.1)
  assert res.d_min == 16
  exact = ja.MinDResult.from_counts((4, 8), np.array([8, 9]), trials=10, delta=0.1)
  assert exact.d_min == 8  # 9/10 = 1 − δ exactly passes despite (1 − 0.1)·10 rounding


def _per_trial_successes(key, sampler, d_grid, trials):
  """Σ_t verify_grid(method_keys[t], sampler(pattern_keys[t])): min_d's count, trial by trial."""
  pattern_keys, method_keys = ja.trial_keys(key, trials)
  return sum(
    ja.verify_grid(method_keys[t], sampler(pattern_keys[t]), d_grid, eps1=EPS1, eps2=EPS2).astype(
      int
    )
    for t in range(trials)
  )


MIXED_GRID = (362, 609, 2048)  # the trials of key 0 pass at different d here
MIXED_SAMPLER = ja.patterns.Sampler("random_regular", length=32, nnz=2, a_min=0.2)


def test_trials_use_independent_pattern_and_method_keys():
  """Guards against one key serving both the pattern and the construction of a trial.

  trial_keys gives 2T distinct keys, and min_d's counts are those of building with
  method_keys[t] on sampler(pattern_keys[t]); with the pattern key passed to the
  construction the counts differ on this grid.
  """
  key, trials = jax.random.PRNGKey(0), 4
  pattern_keys, method_keys = ja.trial_keys(key, trials)
  all_keys = np.concatenate([jax.random.key_data(k) for k in (pattern_keys, method_keys)])
  assert len({tuple(k) for k in all_keys}) == 2 * trials
  expected = _per_trial_successes(key, MIXED_SAMPLER, MIXED_GRID, trials)
  assert np.any((0 < expected) & (expected < trials))  # some trials pass where others fail
  res = ja.min_d(key, MIXED_SAMPLER, MIXED_GRID, eps1=EPS1, eps2=EPS2, trials=trials)
  np.testing.assert_array_equal(res.successes, expected)


def test_padding_trials_are_not_counted(monkeypatch):
  """Guards the sum over ``success[:trials]``: 3 trials in batches of 2 pad one trial (a repeat
  of trial 0), which must not be counted."""
  monkeypatch.setattr(grid_kernel, "trial_batch", lambda *args: 2)
  key = jax.random.PRNGKey(0)
  res = ja.min_d(key, MIXED_SAMPLER, MIXED_GRID, eps1=EPS1, eps2=EPS2, trials=3)
  expected = _per_trial_successes(key, MIXED_SAMPLER, MIXED_GRID, 3)
  assert expected[-1] == 3  # trial 0 succeeds at the top, so a counted repeat would show
  np.testing.assert_array_equal(res.successes, expected)
  assert np.all(res.successes <= 3)
