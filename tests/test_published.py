"""Published masks: each family against a dense reference built here from its source's words."""

import itertools

import jax
import numpy as np
import pytest

import jaxattn as ja

P = ja.patterns
KEY = jax.random.PRNGKey(7)


def _mask(pattern) -> np.ndarray:
  return np.asarray(pattern.to_dense()) > 0


def _check_bounds(family, length, mask, exact=True):
  """Measured counts within the family's bounds (equal to them where ``exact``)."""
  bounds = family.bounds(length)
  rows = mask.sum(1)
  dense = rows == length if bounds.dense_rows else np.zeros(length, bool)
  assert dense.sum() == bounds.dense_rows
  assert rows[~dense].max() <= bounds.row and mask.sum(0).max() <= bounds.column
  if exact:
    assert rows[~dense].max() == bounds.row and mask.sum(0).max() == bounds.column


def longformer_reference(length, window, globals_, causal, global_rows):
  a = np.zeros((length, length), bool)
  for i, j in itertools.product(range(length), repeat=2):
    in_window = 0 <= i - j <= window if causal else abs(i - j) <= window
    is_global = j < globals_ and (j <= i or not causal)
    a[i, j] = in_window or is_global or (global_rows and not causal and i < globals_)
  return a


@pytest.mark.parametrize(
  "window, globals_, causal, global_rows",
  [
    (2, 0, False, True),
    (3, 2, False, True),
    (3, 2, False, False),
    (2, 3, True, True),
    (0, 1, False, True),
    (1, 0, True, True),
  ],
)
def test_longformer(window, globals_, causal, global_rows):
  family = P.Longformer(window=window, globals=globals_, causal=causal, global_rows=global_rows)
  pattern = family(KEY, 24)
  np.testing.assert_array_equal(
    _mask(pattern), longformer_reference(24, window, globals_, causal, global_rows)
  )
  assert pattern.nnz == family.width(24)
  _check_bounds(family, 24, _mask(pattern))
  assert family.bounds(24).inside_theorem == (globals_ == 0)


def bigbird_reference(length, block, random_blocks, global_rows, chosen):
  """Dense BigBird mask as google-research/bigbird ``full_bigbird_mask`` builds it, with the
  random blocks ``chosen[B]`` of block row B."""
  if length <= (5 + 2 * random_blocks) * block:
    return np.ones((length, length), bool)
  blocks = length // block
  a = np.zeros((length, length), bool)
  for b in range(blocks):
    rows = slice(b * block, (b + 1) * block)
    for c in [b - 1, b, b + 1, *chosen[b]]:
      if 0 <= c < blocks:
        a[rows, c * block : (c + 1) * block] = True
  a[:, :block] = a[:, -block:] = True
  if global_rows:
    a[:block, :] = a[-block:, :] = True
  return a


def _random_blocks(mask, block, random_blocks, global_rows):
  """Block row -> its random blocks, read off the mask and checked against BigBird's rule."""
  blocks = mask.shape[0] // block
  chosen = {}
  for b in range(blocks):
    rows = mask[b * block : (b + 1) * block]
    assert (rows == rows[0]).all()  # block-sparse: every row of a block row alike
    attended = {c for c in range(blocks) if rows[0, c * block : (c + 1) * block].all()}
    extra = attended - {b - 1, b, b + 1, 0, blocks - 1}
    if global_rows and b in (0, blocks - 1):
      chosen[b] = []
      continue
    assert len(extra) == random_blocks and extra <= set(range(1, blocks - 1))
    chosen[b] = sorted(extra)
  return chosen


@pytest.mark.parametrize(
  "block, random_blocks, global_rows, length",
  [(2, 1, True, 32), (2, 1, False, 32), (3, 2, True, 48), (2, 0, True, 16), (2, 1, True, 14)],
)
def test_bigbird(block, random_blocks, global_rows, length):
  family = P.BigBird(block=block, random_blocks=random_blocks, global_rows=global_rows)
  mask = _mask(family(KEY, length))
  chosen = (
    _random_blocks(mask, block, random_blocks, global_rows) if not family.full(length) else {}
  )
  np.testing.assert_array_equal(
    mask, bigbird_reference(length, block, random_blocks, global_rows, chosen)
  )
  if family.full(length):
    assert mask.all() and family.bounds(length).dense_rows == length
  else:
    _check_bounds(family, length, mask, exact=False)
    draws = [
      _random_blocks(_mask(family(k, length)), block, random_blocks, global_rows)
      for k in jax.random.split(KEY, 4)
    ]
    assert random_blocks == 0 or any(d != draws[0] for d in draws)  # the key draws the blocks


def test_bigbird_needs_whole_blocks():
  with pytest.raises(ValueError, match="multiple of block=4"):
    P.BigBird(block=4)(KEY, 30)


def strided_reference(length, stride, causal):
  a = np.zeros((length, length), bool)
  for i, j in itertools.product(range(length), repeat=2):
    if causal:
      a[i, j] = max(0, i - stride) <= j <= i or (j <= i and (i - j) % stride == 0)
    else:
      a[i, j] = abs(i - j) <= stride or (i - j) % stride == 0
  return a


@pytest.mark.parametrize(
  "stride, causal, length",
  [(None, True, 30), (None, False, 30), (3, True, 20), (4, False, 21), (1, True, 5)],
)
def test_sparse_transformer_strided(stride, causal, length):
  family = P.SparseTransformerStrided(stride=stride, causal=causal)
  mask = _mask(family(KEY, length))
  np.testing.assert_array_equal(
    mask, strided_reference(length, stride or round(np.sqrt(length)), causal)
  )
  _check_bounds(family, length, mask)


def fixed_reference(length, block, summary, causal):
  a = np.zeros((length, length), bool)
  for i, j in itertools.product(range(length), repeat=2):
    in_block = j // block == i // block
    is_summary = j % block >= block - summary
    a[i, j] = (in_block or is_summary) and (j <= i or not causal)
  return a


@pytest.mark.parametrize(
  "block, summary, causal, length",
  [(4, 1, True, 22), (4, 2, False, 22), (5, 5, True, 10), (3, 1, True, 3)],
)
def test_sparse_transformer_fixed(block, summary, causal, length):
  family = P.SparseTransformerFixed(block=block, summary=summary, causal=causal)
  mask = _mask(family(KEY, length))
  np.testing.assert_array_equal(mask, fixed_reference(length, block, summary, causal))
  _check_bounds(family, length, mask, exact=False)
  assert mask.sum(0).max() >= length - block  # summary columns: Θ(L)


def lsh_reference(buckets, chunk, causal, mask_buckets):
  """Reformer's sets with ``per_round_look_back``: per round, sort by (bucket, position), chunk,
  look one chunk back (cyclic within the round), union (across rounds: tests/test_upstream.py)."""
  rounds, length = buckets.shape
  a = np.zeros((length, length), bool)
  chunks = length // chunk
  for bucket in buckets:
    order = sorted(range(length), key=lambda t: (bucket[t], t))
    chunk_of = {t: rank // chunk for rank, t in enumerate(order)}
    for i, j in itertools.product(range(length), repeat=2):
      near = chunk_of[j] in (chunk_of[i], (chunk_of[i] - 1) % chunks)
      a[i, j] |= (
        near and j != i and (bucket[i] == bucket[j] or not mask_buckets) and (j <= i or not causal)
      )
  alone = np.flatnonzero(~a.any(1))
  a[alone, alone] = True
  return a


@pytest.mark.parametrize(
  "rounds, chunk, buckets, causal, mask_buckets",
  [
    (1, 4, 4, False, True),
    (2, 4, 4, True, True),
    (3, 2, 6, False, False),
    (1, 8, 2, True, False),
    (2, 16, 8, False, True),
  ],
)
def test_lsh_sets(rounds, chunk, buckets, causal, mask_buckets):
  length = 16
  bucket_ids = np.asarray(jax.random.randint(KEY, (rounds, length), 0, buckets))
  cols, valid = P.lsh_candidates(
    jax.numpy.asarray(bucket_ids), chunk, causal, mask_buckets, per_round_look_back=True
  )
  cols, valid = P.union(cols, valid, length)
  pattern = P.from_rows(cols, jax.numpy.ones(cols.shape), valid)
  np.testing.assert_array_equal(
    _mask(pattern), lsh_reference(bucket_ids, chunk, causal, mask_buckets)
  )


def test_lsh_buckets_are_angular():
  """h(x) = argmax([xR, −xR]): invariant to scaling x, and −x lands in the opposite bucket."""
  vectors = jax.random.normal(KEY, (50, 8))
  hashed = np.asarray(P.lsh_buckets(KEY, vectors, 6, 2))
  assert hashed.shape == (2, 50) and hashed.min() >= 0 and hashed.max() < 6
  np.testing.assert_array_equal(np.asarray(P.lsh_buckets(KEY, 3.0 * vectors, 6, 2)), hashed)
  np.testing.assert_array_equal(np.asarray(P.lsh_buckets(KEY, -vectors, 6, 2)), (hashed + 3) % 6)


@pytest.mark.parametrize("hashes, causal", [(1, False), (2, True)])
def test_reformer_lsh_family(hashes, causal):
  family = P.ReformerLSH(chunk=4, buckets=4, hashes=hashes, causal=causal, dim=8)
  mask = _mask(family(KEY, 32))
  _check_bounds(family, 32, mask, exact=False)
  assert family.bounds(32).inside_theorem
  assert mask.any(1).all() and not mask.all()
  if causal:
    assert not np.triu(mask, 1).any()


@pytest.mark.parametrize(
  "spec",
  [
    "longformer(window=2,globals=1,global_rows=false)",
    "bigbird(block=2,random_blocks=1)",
    "sparse_transformer_strided",
    "sparse_transformer_fixed(block=4,summary=1)",
    "reformer_lsh(chunk=4,buckets=4,hashes=2)",
  ],
)
def test_weights_jit_vmap_and_sampler(spec):
  family = P.family_from_spec(spec)
  assert family.spec == spec and P.family_from_spec(family.spec) == family
  binary = family(KEY, 32)
  weighted = family(KEY, 32, a_min=0.25)
  np.testing.assert_array_equal(_mask(binary), _mask(weighted))
  values = np.asarray(weighted.weights)[np.asarray(weighted.valid)]
  assert values.min() >= 0.25 * (1 - 1e-6) and values.max() <= 1 and values.min() < 1
  assert (np.asarray(binary.weights) == 1).all()
  sampler = P.Sampler(spec, 32, family.width(32), 1.0)
  batch = jax.vmap(sampler)(jax.random.split(KEY, 3))
  assert batch.cols.shape == (3, 32, family.width(32))
  np.testing.assert_array_equal(
    _mask(jax.tree.map(lambda x: x[1], batch)), _mask(family(jax.random.split(KEY, 3)[1], 32))
  )


@pytest.mark.parametrize(
  "spec, message",
  [
    ("longformer(width=3)", "no field 'width'"),
    ("bigbird(block=x)", "expected an integer"),
    ("transformer", "unknown published family"),
    ("reformer_lsh(buckets=3)", "even"),
    ("longformer(window=-1)", "window must be"),
  ],
)
def test_bad_specs(spec, message):
  with pytest.raises(ValueError, match=message):
    P.family_from_spec(spec)


def test_sampler_checks_nnz():
  with pytest.raises(ValueError, match="has nnz=5, got nnz=6"):
    P.Sampler("longformer(window=2)", 32, 6, 1.0)


@pytest.mark.parametrize(
  "spec",
  [
    "longformer(window=2,globals=2,global_rows=false)",
    "bigbird(block=4,random_blocks=1,global_rows=false)",
    "sparse_transformer_strided",
    "sparse_transformer_fixed(block=8)",
    "reformer_lsh(chunk=4,buckets=4)",
  ],
)
def test_optimize_solution_per_family_agrees_with_float64_reference(spec):
  """One optimize solution per family: ja.verify's verdict and figures match the float64
  NumPy reference built from the dense attention."""
  from tests.reference import reference_figures, reference_ok

  pattern = P.family_from_spec(spec)(KEY, 64)
  solution = ja.construct.optimize(KEY, pattern, 32, eps1=0.5, eps2=0.5)
  report = ja.verify(solution, pattern, eps1=0.5, eps2=0.5)
  reference = reference_figures(solution.X, solution.w_q, solution.w_k, pattern.to_dense())
  assert bool(report.ok) and reference_ok(reference, 0.5, 0.5)  # d = 32 verifies at L = 64
  np.testing.assert_allclose(float(report.leak), reference["leak"], rtol=1e-3, atol=1e-30)
  np.testing.assert_allclose(
    float(report.ratio_error), reference["ratio_error"], rtol=1e-2, atol=1e-4
  )


def test_min_d_takes_a_published_family_and_derives_its_nnz(capsys):
  """``bench min_d --family SPEC`` without --nnz uses the family's own N; a different --nnz, or
  a generator without --nnz, is refused in one line (exit 2)."""
  from jaxattn_bench.cli import main

  argv = [
    "min_d",
    "--family",
    "longformer(window=1)",
    "--length",
    "16",
    "--method",
    "onehot",
    "--trials",
    "2",
    "--d-max",
    "16",
    "--per-octave",
    "1",
  ]
  assert main(argv) == 0
  assert "longformer(window=1) L=16 N=3 " in capsys.readouterr().out
  assert main([*argv, "--nnz", "5"]) == 2
  assert "has N = 3; got --nnz 5" in capsys.readouterr().err
  assert main(["min_d", "--length", "16"]) == 2
  assert "--nnz is required for the generator 'random_regular'" in capsys.readouterr().err
