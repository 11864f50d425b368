"""Streaming verification against an independent float64 reference."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattn as ja
from jaxattn._src import tiles as tiles_lib
from jaxattn._src import stream
from jaxattn.construct import solution_from_factors, target_logits
from tests.reference import reference_figures, reference_ok

EPS1, EPS2 = 0.5, 0.5
FIGURES = ("ratio_error", "leak", "outside_mass_max", "outside_mass_mean", "max_abs_logit")


# The families the noisy cases cycle through (fixed, so a new generator does not move them).
NOISY_FAMILIES = ("banded", "block_diagonal", "random_regular", "random_sparse", "strided")


def _noisy_case(seed: int, length: int = 24, nnz: int = 3, noise: float = 0.1, dtype=np.float32):
  """Pattern and a solution whose logits are B + noise (B: the exact target logits)."""
  key_p, key_n = jax.random.split(jax.random.PRNGKey(seed))
  family = NOISY_FAMILIES[seed % len(NOISY_FAMILIES)]
  p = ja.patterns.GENERATORS[family](key_p, length=length, nnz=nnz, a_min=0.2)
  b = np.zeros((length, length))
  rows = np.repeat(np.arange(length)[:, None], nnz, 1)
  valid = np.asarray(p.valid)
  b[rows[valid], np.asarray(p.cols)[valid]] = np.asarray(target_logits(p, EPS1, EPS2))[valid]
  b += noise * np.asarray(jax.random.normal(key_n, b.shape))
  sol = solution_from_factors(jnp.asarray(b, dtype), jnp.eye(length, dtype=dtype))
  return p, sol


def _near_threshold(ref: dict, eps1: float, eps2: float, rtol: float = 1e-3) -> bool:
  return (abs(ref["ratio_error"] - eps1) <= rtol * eps1) or (abs(ref["leak"] - eps2) <= rtol * eps2)


@pytest.mark.parametrize("seed", range(12))
def test_agrees_with_float64_reference(seed):
  noise = [0.0, 0.05, 0.2, 0.5, 1.0, 3.0][seed % 6]
  p, sol = _noisy_case(seed, noise=noise)
  ref = reference_figures(sol.X, sol.w_q, sol.w_k, p.to_dense())
  rep = ja.verify(sol, p, eps1=EPS1, eps2=EPS2, compute=ja.Compute(block_size=7))
  for name in FIGURES:
    np.testing.assert_allclose(
      float(getattr(rep, name)), ref[name], rtol=2e-4, atol=1e-6, err_msg=name
    )
  if not _near_threshold(ref, EPS1, EPS2):
    assert bool(rep.ok) == reference_ok(ref, EPS1, EPS2)
  assert bool(rep.ok) == bool(jnp.all(rep.row_ok))


def test_reference_cases_cover_both_verdicts():
  verdicts = {
    reference_ok(
      reference_figures(
        *_noisy_case(seed, noise=noise)[1], _noisy_case(seed, noise=noise)[0].to_dense()
      ),
      EPS1,
      EPS2,
    )
    for seed, noise in ((0, 0.0), (1, 3.0))
  }
  assert verdicts == {True, False}


@pytest.mark.parametrize("seed", range(2))
def test_float64_agrees_tightly(seed):
  with jax.enable_x64(True):
    p, sol = _noisy_case(seed, noise=0.3, dtype=np.float64)
    p = p._replace(weights=p.weights.astype(jnp.float64))
    rep = ja.verify(sol, p, eps1=EPS1, eps2=EPS2)
    assert rep.leak.dtype == jnp.float64
    ref = reference_figures(sol.X, sol.w_q, sol.w_k, p.to_dense())
    for name in FIGURES:
      np.testing.assert_allclose(float(getattr(rep, name)), ref[name], rtol=1e-9, err_msg=name)
    assert bool(rep.ok) == reference_ok(ref, EPS1, EPS2)


def test_per_row_verdicts_and_figures():
  """Each row's spread, gap and verdict against the float64 reference's per-row figures."""
  p, sol = _noisy_case(5, noise=0.4)
  rep = ja.verify(sol, p, eps1=EPS1, eps2=EPS2)
  chex.assert_shape([rep.row_ok, rep.spread, rep.gap], (p.length,))
  ref = reference_figures(sol.X, sol.w_q, sol.w_k, p.to_dense())
  np.testing.assert_allclose(np.expm1(rep.spread), ref["row_ratio_error"], rtol=2e-4, atol=1e-6)
  np.testing.assert_allclose(np.exp(rep.gap), ref["row_leak"], rtol=2e-4, atol=1e-6)
  expected = (ref["row_ratio_error"] <= EPS1) & (ref["row_leak"] <= EPS2)
  assert np.all(np.minimum(abs(ref["row_ratio_error"] - EPS1), abs(ref["row_leak"] - EPS2)) > 1e-3)
  np.testing.assert_array_equal(rep.row_ok, expected)
  assert 0 < expected.sum() < p.length  # some rows pass, some fail


@pytest.mark.parametrize("block_size", [1, 5, 16, 24, 100])
def test_block_size_does_not_change_figures(block_size):
  p, sol = _noisy_case(2, noise=0.3)
  base = ja.verify(sol, p, eps1=EPS1, eps2=EPS2)
  rep = ja.verify(sol, p, eps1=EPS1, eps2=EPS2, compute=ja.Compute(block_size=block_size))
  chex.assert_trees_all_close(rep, base, rtol=1e-6)


def test_row_blocks():
  """Row blocking (padded to a multiple of the row block) changes nothing."""
  p, sol = _noisy_case(3, length=30, noise=0.3)
  ones = jnp.ones((1,))
  whole = stream.row_stats(sol.queries(), sol.keys(), p, (30,), ones, block_size=4)
  blocked = stream.row_stats(sol.queries(), sol.keys(), p, (30,), ones, block_size=4, row_block=8)
  chex.assert_trees_all_close(blocked, whole, rtol=1e-6)
  chex.assert_trees_all_close(
    ja.verify(sol, p, eps1=EPS1, eps2=EPS2, compute=ja.Compute(row_block=8)),
    ja.verify(sol, p, eps1=EPS1, eps2=EPS2),
    rtol=1e-6,
  )


def test_default_tiles_follow_the_backend_table(monkeypatch):
  """Defaults come from TILES[jax.default_backend()]: scans of ⌈L/rows⌉ and ⌈L/keys⌉ steps."""
  assert ja.default_tiles("cpu") == (1024, 512) == ja.default_tiles("no such backend")
  p, sol = _noisy_case(3, length=30, noise=0.3)
  monkeypatch.setitem(tiles_lib.TILES, jax.default_backend(), (8, 5))
  assert ja.default_tiles() == (8, 5)
  program = str(
    jax.make_jaxpr(lambda q, k: stream.row_stats(q, k, p, (30,), jnp.ones(1)))(
      sol.queries(), sol.keys()
    )
  )
  assert "length=4" in program and "length=6" in program  # 4 row blocks of 8, 6 key blocks of 5


def test_the_resource_planner_reads_the_library_tile_table():
  """bench/resources.py reads tiles.json without JAX: the same table as ``TILES``, and its
  estimates' tile bounds every backend's default."""
  from jaxattn_bench import resources

  assert resources.library_tiles() == tiles_lib.TILES
  assert all(
    rows <= resources.TILE[0] and keys <= resources.TILE[1]
    for rows, keys in tiles_lib.TILES.values()
  )


def test_row_scaling_of_a_changes_nothing():
  p, sol = _noisy_case(4, noise=0.2)
  scale = jnp.exp(jnp.linspace(-3.0, 3.0, p.length))[:, None]
  base = ja.verify(sol, p, eps1=EPS1, eps2=EPS2)
  scaled = ja.verify(sol, p._replace(weights=p.weights * scale), eps1=EPS1, eps2=EPS2)
  chex.assert_trees_all_close(scaled, base, rtol=1e-5, atol=1e-6)


def test_row_shift_of_logits_changes_no_verdict():
  """ℓ_ij + c_i: append a column c to the queries and 1 to the keys."""
  p, sol = _noisy_case(6, noise=0.3)
  shift = jnp.linspace(-5.0, 5.0, p.length)[:, None]
  shifted = solution_from_factors(
    jnp.concatenate([sol.queries(), shift], 1),
    jnp.concatenate([sol.keys(), jnp.ones_like(shift)], 1),
  )
  base, rep = ja.verify(sol, p, eps1=EPS1, eps2=EPS2), ja.verify(shifted, p, eps1=EPS1, eps2=EPS2)
  np.testing.assert_array_equal(rep.row_ok, base.row_ok)
  for name in ("ratio_error", "leak", "outside_mass_max", "outside_mass_mean"):
    np.testing.assert_allclose(getattr(rep, name), getattr(base, name), rtol=1e-4, err_msg=name)


def test_full_support_has_no_leak():
  a = np.ones((4, 4))
  p = ja.SparsePattern.from_dense(a)
  sol = solution_from_factors(jnp.zeros((4, 2)), jnp.zeros((4, 2)))
  rep = ja.verify(sol, p, eps1=EPS1, eps2=EPS2)
  assert bool(rep.ok) and float(rep.leak) == 0.0 and float(rep.outside_mass_max) == 0.0


class VariantsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_and_non_jit_agree(self):
    p, sol = _noisy_case(7, noise=0.3)
    rep = self.variant(
      lambda s, q: ja.verify(s, q, eps1=EPS1, eps2=EPS2, compute=ja.Compute(block_size=8))
    )(sol, p)
    ref = reference_figures(sol.X, sol.w_q, sol.w_k, p.to_dense())
    np.testing.assert_allclose(float(rep.leak), ref["leak"], rtol=2e-4)

  def test_disable_jit_agrees(self):
    p, sol = _noisy_case(8, length=6, noise=0.3)
    jitted = ja.verify(sol, p, eps1=EPS1, eps2=EPS2, compute=ja.Compute(block_size=4))
    with jax.disable_jit():
      eager = ja.verify(sol, p, eps1=EPS1, eps2=EPS2, compute=ja.Compute(block_size=4))
    chex.assert_trees_all_close(eager, jitted, rtol=1e-5)


def test_bad_inputs():
  p, sol = _noisy_case(0)
  other = ja.patterns.random_regular(jax.random.PRNGKey(0), length=10, nnz=2)
  with pytest.raises(ValueError, match="length 10 but X has 24 rows"):
    ja.verify(sol, other, eps1=EPS1, eps2=EPS2)
  with pytest.raises(ValueError, match="w_q, w_k"):
    ja.verify(sol._replace(w_k=np.asarray(sol.w_k)[:, :3]), p, eps1=EPS1, eps2=EPS2)
  with pytest.raises(ValueError, match="eps2"):
    ja.verify(sol, p, eps1=EPS1, eps2=1.5)
  with pytest.raises(ValueError, match="eps1"):
    ja.verify(sol, p, eps1=-0.1, eps2=EPS2)
  with pytest.raises(ValueError, match="block_size"):
    ja.verify(sol, p, eps1=EPS1, eps2=EPS2, compute=ja.Compute(block_size=0))
  with pytest.raises(ValueError, match="row_block"):
    ja.verify(sol, p, eps1=EPS1, eps2=EPS2, compute=ja.Compute(row_block=0))
