"""Presets: parsing, validation, expansion and per-point keys (jaxattn_bench.grid)."""

import argparse

import jax
import numpy as np
import pytest

import jaxattn as ja
from jaxattn_bench import grid, store
from jaxattn_bench.errors import CommandError

TINY = """
trials = 4
delta = 0.25
family = "random_regular"
method = "jl"
a_min = 0.5
eps2 = 0.5
[[grid]]
length = [8, 16]
nnz = 1
eps1 = [1.0, 2]
d_grid = [8, 16, 32]
[[grid]]
length = 16
nnz = [1, 2]
eps1 = 1
trials = 2
d_grid = {start = 8, stop = 64, per_octave = 2}
"""


def test_expansion_order_defaults_and_overrides():
  preset = grid.parse_preset(TINY, "tiny")
  assert preset.name == "tiny" and preset.seed == 0
  got = [(p.length, p.nnz, p.eps1, p.trials, p.d_grid) for p in preset.points]
  fine = (8, 11, 16, 23, 32, 45, 64)
  assert got == [
    (8, 1, 1.0, 4, (8, 16, 32)),
    (8, 1, 2.0, 4, (8, 16, 32)),
    (16, 1, 1.0, 4, (8, 16, 32)),
    (16, 1, 2.0, 4, (8, 16, 32)),
    (16, 1, 1.0, 2, fine),
    (16, 2, 1.0, 2, fine),
  ]
  assert all(isinstance(p.eps1, float) for p in preset.points)


def test_repeated_points_run_once():
  text = TINY.replace(
    "length = 16\nnnz = [1, 2]\neps1 = 1\ntrials = 2\n"
    "d_grid = {start = 8, stop = 64, per_octave = 2}",
    "length = 8\nnnz = 1\neps1 = 1\nd_grid = [8, 16, 32]",
  )
  assert len(grid.parse_preset(text, "t").points) == 4


def test_geometric_grid():
  assert ja.geometric_grid(128, 4, start=64) == (64, 76, 91, 108, 128)
  assert ja.geometric_grid(4, 4) == (1, 2, 3, 4)  # rounding repeats removed
  assert ja.geometric_grid(16, 4, start=16) == (16,)


@pytest.mark.parametrize(
  "edit, message",
  [
    (("trials = 4", "trials = 4\ncolour = 1"), "unknown field(s) ['colour']"),
    (("nnz = 1\n", "nnz = 1\nfoo = 2\n"), "grid block 1: unknown field(s) ['foo']"),
    (('family = "random_regular"', 'family = "nope"'), "unknown family 'nope'"),
    (('method = "jl"', 'method = "magic"'), "unknown value 'magic'"),
    (("eps2 = 0.5", "eps2 = 1.5"), "eps2: expected a number in (0.0, 1.0)"),
    (("length = [8, 16]", "length = [8, 2.5]"), "length: expected an integer >= 1"),
    (("trials = 4", "trials = [4, 8]"), "trials: expected an integer >= 1"),
    (("d_grid = [8, 16, 32]", "d_grid = [16, 8]"), "d_grid must be increasing"),
    (("per_octave = 2", "per_octve = 2"), "d_grid: expected a list of d or a table"),
    (("a_min = 0.5\n", ""), "missing a_min"),
    (("nnz = [1, 2]", "nnz = [1, 20]"), "random_regular(length=16, nnz=20)"),
    (("trials = 4", "trials = 4\n[broken"), "invalid TOML"),
    (("nnz = 1\n", 'nnz = 1\ncriterion = "mass"\n'), 'criterion "mass" needs max_outside_mass'),
    (("nnz = 1\n", "nnz = 1\nmax_outside_mass = 0.1\n"), "max_outside_mass (η) needs criterion"),
    (
      ("nnz = 1\n", 'nnz = 1\ncriterion = "mass"\nmax_outside_mass = 1.0\n'),
      "max_outside_mass: expected a number in (0.0, 1.0)",
    ),
    (("nnz = 1\n", 'nnz = 1\ncriterion = "total"\n'), "unknown value 'total'"),
  ],
)
def test_bad_presets_name_the_problem(edit, message):
  text = TINY.replace(*edit, 1)
  assert text != TINY
  with pytest.raises(CommandError) as error:
    grid.parse_preset(text, "bad")
  assert message in str(error.value)
  assert "\n" not in str(error.value)


def test_no_grid_block():
  with pytest.raises(CommandError, match="at least one"):
    grid.parse_preset("trials = 4\n", "empty")


def test_unknown_preset_name():
  with pytest.raises(CommandError, match="unknown preset 'nope'"):
    grid.load_preset("nope")


@pytest.mark.parametrize("name", ["quick", "paper", "scale", "mass", "bits", "practice"])
def test_shipped_presets_parse(name):
  assert name in grid.preset_names()
  preset = grid.load_preset(name)
  assert preset.points and preset.description


def test_every_point_field_has_a_parser():
  assert list(grid._FIELDS) == list(grid.Point._fields)
  assert set(store.AXES) | set(store.SETTINGS) == set(grid.Point._fields)


def test_point_key_depends_on_seed_and_axes_only():
  first, *_ = grid.parse_preset(TINY, "tiny").points
  key = grid.point_key(0, first)
  np.testing.assert_array_equal(key, grid.point_key(0, first))
  np.testing.assert_array_equal(key, grid.point_key(0, first._replace(d_grid=(4, 8), trials=9)))
  assert not np.array_equal(key, grid.point_key(1, first))
  assert not np.array_equal(key, grid.point_key(0, first._replace(eps1=1.5)))
  assert not np.array_equal(key, grid.point_key(0, first._replace(length=9)))
  assert jax.random.PRNGKey(0).shape == key.shape


def test_criterion_axis_keeps_ratio_points_as_stored_before_it():
  """criterion = ["ratio", "mass"] with two η: one ratio point (η dropped) and two mass points.
  A ratio point's params are those of a point stored before the criterion existed (so stored
  results stay valid), and every criterion shares the point's key (paired trials)."""
  text = TINY + 'criterion = ["ratio", "mass"]\nmax_outside_mass = [0.1, 0.2]\n'
  points = grid.parse_preset(text, "t").points[-3:]
  assert [(p.nnz, p.criterion, p.max_outside_mass) for p in points] == [
    (2, "ratio", None),
    (2, "mass", 0.1),
    (2, "mass", 0.2),
  ]
  ratio, mass, _ = points
  assert set(ratio.params()) == set(grid.Point._fields) - set(store.CRITERION_FIELDS) - {
    "matmul",
    "causal",
  }
  assert mass.params()["criterion"] == "mass" and mass.params()["max_outside_mass"] == 0.1
  old = {k: v for k, v in ratio.params().items()}
  assert grid.Point(**{**old, "d_grid": tuple(old["d_grid"])}) == ratio
  keys = [grid.point_key(0, p).tolist() for p in points]
  assert keys[0] == keys[1] == keys[2]
  assert store.canonical(ratio.params()) != store.canonical(mass.params())


def test_matmul_is_a_setting_recorded_unless_float32():
  """matmul = "bfloat16" is kept in the point's params (the store records it), float32 is left
  out (points stored before it existed keep their identity), and neither changes the key."""
  text = 'matmul = "bfloat16"\n' + TINY
  fast = grid.parse_preset(text, "t").points[0]
  plain = grid.parse_preset(TINY, "t").points[0]
  assert fast.matmul == "bfloat16" and fast.params()["matmul"] == "bfloat16"
  assert "matmul" not in plain.params() and plain._replace(matmul="bfloat16") == fast
  np.testing.assert_array_equal(grid.point_key(0, fast), grid.point_key(0, plain))
  with pytest.raises(CommandError, match="matmul"):
    grid.parse_preset('matmul = "float16"\n' + TINY, "t")


def test_cost_model_charges_optimize_its_passes():
  """The progress bar's cost model (``runner.point_seconds``) puts optimize at L = 65536 of the
  beyond preset (T = 4, d in {16, 24}) at 2.85× lstsq's point there (T = 6, five d up to 128),
  as `python -m bench beyond` measured (1015 s and 356 s). Guards against dropping optimize's
  passes per d, which made it 4× cheaper than lstsq and the ETA an hour short."""
  from jaxattn_bench import runner

  points = {(p.method, p.length): p for p in grid.load_preset("beyond").points}
  ratio = runner.point_seconds(points["optimize", 65536]) / runner.point_seconds(
    points["lstsq", 65536]
  )
  assert 2.0 < ratio < 4.0


def test_every_plan_is_the_one_cost_model(capsys):
  """``bench practice --plan``, ``bench run --plan`` and the line ``bench min_d`` prints before
  a long search are ``runner.search_seconds`` of the search each runs: one model, whose
  support term charges lstsq and optimize for N (a practice point's plan grows with N at
  fixed L and grid)."""
  from jaxattn_bench import runner
  from jaxattn_bench.commands import min_d as min_d_command
  from jaxattn_bench.commands import practice as practice_command

  points = grid.load_preset("practice").points
  lines = practice_command.plan(points).splitlines()
  assert all(
    line.endswith(f"about {runner.point_seconds(p):.0f} s") for line, p in zip(lines, points)
  )
  assert f"expected about {sum(map(runner.point_seconds, points)) / 60:.0f} min" in lines[-1]
  narrow, wide = (
    runner.search_seconds("lstsq", 256, n, ja.geometric_grid(128, 2), trials=6, schedule="full")
    for n in (3, 33)
  )
  assert wide > narrow
  parser = argparse.ArgumentParser()
  min_d_command.add_parser(parser.add_subparsers())
  args = parser.parse_args(
    [
      "min_d",
      "--length",
      "4096",
      "--nnz",
      "2",
      "--method",
      "lstsq",
      "--trials",
      "16",
      "--d-max",
      "256",
    ]
  )
  min_d_command._plan(args, ja.geometric_grid(256, 2))
  seconds = runner.search_seconds("lstsq", 4096, 2, ja.geometric_grid(256, 2), trials=16)
  assert f"about {seconds:.0f} s on this project's 2-core CPU" in capsys.readouterr().err


PUBLISHED = """
trials = 2
delta = 0.5
a_min = 1.0
eps1 = 0.5
eps2 = 0.5
method = "optimize"
d_grid = [4, 8]
[[grid]]
family = ["longformer(window=2)", "reformer_lsh( chunk=4 ,buckets=4)"]
length = [16, 32]
"""


def test_published_families_get_their_width_as_nnz():
  points = grid.parse_preset(PUBLISHED, "published").points
  assert [(p.family, p.length, p.nnz) for p in points] == [
    ("longformer(window=2)", 16, 5),
    ("longformer(window=2)", 32, 5),
    ("reformer_lsh(chunk=4,buckets=4)", 16, 7),
    ("reformer_lsh(chunk=4,buckets=4)", 32, 7),
  ]
  pattern = points[-1].sampler()(jax.random.PRNGKey(0))
  assert pattern.nnz == 7 and pattern.length == 32


@pytest.mark.parametrize(
  "edit, message",
  [
    (("length = [16, 32]", "length = [16, 32]\nnnz = 3"), "has nnz=5, got nnz=3"),
    (('"longformer(window=2)"', '"random_regular"'), "missing nnz (family random_regular)"),
    (("length = [16, 32]", "length = [18]"), "multiple of chunk=4"),
    (('"longformer(window=2)"', '"longformer(span=2)"'), "no field 'span'"),
  ],
)
def test_published_family_errors(edit, message):
  with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
    grid.parse_preset(PUBLISHED.replace(*edit), "published")


def test_the_cost_fit_recovers_the_constants_of_timings_it_made():
  """``cost_fit.fit`` on wall times the model itself gives (rate 1e11, C 2e11, S of lstsq
  3e3, optimize 5e2) returns those constants: it fits the model it documents."""
  from jaxattn_bench import cost_fit
  from jaxattn_bench.store import Record

  points = [
    (m, length, nnz, ja.geometric_grid(top, 2), trials)
    for m, top in (("jl", 512), ("lstsq", 256), ("optimize", 64))
    for length, nnz, trials in ((64, 2, 4), (512, 9, 6), (4096, 3, 8), (1024, 33, 2))
  ]
  records = []
  for method, length, nnz, d_grid, trials in points:
    record = Record(
      {"method": method, "length": length, "nnz": nnz},
      0,
      None,
      None,
      0.0,
      np.array(d_grid),
      np.zeros(len(d_grid)),
      trials,
      *([np.zeros(3)] * 3),
      {},
    )
    terms = cost_fit.point_terms(record)
    support = {"lstsq": 3e3, "optimize": 5e2}.get(method, 0.0)
    wall = (terms.keys + support * terms.support + 2e11 * terms.compiles) / 1e11
    records.append(record._replace(wall_s=wall))
  result = cost_fit.fit(records)
  np.testing.assert_allclose(
    [
      result.rate,
      result.compile_cost,
      result.support_cost["lstsq"],
      result.support_cost["optimize"],
    ],
    [1e11, 2e11, 3e3, 5e2],
    rtol=1e-6,
  )
  np.testing.assert_allclose(result.modelled, result.measured, rtol=1e-6)
