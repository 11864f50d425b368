"""Causal layers (docs/definitions.md §3): the softmax of row i runs over the keys j ≤ i, so the
zero condition covers j ≤ i, j ∉ S_i only; certified verdicts against the exact oracle."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattn as ja
from jaxattn.construct import solution_from_factors
from tests import exact_oracle as oracle

EPS1, EPS2 = 0.5, 0.5


def _causal_pattern(length=30, nnz=3, seed=0):
  return ja.patterns.random_causal(jax.random.PRNGKey(seed), length=length, nnz=nnz, a_min=0.3)


def test_random_causal_is_causal_within_its_bounds_and_deterministic():
  pattern = _causal_pattern(64, 4)
  a = np.asarray(pattern.to_dense()) > 0
  assert not np.triu(a, 1).any() and np.all(np.diag(a))
  assert a.sum(0).max() <= 4 and a.sum(1).max() <= 4 and a.sum() > 64 + 40
  np.testing.assert_array_equal(a, np.asarray(_causal_pattern(64, 4).to_dense()) > 0)


def test_a_non_causal_pattern_is_refused_naming_its_row_and_column():
  a = np.eye(5, dtype=np.float32)
  a[1, 3] = a[2, 4] = 1
  pattern = ja.SparsePattern.from_dense(a)
  sol = ja.construct.jl(jax.random.PRNGKey(0), pattern, 8, eps1=EPS1, eps2=EPS2)
  message = "row 1 has a nonzero at column 3 > 1"
  with pytest.raises(ValueError, match=message):
    ja.verify(sol, pattern, eps1=EPS1, eps2=EPS2, causal=True)
  with pytest.raises(ValueError, match=message):
    ja.verify_grid(jax.random.PRNGKey(0), pattern, (4, 8), eps1=EPS1, eps2=EPS2, causal=True)
  with pytest.raises(ValueError, match="row 1 has a nonzero at column 3"):
    ja.reference.dense_check(sol.X, sol.w_q, sol.w_k, a, eps1=EPS1, eps2=EPS2, causal=True)
  sampler = ja.patterns.Sampler("random_regular", length=16, nnz=2, a_min=0.5)
  with pytest.raises(ValueError, match=r"causal=True, trial 0: .*row \d+ has a nonzero at column"):
    ja.min_d(jax.random.PRNGKey(0), sampler, (4, 8), eps1=EPS1, eps2=EPS2, trials=2, causal=True)
  assert bool(
    ja.verify(sol, pattern, eps1=EPS1, eps2=EPS2).row_ok.shape == (5,)
  )  # bidirectional: fine


def _future_key_case():
  """Row 0's only visible key is its own (S_0 = {0}, gap −∞ in a causal layer), while its future
  key 1 has logit 50 against 5: bidirectional, row 0 fails; causal, every row passes."""
  queries = 5 * np.eye(3, dtype=np.float32)
  keys = np.eye(3, dtype=np.float32)
  keys[1, 0] = 10
  return queries, keys, np.eye(3, dtype=np.float32)


def test_a_future_key_is_masked_by_a_causal_layer():
  queries, keys, a = _future_key_case()
  sol = solution_from_factors(jnp.asarray(queries), jnp.asarray(keys))
  pattern = ja.SparsePattern.from_dense(a)
  both = [ja.verify(sol, pattern, eps1=EPS1, eps2=EPS2, causal=causal) for causal in (False, True)]
  np.testing.assert_array_equal(both[0].row_ok, [False, True, True])
  np.testing.assert_array_equal(both[1].row_ok, [True, True, True])
  assert float(both[0].gap[0]) == 45.0 and float(both[1].gap[0]) == -np.inf
  for causal, report in zip((False, True), both):
    assert bool(report.certified)
    np.testing.assert_array_equal(
      report.row_ok, oracle.exact_row_ok(queries, keys, a, EPS1, EPS2, causal=causal)
    )
    dense = ja.reference.dense_check(
      sol.X, sol.w_q, sol.w_k, a, eps1=EPS1, eps2=EPS2, causal=causal
    )
    np.testing.assert_array_equal(
      report.row_ok, oracle.float_row_ok(dense, queries, keys, a, EPS1, EPS2)
    )


@pytest.mark.parametrize(
  "method, d, family",
  [
    ("jl", 96, "random_causal"),
    ("lstsq", 12, "longformer(window=2,causal=true)"),
    ("moment_curve", 24, "sparse_transformer_strided"),
    ("onehot", 30, "reformer_lsh(chunk=6,buckets=4,causal=true)"),
    ("lstsq", 16, "sparse_transformer_fixed(block=8,summary=2)"),
  ],
)
def test_causal_verdicts_equal_the_exact_oracle(method, d, family):
  """Every family's causal variant, each construction once; ε at relative distances 1e-7 and
  1e-9 of a row's causal float64 figures, several key and row blocks (padding in both): causal
  and bidirectional row verdicts equal the exact oracle's, and a row that verifies
  bidirectionally verifies in a causal layer."""
  nnz = 3 if family == "random_causal" else ja.patterns.family_from_spec(family).width(30)
  pattern = ja.patterns.Sampler(family, 30, nnz, 0.3)(jax.random.PRNGKey(0))
  a = np.asarray(pattern.to_dense())
  sol = ja.construct.build(method, jax.random.PRNGKey(1), pattern, d, eps1=EPS1, eps2=EPS2)
  queries, keys = np.asarray(sol.queries()), np.asarray(sol.keys())
  base = ja.reference.dense_check(sol.X, sol.w_q, sol.w_k, a, eps1=EPS1, eps2=EPS2, causal=True)
  row = int(np.argmax(np.isfinite(base.gap) & (np.arange(30) > 10)))
  ratio_at, leak_at = float(np.expm1(base.spread[row])), float(np.exp(base.gap[row]))
  for rel in (-1e-7, 1e-9, 0.3):
    eps1 = max(ratio_at * (1 + rel), 1e-6)
    eps2 = min(leak_at * (1 + rel), 0.999)
    rows_ok = {}
    for causal in (False, True):
      report = ja.verify(
        sol,
        pattern,
        eps1=eps1,
        eps2=eps2,
        causal=causal,
        compute=ja.Compute(block_size=8, row_block=8),
      )
      assert bool(report.certified)
      rows_ok[causal] = np.asarray(report.row_ok)
      np.testing.assert_array_equal(
        rows_ok[causal],
        oracle.exact_row_ok(queries, keys, a, eps1, eps2, causal=causal),
        err_msg=f"{rel} {causal}",
      )
    assert np.all(rows_ok[True] >= rows_ok[False])


def test_a_dense_row_in_a_causal_layer_spans_its_prefix():
  """Dense row 3 (a global token) sees keys 0..3 with equal logits and keys 4.. far apart: its
  spread is 0 over the prefix (causal) and 60 over every key (bidirectional)."""
  length = 8
  a = np.eye(length, dtype=np.float32)
  a[3] = 1
  pattern = ja.SparsePattern.from_dense(a, check_columns=False)
  assert bool(pattern.dense[3])
  queries = 4 * np.eye(length, length + 1, dtype=np.float32)
  queries[3] = np.eye(1, length + 1, length, dtype=np.float32)[0]
  keys = np.concatenate(
    [np.eye(length, dtype=np.float32), np.array([[0, 0, 0, 0, 30, -30, 0, 0]], np.float32).T],
    axis=1,
  )
  sol = solution_from_factors(jnp.asarray(queries), jnp.asarray(keys))
  causal = ja.verify(sol, pattern, eps1=EPS1, eps2=EPS2, causal=True)
  bidirectional = ja.verify(sol, pattern, eps1=EPS1, eps2=EPS2)
  assert float(causal.spread[3]) == 0 and float(bidirectional.spread[3]) == 60
  assert bool(causal.ok) and not bool(bidirectional.row_ok[3])
  np.testing.assert_array_equal(
    causal.row_ok,
    oracle.exact_row_ok(
      queries, keys, np.tril(np.asarray(pattern.to_dense())), EPS1, EPS2, causal=True
    ),
  )


def test_the_causal_outside_mass_is_that_of_the_visible_keys():
  pattern = _causal_pattern(24, 2)
  a = np.asarray(pattern.to_dense())
  sol = ja.construct.jl(jax.random.PRNGKey(3), pattern, 64, eps1=EPS1, eps2=EPS2)
  report = ja.verify(
    sol,
    pattern,
    eps1=EPS1,
    eps2=EPS2,
    max_outside_mass=0.9,
    causal=True,
    compute=ja.Compute(block_size=8),
  )
  dense = ja.reference.dense_check(
    sol.X, sol.w_q, sol.w_k, a, eps1=EPS1, eps2=EPS2, max_outside_mass=0.9, causal=True
  )
  np.testing.assert_allclose(float(report.outside_mass_max), dense.outside_mass_max, rtol=1e-4)
  np.testing.assert_allclose(
    float(report.outside_mass_mean), np.mean(dense.outside_mass), rtol=1e-4
  )
  assert float(report.outside_mass_max) < float(
    ja.verify(sol, pattern, eps1=EPS1, eps2=EPS2, max_outside_mass=0.9).outside_mass_max
  )


def test_row_stats_of_listed_rows_use_their_own_index():
  """The host stage re-does listed rows (``rows``): each must be masked at its own index i."""
  pattern = _causal_pattern(24, 3)
  sol = ja.construct.jl(jax.random.PRNGKey(2), pattern, 16, eps1=EPS1, eps2=EPS2)
  ones = jnp.ones((1,), jnp.float32)
  full = ja.row_stats(sol.queries(), sol.keys(), pattern, (16,), ones, causal=True, block_size=8)
  rows = jnp.array([23, 5, 17, 0])
  part = ja.row_stats(
    sol.queries(), sol.keys(), pattern, (16,), ones, causal=True, block_size=8, rows=rows
  )
  np.testing.assert_array_equal(part.gap, full.gap[:, rows])
  np.testing.assert_array_equal(part.spread, full.spread[:, rows])


@pytest.mark.parametrize("length, rows, block", [(61, 16, 8), (64, 8, 32)])
def test_a_causal_pass_skips_the_key_tiles_above_the_diagonal(length, rows, block):
  """The tiles the program runs (a counter carried in its loop): row block r sees the key
  blocks up to its last row, min(n, ⌊(min(L, (r+1)R) − 1)/B⌋ + 1) of n = ⌈L/B⌉; a
  bidirectional pass runs them all. (With the CPU tiles, 1024 × 512, at L = 16384: 272 of 512.)"""
  from jaxattn._src.stream import _stream

  pattern = _causal_pattern(length, 2)
  sol = ja.construct.jl(jax.random.PRNGKey(0), pattern, 8, eps1=EPS1, eps2=EPS2)
  ones = jnp.ones((1,), jnp.float32)
  counts = [
    int(
      _stream(
        sol.queries(), sol.keys(), pattern, (8,), ones, block, rows, False, None, None, index
      )[1]
    )
    for index in (None, jnp.arange(length))
  ]
  n_blocks, n_row_blocks = -(-length // block), -(-length // rows)
  assert counts[0] == n_row_blocks * n_blocks
  assert counts[1] == sum(
    min(n_blocks, (min(length, (r + 1) * rows) - 1) // block + 1) for r in range(n_row_blocks)
  )
  assert sum((min(16384, (r + 1) * 1024) - 1) // 512 + 1 for r in range(16)) == 272


@pytest.mark.parametrize("rows, block", [(4, 4), (3, 5), (12, 12)])
def test_the_key_block_on_the_diagonal_is_never_skipped(rows, block):
  """S_i = {i}, and row i's logit at its previous key i − 1 is 2 against 1 at its own: every row
  but the first fails its zero condition through a key in its own (diagonal) key block, the
  last block a causal row block may skip nothing of."""
  length = 12
  queries = np.eye(length, dtype=np.float32)
  keys = np.eye(length, dtype=np.float32) + 2 * np.eye(length, k=1, dtype=np.float32)
  a = np.eye(length, dtype=np.float32)
  sol = solution_from_factors(jnp.asarray(queries), jnp.asarray(keys))
  report = ja.verify(
    sol,
    ja.SparsePattern.from_dense(a),
    eps1=EPS1,
    eps2=EPS2,
    causal=True,
    compute=ja.Compute(block_size=block, row_block=rows),
  )
  np.testing.assert_array_equal(report.row_ok, [True] + [False] * (length - 1))
  np.testing.assert_array_equal(
    report.row_ok, oracle.exact_row_ok(queries, keys, a, EPS1, EPS2, causal=True)
  )


def test_optimize_mines_only_the_keys_a_causal_row_sees():
  """``mine(causal=True)``: each row's negatives are the K largest ℓ_ij over j ≤ i, j ∉ S_i (the
  dense float64 ranking), and its gap is the causal pass's."""
  from jaxattn._src.mining import mine

  length, count = 40, 5
  pattern = _causal_pattern(length, 2)
  queries, keys = ja.construct.METHODS["lstsq"](
    jax.random.PRNGKey(0), pattern, 8, 8, EPS1, EPS2, dtype=jnp.float32
  )
  mined = mine(queries, keys, pattern, count, block_size=32, row_block=16, causal=True)
  logits = np.asarray(queries, np.float64) @ np.asarray(keys, np.float64).T
  a = np.asarray(pattern.to_dense()) > 0
  for i in range(length):
    visible = np.flatnonzero(~a[i, : i + 1])
    want = visible[np.argsort(-logits[i, visible])][:count]
    got = np.asarray(mined.negatives[i])[np.asarray(mined.valid[i])]
    assert sorted(got) == sorted(want), i
  stats = ja.row_stats(queries, keys, pattern, (8,), jnp.ones(1), full=False, causal=True)
  np.testing.assert_allclose(mined.gap, stats.gap[0], rtol=1e-5, atol=1e-5)  # other tiles


def test_optimize_built_for_a_causal_layer_is_what_the_causal_search_judges():
  """verify_grid(causal=True) builds optimize for the causal layer (``CAUSAL_AWARE``): its verdicts
  are those of ``ja.verify`` on ``build(..., causal=True)``, every one certified."""
  assert "optimize" in ja.construct.CAUSAL_AWARE
  pattern = _causal_pattern(32, 2)
  key, grid = jax.random.PRNGKey(3), (2, 8)
  verdicts = ja.verify_grid(
    key,
    pattern,
    grid,
    eps1=EPS1,
    eps2=EPS2,
    method="optimize",
    causal=True,
    compute=ja.Compute(schedule="full"),
  )
  reports = [
    ja.verify(
      ja.construct.build("optimize", key, pattern, d, eps1=EPS1, eps2=EPS2, causal=True),
      pattern,
      eps1=EPS1,
      eps2=EPS2,
      causal=True,
    )
    for d in grid
  ]
  np.testing.assert_array_equal(verdicts, [bool(r.ok) for r in reports])
  assert all(bool(r.certified) for r in reports) and bool(reports[-1].ok)


CAUSAL_PRESET = """
trials = 3
delta = 0.5
family = "random_causal"
method = "lstsq"
a_min = 0.5
eps1 = 0.5
eps2 = 0.5
nnz = 2
[[grid]]
length = 32
d_grid = [11, 16, 23, 32]
causal = [false, true]
"""


def test_a_preset_judges_the_same_draws_in_both_layers():
  """``causal = [false, true]`` in a preset: two points with one key (the same patterns and
  draws), ``causal`` in the params of the causal point only (stores written before keep their
  points), and d*_t(causal) ≤ d*_t(bidirectional) per trial (lstsq, built alike; one trial
  lower here)."""
  from jaxattn_bench import grid, runner
  from jaxattn_bench.errors import CommandError

  bidirectional, causal = grid.parse_preset(CAUSAL_PRESET, "causal-test").points
  assert "causal" not in bidirectional.params() and causal.params()["causal"] is True
  np.testing.assert_array_equal(grid.point_key(0, bidirectional), grid.point_key(0, causal))
  results = [runner.solve_point(point, 0) for point in (bidirectional, causal)]
  assert np.all(results[1].thresholds <= results[0].thresholds)
  assert np.any(results[1].thresholds < results[0].thresholds)
  with pytest.raises(CommandError, match=r"causal: expected true or false, got 1"):
    grid.parse_preset(CAUSAL_PRESET.replace("[false, true]", "1"), "bad")


def test_verify_grid_in_a_causal_layer_is_ja_verify_at_every_d():
  sampler = ja.patterns.Sampler("random_causal", length=32, nnz=2, a_min=0.5)
  grid, key = (11, 16, 23, 32), jax.random.PRNGKey(5)
  pattern = sampler(ja.trial_keys(key, 1)[0][0])
  verdicts = ja.verify_grid(key, pattern, grid, eps1=EPS1, eps2=EPS2, method="lstsq", causal=True)
  want = [
    bool(
      ja.verify(
        ja.construct.lstsq(key, pattern, d, eps1=EPS1, eps2=EPS2),
        pattern,
        eps1=EPS1,
        eps2=EPS2,
        causal=True,
      ).ok
    )
    for d in grid
  ]
  np.testing.assert_array_equal(verdicts, want)
  assert any(want) and not all(want)


def test_solve_and_check_in_a_causal_layer(tmp_path, capsys):
  """``bench solve --causal --search`` certifies a causal pattern in a causal layer and records
  it; ``bench check`` re-verifies in the recorded semantics; a non-causal pattern is refused in
  one line (exit 2)."""
  from jaxattn_bench.cli import main

  a = np.asarray(_causal_pattern(32, 2).to_dense())
  path, out = str(tmp_path / "causal.npy"), str(tmp_path / "causal_solution.npz")
  np.save(path, a)
  assert main(["solve", path, "--method", "lstsq", "--causal", "--search", "--out", out]) == 0
  assert "causal layer" in capsys.readouterr().out
  with np.load(out) as saved:
    assert bool(saved["causal"])
  assert main(["check", out, "--float64"]) == 0
  printed = capsys.readouterr().out
  assert "float64 (ja.verify), causal layer" in printed
  assert "dense NumPy  float64: ok True" in printed
  bad = str(tmp_path / "bad.npy")
  np.save(bad, a.T)
  assert main(["solve", bad, "--causal", "--d", "8", "--out", out]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and re.search(r"row \d+ has a nonzero at column \d+ > \d+", err[0]), err


def test_check_reads_the_layer_from_the_file(tmp_path, capsys):
  """The future-key solution is certified in a causal layer only: the file's ``causal`` flag
  decides the semantics of ``bench check`` (without it, the check fails)."""
  from jaxattn_bench.cli import main
  from jaxattn_bench.solution_file import Provenance, save_solution

  queries, keys, a = _future_key_case()
  sol = solution_from_factors(jnp.asarray(queries), jnp.asarray(keys))
  pattern = ja.SparsePattern.from_dense(a)
  report = ja.verify(sol, pattern, eps1=EPS1, eps2=EPS2, causal=True)
  for causal, status in ((True, 0), (False, 1)):
    out = str(tmp_path / f"causal_{causal}.npz")
    save_solution(
      out,
      sol,
      pattern,
      report,
      Provenance("onehot", 3, EPS1, EPS2, seed=0, source="test", causal=causal),
    )
    assert main(["check", out, "--float64"]) == status, capsys.readouterr().out


@pytest.mark.parametrize(
  "family, causal",
  [
    ("random_causal", True),
    ("random_regular", False),
    ("banded", False),
    ("sparse_transformer_strided", True),
    ("sparse_transformer_fixed", True),
    ("longformer(window=4)", False),
    ("longformer(window=4,causal=true)", True),
    ("reformer_lsh(chunk=8,buckets=16)", False),
    ("bigbird(block=4)", False),
  ],
)
def test_is_causal_names_the_families_causal_by_construction(family, causal):
  assert ja.patterns.is_causal(family) is causal


def test_a_causal_layer_needs_a_causal_family_in_presets_and_bench_run(tmp_path, capsys):
  """A preset block judging a non-causal family in a causal layer, and ``bench run --causal`` on
  a preset of one, are refused before any work, naming the family (one line, exit 2)."""
  from jaxattn_bench import grid
  from jaxattn_bench.cli import main
  from jaxattn_bench.errors import CommandError

  text = CAUSAL_PRESET.replace('"random_causal"', '"random_regular"')
  with pytest.raises(CommandError, match="family random_regular is not causal"):
    grid.parse_preset(text, "bad")
  preset = tmp_path / "bidirectional.toml"
  preset.write_text(text.replace("causal = [false, true]", ""))
  assert main(["run", "--preset", str(preset), "--causal", "--plan"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--causal on preset bidirectional" in err[0], err
  (point,) = grid.in_causal_layer(grid.parse_preset(CAUSAL_PRESET, "c")).points
  assert point.causal and point.params()["causal"] is True


def test_practice_causal_runs_both_layers_and_its_table_says_which(tmp_path, capsys):
  """``bench practice --causal``: the practice_causal preset judges each causal family in both
  layers; its plan fits 45 minutes; a table row per (family, L, layer); --causal with --preset is
  refused (exit 2)."""
  from jaxattn_bench import grid
  from jaxattn_bench.cli import main
  from jaxattn_plots import practice as practice_plots

  points = grid.load_preset("practice_causal").points
  assert all(ja.patterns.is_causal(p.family) for p in points)
  layers = {}
  for p in points:
    layers.setdefault(p._replace(causal=False), set()).add(p.causal)
  assert all(v == {False, True} for v in layers.values())
  assert main(["practice", "--causal", "--plan"]) == 0
  minutes = float(re.search(r"expected about ([\d.]+) min", capsys.readouterr().out).group(1))
  assert minutes <= 45
  assert main(["practice", "--causal", "--preset", "practice"]) == 2
  entry = dict(
    length=64,
    nnz=3,
    trials=2,
    d_grid=[4, 8],
    top=8,
    d_median=8.0,
    d_median_low=4.0,
    d_median_high=None,
    seconds=1.0,
    row_bound=3,
    column_bound=3,
    inside_theorem=True,
  )
  data = {
    "points": {
      "f | bidirectional | lstsq": [entry],
      "f | causal | lstsq": [{**entry, "d_median": 4.0}],
    }
  }
  table = practice_plots.table(data, {"f | causal | lstsq": None}).splitlines()
  assert table[0].startswith("| family | L | layer | N (row, column) | theorem | lstsq")
  assert table[2:4] == [
    "| f | 64 | bidirectional | 3, 3 | inside | 8 [4, -] |",
    "| f | 64 | causal | 3, 3 | inside | ≤ 4 |",
  ]
  assert "| f | causal | lstsq | fewer than 3 bounded points |" in table[-1]


def test_figures_name_both_layers():
  from jaxattn_plots.figures import label

  assert label((("method", "jl"),), ["method", "causal"]) == "jl, bidirectional"
  assert label((("causal", True), ("method", "jl")), ["method", "causal"]) == "jl, causal layer"
