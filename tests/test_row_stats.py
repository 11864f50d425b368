"""The streaming kernel ``row_stats`` against a dense float64 NumPy reference."""

import functools
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import jaxattn as ja
from jaxattn._src import tiles
from jaxattn._src import stream


def dense_stats(queries, keys, pattern, splits, scales):
  """spread, gap, outside mass, max |ℓ| of ℓ^(g) = s_g Q_{:, :k} K_{:, :k}ᵀ, densely, in float64."""
  q, k = np.asarray(queries, np.float64), np.asarray(keys, np.float64)
  dense = np.asarray(pattern.to_dense(), np.float64)
  support = dense > 0
  log_a = np.log(np.where(support, dense, 1.0))
  out = []
  for split, scale in zip(splits, scales):
    logits = scale * q[:, :split] @ k[:, :split].T
    shifted = np.where(support, logits - log_a, np.nan)
    spread = np.nanmax(shifted, 1) - np.nanmin(shifted, 1)
    gap = np.where(support, -np.inf, logits).max(1) - np.where(support, logits, np.inf).min(1)
    p = np.exp(logits - logits.max(1, keepdims=True))
    mass = np.where(support, 0.0, p).sum(1) / p.sum(1)
    out.append(
      (spread, gap, mass, np.abs(logits).max(1), np.zeros_like(spread), np.zeros_like(gap))
    )
  return stream.RowStats(*(np.stack(x) for x in zip(*out)))


def assert_bounds_cover(stats, want):
  """|computed − float64| ≤ σ, τ of the kernel, row by row (a gap of −inf: nothing outside)."""
  np.testing.assert_array_less(np.abs(stats.spread - want.spread), stats.spread_bound)
  finite = np.isfinite(want.gap)
  np.testing.assert_array_less(np.abs(stats.gap - want.gap)[finite], stats.gap_bound[finite])


def _problem(length=77, nnz=3, width=200):
  pattern = ja.patterns.random_sparse(jax.random.PRNGKey(3), length=length, nnz=nnz, a_min=0.3)
  queries, keys = ja.construct.METHODS["jl"](jax.random.PRNGKey(4), pattern, width, width, 0.5, 0.5)
  return pattern, queries, keys


class RowStatsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((None, 2048, True), (13, 32, True), (16, 2048, False), (13, 32, False))
  def test_nested_levels_match_dense(self, block_size, row_block, full):
    pattern, queries, keys = _problem()
    # full: running sums of matmuls; else 3, 8 by rank-1 updates, then 64 ... 200 as running sums
    splits = (3, 8, 64, 65, 66, 200)
    scales = 200 / np.array(splits, np.float64)
    stats = self.variant(
      functools.partial(
        stream.row_stats, splits=splits, block_size=block_size, row_block=row_block, full=full
      )
    )(queries, keys, pattern, scales=jnp.asarray(scales, jnp.float32))
    want = dense_stats(queries, keys, pattern, splits, scales)
    chex.assert_shape(list(stats), (len(splits), pattern.length))
    np.testing.assert_allclose(stats.spread, want.spread, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats.gap, want.gap, rtol=1e-4, atol=1e-4)
    assert_bounds_cover(stats, want)
    if full:
      np.testing.assert_allclose(stats.outside_mass, want.outside_mass, rtol=1e-3, atol=1e-7)
      np.testing.assert_allclose(stats.max_abs_logit, want.max_abs_logit, rtol=1e-5)
    else:
      np.testing.assert_array_equal(stats.outside_mass, 0.0)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(None, 13)
  def test_rank1_levels_alone_match_dense(self, block_size):
    pattern, queries, keys = _problem(width=16)
    splits = (1, 2, 5, 16)  # every level d <= _RANK1_MAX_D: rank-1 updates only, no matmul
    self.assertLessEqual(splits[-1], stream._RANK1_MAX_D)
    scales = 16 / np.array(splits, np.float64)
    stats = self.variant(
      functools.partial(stream.row_stats, splits=splits, block_size=block_size, full=False)
    )(queries, keys, pattern, scales=jnp.asarray(scales, jnp.float32))
    want = dense_stats(queries, keys, pattern, splits, scales)
    np.testing.assert_allclose(stats.spread, want.spread, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats.gap, want.gap, rtol=1e-4, atol=1e-4)

  def test_levels_agree_with_separate_single_level_passes(self):
    pattern, queries, keys = _problem(width=24)
    nested = stream.row_stats(
      queries, keys, pattern, (5, 24), jnp.array([2.0, 1.0]), block_size=16, full=False
    )
    for g, split in enumerate((5, 24)):
      single = stream.row_stats(
        queries[:, :split],
        keys[:, :split],
        pattern,
        (split,),
        jnp.array([(2.0, 1.0)[g]]),
        block_size=16,
        full=False,
      )
      np.testing.assert_allclose(nested.gap[g], single.gap[0], rtol=1e-6, atol=1e-6)

  def test_bfloat16_matmul_is_exact_for_rounded_factors(self):
    pattern, queries, keys = _problem(width=24)
    stats = stream.row_stats(
      queries, keys, pattern, (24,), jnp.ones(1), block_size=16, matmul_dtype=jnp.bfloat16
    )
    self.assertEqual(stats.gap.dtype, jnp.float32)
    rounded = [x.astype(jnp.bfloat16).astype(jnp.float32) for x in (queries, keys)]
    want = dense_stats(*rounded, pattern, (24,), (1.0,))
    np.testing.assert_allclose(stats.gap, want.gap, rtol=1e-4, atol=1e-4)
    exact = dense_stats(queries, keys, pattern, (24,), (1.0,))
    self.assertGreater(np.max(np.abs(exact.gap - want.gap)), 1e-3)  # rounding is visible
    assert_bounds_cover(stats, exact)  # the bounds hold for the stored factors

  def test_bad_splits(self):
    pattern, queries, keys = _problem()
    for splits in [(0, 24), (8, 4), (8, 8), (201,)]:
      with self.assertRaisesRegex(ValueError, "splits"):
        stream.row_stats(queries, keys, pattern, splits, jnp.ones(len(splits)))


@pytest.mark.parametrize("full", [True, False])
def test_support_gathered_in_chunks_matches_one_gather_and_float64(full):
  """N = 150 > ``SUPPORT_CHUNK``: slots gathered 64 (or 16) at a time give the same spread,
  minimum and max |ℓ| bits as one gather of all N, ln Σ e^ℓ within rounding, and row_stats
  stays within its bound of the float64 figures."""
  pattern = ja.patterns.random_sparse(jax.random.PRNGKey(3), length=200, nnz=150, a_min=0.3)
  queries, keys = ja.construct.METHODS["jl"](jax.random.PRNGKey(4), pattern, 24, 24, 0.5, 0.5)
  splits = (5, 24)
  prefix = (jnp.arange(24)[:, None] < jnp.asarray(splits)).astype(jnp.float32)
  scales = jnp.asarray([24 / 5, 1.0], jnp.float32)
  args = (queries, keys, pattern.cols, pattern.log_weights, pattern.valid, prefix, scales)
  whole = tiles.support_stats(*args, full=full, chunk=150)
  for chunk in (16, tiles.SUPPORT_CHUNK):
    parts = tiles.support_stats(*args, full=full, chunk=chunk)
    for name in ("spread", "minimum", "abs_max"):
      np.testing.assert_array_equal(getattr(parts, name), getattr(whole, name), name)
    np.testing.assert_allclose(parts.log_sum, whole.log_sum, rtol=1e-6)
  stats = ja.row_stats(queries, keys, pattern, splits, scales, full=full)
  want = dense_stats(queries, keys, pattern, splits, np.asarray(scales, np.float64))
  assert_bounds_cover(stats, want)
  if full:
    np.testing.assert_allclose(stats.outside_mass, want.outside_mass, rtol=1e-3, atol=1e-7)
