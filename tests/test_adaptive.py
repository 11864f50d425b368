"""The adaptive search of methods built per d (``ja.min_d(schedule="adaptive")``): its schedule,
its imputed verdicts and its agreement with the full search."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattn as ja
from jaxattn._src import estimators, host_stage
from jaxattn._src.options import SearchSpec

GRID = ja.geometric_grid(4096, 2)
EPS1 = EPS2 = 0.5


def _schedule(d_grid, verdict, check_above=1):
  """The levels ``next_level`` evaluates, in order, for a trial with verdicts ``verdict(d)``."""
  states = np.full(len(d_grid), ja.schedule.NOT_EVALUATED, np.int8)
  order = []
  while (level := ja.schedule.next_level(d_grid, states, check_above)) is not None:
    assert states[level] == ja.schedule.NOT_EVALUATED, "a level is evaluated twice"
    states[level] = verdict(d_grid[level])
    order.append(d_grid[level])
  return order, states


@pytest.mark.parametrize(
  "threshold, probes",
  [
    (6, [1, 2, 4, 8, 11, 6]),
    (100, [1, 2, 4, 8, 16, 32, 64, 128, 181, 91]),
    (1, [1, 2]),
    (math.inf, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]),
  ],
)
def test_monotone_trials_are_bracketed_upward_then_scanned_down(threshold, probes):
  order, states = _schedule(GRID, lambda d: d >= threshold)
  assert order == probes == [d for d, _ in ja.schedule.adaptive_probes(GRID, threshold)]
  d_star = next((d for d in GRID if d >= threshold), math.inf)
  assert max(order) <= max(
    GRID[0], 2 * GRID[np.searchsorted(GRID, d_star, "right")] if d_star < GRID[-1] else GRID[-1]
  )  # nothing far above d*
  thresholds, _ = estimators.trial_thresholds(GRID, ja.schedule.impute_verdicts(states[None]))
  assert thresholds[0] == d_star


def test_a_failure_above_the_top_resumes_the_bracket():
  """Fails at 23 but verifies at 16 and from 32 up: the check above 16 finds 23, the bracket
  resumes from there, and d* = 32 (the grid d above the highest failure)."""
  verdict = lambda d: d >= 32 or d == 16
  order, states = _schedule(GRID, verdict)
  assert order == [1, 2, 4, 8, 16, 23, 64, 91, 45, 32]
  result = ja.MinDResult.from_verdicts(GRID, states[None], delta=0.5)
  assert result.thresholds[0] == 32 and result.first_success[0] == 16
  assert result.non_monotone == 1 and not result.evaluated.all()
  assert not _schedule(GRID, verdict, check_above=0)[1][GRID.index(23)] + 1  # not evaluated


def test_imputed_verdicts_and_their_states_round_trip():
  states = np.array(
    [
      [0, -1, 0, 1, -1],  # fails to 3, verifies from 4 on (5 imputed)
      [-1, -1, 0, -1, -1],  # fails at 3: every level below and above imputed
      [1, 1, 1, 1, 1],
    ],
    np.int8,
  )
  verdicts = ja.schedule.impute_verdicts(states)
  np.testing.assert_array_equal(verdicts, [[0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [1, 1, 1, 1, 1]])
  result = ja.MinDResult.from_verdicts((1, 2, 3, 4, 5), states, delta=0.5)
  np.testing.assert_array_equal(result.verdict_states(), states)
  np.testing.assert_array_equal(result.successes, [1, 1, 1, 3, 3])
  assert result.d_min == 4 and result.non_monotone == 0
  full = ja.MinDResult.from_verdicts((1, 2, 3, 4, 5), verdicts, delta=0.5)
  assert full.evaluated is None and full.verdict_states().min() == 0


@pytest.mark.parametrize("method", ["lstsq"])  # optimize: in the verify_grid test below
def test_adaptive_search_equals_the_full_one_on_fewer_levels(method):
  """Same thresholds, first successes and d_min as every (trial, d) built at d_max, the
  evaluated verdicts equal the full ones, and fewer levels are built, none far above d*."""
  sampler = ja.patterns.Sampler("random_regular", length=48, nnz=2, a_min=0.5)
  grid = ja.geometric_grid(128, 2)
  runs = {
    schedule: ja.min_d(
      jax.random.PRNGKey(3),
      sampler,
      grid,
      eps1=EPS1,
      eps2=EPS2,
      method=method,
      trials=3,
      delta=0.5,
      compute=ja.Compute(schedule=schedule),
    )
    for schedule in ("full", "adaptive")
  }
  full, adaptive = runs["full"], runs["adaptive"]
  assert full.evaluated is None and adaptive.evaluated.sum() < adaptive.evaluated.size
  np.testing.assert_array_equal(adaptive.thresholds, full.thresholds)
  np.testing.assert_array_equal(adaptive.first_success, full.first_success)
  assert adaptive.d_min == full.d_min and adaptive.certified
  np.testing.assert_array_equal(
    adaptive.verdicts[adaptive.evaluated], full.verdicts[adaptive.evaluated]
  )
  for t, row in enumerate(adaptive.evaluated):
    built = np.asarray(grid)[row]
    assert built.max() <= 4 * full.thresholds[t], (t, built)


def test_adaptive_probes_are_built_at_their_width_and_settled_on_the_host_at_it():
  """A registered method whose factors depend on the padded width (queries × width/32): the
  probe at d = 24 is built at width 32, so its verdict is lstsq's at d = 24, also on a near-tie
  (lstsq's spreads are at rounding level) that the host must settle: rebuilt at width 128 it
  would fail."""
  lstsq = ja.construct.METHODS["lstsq"]
  if "lstsq_wide" not in ja.construct.METHODS:

    def lstsq_wide(key, p, d, width, eps1, eps2, **kw):
      queries, keys = lstsq(key, p, d, width, 0.5, 0.5, **kw)
      return queries * (width / 32), keys

    ja.construct.register_method("lstsq_wide", lstsq_wide)
  sampler = ja.patterns.Sampler("random_regular", length=32, nnz=2, a_min=0.5)
  key, grid = jax.random.PRNGKey(4), (24, 128)
  pattern_keys, method_keys = ja.trial_keys(key, 1)
  pattern = sampler(pattern_keys[0])
  solution = ja.construct.build("lstsq", method_keys[0], pattern, 24, eps1=0.5, eps2=0.5)
  spread = np.float64(np.max(np.asarray(ja.verify(solution, pattern, eps1=0.5, eps2=0.5).spread)))
  eps2 = 0.9
  for factor in np.geomspace(1, 64, 49):  # a near-tie the float32 pass leaves undecided, met
    eps1 = float(np.expm1(spread * factor))
    report = ja.verify(solution, pattern, eps1=eps1, eps2=eps2)
    if bool(report.ok) and int(report.settled_on_host) > 0:
      break
  else:
    pytest.skip("no near-tie found")
  result = ja.min_d(
    key,
    sampler,
    grid,
    eps1=eps1,
    eps2=eps2,
    method="lstsq_wide",
    trials=1,
    compute=ja.Compute(schedule="adaptive"),
  )
  assert result.verdict_states()[0, 0] == 1 and result.levels_on_host >= 1
  assert not host_stage.exact_level(
    method_keys[0],
    pattern,
    SearchSpec("lstsq_wide", grid),
    level=0,
    eps1=eps1,
    eps2=eps2,
    rows=None,
  )  # at width 128


@pytest.mark.parametrize(
  "args, match",
  [
    (dict(schedule="upward"), "schedule"),
    (dict(schedule="adaptive", method="jl"), "nested"),
    (dict(check_above=-1), "check_above"),
  ],
)
def test_bad_schedules_are_refused(args, match):
  sampler = ja.patterns.Sampler("random_regular", length=16, nnz=1)
  method = args.pop("method", "lstsq")
  with pytest.raises(ValueError, match=match):
    ja.min_d(
      jax.random.PRNGKey(0),
      sampler,
      (4, 8),
      eps1=EPS1,
      eps2=EPS2,
      method=method,
      compute=ja.Compute(**args),
    )


def test_the_schedule_named_by_no_one_is_the_cheaper_by_the_cost_model():
  """``choose_schedule``: full where compilation dominates (lstsq at L = 64, d ≤ 256: full 9.1 s,
  adaptive 19.7 s), adaptive where building every grid d does (optimize at docs/practice.md's
  L = 512 point: adaptive 16.1 s, full 82.5 s; lstsq at L = 16384), full for a nested method;
  ``min_d`` and ``verify_grid`` run the chosen one when none is named."""
  choose = ja.schedule.choose_schedule
  assert choose("lstsq", 64, 2, ja.geometric_grid(256, 4), 8) == "full"
  assert choose("optimize", 512, 2, ja.geometric_grid(512, 2), 4) == "adaptive"
  assert choose("lstsq", 16384, 2, ja.geometric_grid(256, 4), 16) == "adaptive"
  assert choose("jl", 16384, 2, ja.geometric_grid(256, 4), 16) == "full"
  cost = ja.schedule.search_cost
  grid = ja.geometric_grid(256, 4)
  assert cost("lstsq", 64, 2, grid, schedule="full") < cost(
    "lstsq", 64, 2, grid, schedule="adaptive"
  )
  sampler = ja.patterns.Sampler("random_regular", length=32, nnz=2, a_min=0.5)
  chosen = ja.min_d(
    jax.random.PRNGKey(0), sampler, (4, 8, 16), eps1=EPS1, eps2=EPS2, method="lstsq", trials=2
  )
  assert chosen.evaluated is None  # full, as chosen at this size
  pattern = sampler(jax.random.PRNGKey(1))
  with pytest.raises(ValueError, match="nested"):
    ja.verify_grid(
      jax.random.PRNGKey(0),
      pattern,
      (4, 8),
      eps1=EPS1,
      eps2=EPS2,
      compute=ja.Compute(schedule="adaptive"),
    )


@pytest.mark.parametrize("method", ["optimize"])  # lstsq: in min_d's test above
def test_verify_grid_adaptive_agrees_with_its_full_grid(method):
  """One pattern and key: the adaptive verdicts (imputed where not built) give the full grid's
  d*, in the same return type."""
  pattern = ja.patterns.random_regular(jax.random.PRNGKey(1), length=64, nnz=2, a_min=0.5)
  grid = ja.geometric_grid(64, 2)
  full = ja.verify_grid(
    jax.random.PRNGKey(0),
    pattern,
    grid,
    eps1=EPS1,
    eps2=EPS2,
    method=method,
    compute=ja.Compute(schedule="full"),
  )
  states = ja.verify_grid(
    jax.random.PRNGKey(0),
    pattern,
    grid,
    eps1=EPS1,
    eps2=EPS2,
    method=method,
    compute=ja.Compute(schedule="adaptive"),
  )
  assert full.dtype == bool and states.dtype == bool  # one return type whatever the schedule
  np.testing.assert_array_equal(
    estimators.trial_thresholds(grid, full[None])[0],
    estimators.trial_thresholds(grid, states[None])[0],
  )


def test_the_schedule_lives_in_ja_schedule_and_the_old_names_warn():
  """1.0 moved the schedule's parts out of ``ja.__all__``: ``ja.next_level`` still resolves, to the
  same object, with a DeprecationWarning that names the new place."""
  assert "next_level" not in ja.__all__ and "schedule" in ja.__all__
  for name in ("NOT_EVALUATED", "adaptive_probes", "impute_verdicts", "next_level", "probe_width"):
    with pytest.warns(DeprecationWarning, match=f"ja.{name} moved to ja.schedule.{name}"):
      assert getattr(ja, name) is getattr(ja.schedule, name)
  with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
    ja.no_such_name  # noqa: B018


def test_min_ds_default_check_above_finds_a_failure_above_the_first_success():
  """A registered method built per d that verifies at d = 8 and from 23 on, failing between
  (onehot's exact factors there, zeros elsewhere): ``ja.min_d``'s adaptive search with the
  default ``ja.Compute()`` checks above its first success and finds the full search's
  threshold, 23; with ``check_above=0`` it would stop at 8 (the assumption the default
  guards, docs/practice.md)."""
  from jaxattn._src.onehot import onehot_factors

  def sometimes(key, pattern, d, width, eps1, eps2, **kw):
    factors = onehot_factors(key, pattern, d, width, eps1, eps2, **kw)
    good = (d == 8) | (d >= 23)
    return tuple(jnp.where(good, x, 0.0) for x in factors)

  ja.construct.register_method("sometimes", sometimes)
  try:
    sampler = ja.patterns.Sampler("random_regular", length=8, nnz=2, a_min=0.5)
    grid = ja.geometric_grid(64, 4)
    run = lambda compute: ja.min_d(
      jax.random.PRNGKey(0),
      sampler,
      grid,
      eps1=EPS1,
      eps2=EPS2,
      method="sometimes",
      trials=1,
      compute=compute,
    )
    full = run(ja.Compute(schedule="full"))
    assert full.thresholds[0] == 23 and full.first_success[0] == 8
    default = run(ja.Compute(schedule="adaptive"))
    assert default.thresholds[0] == 23 and default.non_monotone == 1
    assert run(ja.Compute(schedule="adaptive", check_above=0)).thresholds[0] == 8
  finally:
    ja.construct.unregister_method("sometimes")


def test_probes_are_compiled_at_powers_of_two_only():
  """Every probe of an adaptive search is built padded to ``probe_width``: a power of two of at
  least ``MIN_PROBE_WIDTH`` (or d_max), so that its programs are one per width, never one per d.
  A method that records the widths it is traced at sees only those."""
  from jaxattn._src.onehot import onehot_factors

  traced = set()

  def recorded(key, pattern, d, width, eps1, eps2, **kw):
    traced.add(width)  # at trace time: once per compiled width
    return onehot_factors(key, pattern, d, width, eps1, eps2, **kw)

  grid = ja.geometric_grid(80, 4)
  for d in grid:
    width = ja.schedule.probe_width(d, grid[-1])
    assert width >= d and (
      width == grid[-1] or (width >= ja.schedule.MIN_PROBE_WIDTH and width & (width - 1) == 0)
    ), (d, width)
  ja.construct.register_method("recorded", recorded)
  try:
    sampler = ja.patterns.Sampler("random_regular", length=40, nnz=2, a_min=0.5)
    result = ja.min_d(
      jax.random.PRNGKey(0),
      sampler,
      grid,
      eps1=EPS1,
      eps2=EPS2,
      method="recorded",
      trials=2,
      compute=ja.Compute(schedule="adaptive"),
    )
  finally:
    ja.construct.unregister_method("recorded")
  assert result.thresholds.tolist() == [45.0, 45.0]  # onehot: the first grid d ≥ L
  assert traced == {32, 64, 80}, traced
