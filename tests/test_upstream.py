"""The published families against ports of the upstream code they cite (tests/upstream.py)."""

import jax
import numpy as np
import pytest

from jaxattn._src import lsh, published as P
from jaxattn._src.family import union
from jaxattn._src.pattern import from_rows
from tests import upstream

KEY = jax.random.PRNGKey(0)


def _mask(pattern) -> np.ndarray:
  return np.asarray(pattern.to_dense()) > 0


@pytest.mark.parametrize(
  "length, block, max_length, focus",
  [
    (1024, 64, 4096, 1024),
    (3072, 64, 4096, 1024),
    (4096, 64, 4096, 1024),
    (64, 4, 256, 64),
    (256, 4, 256, 64),
  ],
)
def test_bigbird_focus_draws_from_the_lists_of_bigbird_block_rand_mask(
  length, block, max_length, focus
):
  """``BigBird(focus=F)``: block row B draws among exactly the blocks google-research's
  ``bigbird_block_rand_mask(M, M, b, b, r, last_idx=F)[:n − 2]`` lists for it (as Hugging Face
  calls it for L ∈ {1024, 3072, 4096}), quirks included: row 1 may draw the last block, rows
  M/b − 3 and M/b − 2 their own window; and a drawn pattern's random blocks lie in them."""
  family = P.BigBird(block=block, random_blocks=3, focus=focus, max_length=max_length)
  blocks = length // block
  lists = []
  upstream.bigbird_block_rand_mask(
    max_length,
    max_length,
    block,
    block,
    3,
    last_idx=focus,
    permutation=lambda seq: lists.append(set(seq.tolist())) or seq,
  )
  allowed = family.focus_candidates(blocks)
  for row in range(1, blocks - 1):
    assert set(np.flatnonzero(allowed[row]).tolist()) == lists[row - 1], row
  assert not allowed[[0, blocks - 1]].any()
  if length <= 256:
    mask = _mask(family(KEY, length))
    for row in range(1, blocks - 1):
      attended = {c for c in range(blocks) if mask[row * block, c * block]}
      assert attended - {row - 1, row, row + 1, 0, blocks - 1} <= lists[row - 1]


def test_bigbird_default_is_the_papers_rule_not_the_sources_lists():
  """Without ``focus`` the random blocks are uniform over 1 … n − 2 outside the window; the
  source's lists differ (row 1 of L = 1024 may draw block 15, the last, global one)."""
  allowed = P.BigBird(block=64, random_blocks=3, focus=1024).focus_candidates(16)
  assert allowed[1, 15]
  row = np.asarray(P.BigBird(block=64).block_columns(KEY, 16))[1, 5:]
  assert set(row.tolist()) <= set(range(3, 15))


@pytest.mark.parametrize("factors", [(6,), (4, 8), (64, 128)])
def test_lsh_hash_is_hugging_faces_hash_vectors(factors):
  """``hash_rotated`` on the same rotations gives Hugging Face's buckets, for one bucket count
  and for a factorised hash (``reformer-crime-and-punishment``: ``num_buckets = [64, 128]``)."""
  rounds, length, dim = 3, 40, 16
  rng = np.random.default_rng(0)
  vectors = rng.normal(size=(length, dim)).astype(np.float32)
  rotations = rng.normal(size=(dim, rounds, sum(factors) // 2)).astype(np.float32)
  ours = np.asarray(lsh.hash_rotated(vectors, np.moveaxis(rotations, 1, 0), factors))
  theirs = upstream.hash_vectors(
    vectors, list(factors) if len(factors) > 1 else factors[0], rotations
  )
  np.testing.assert_array_equal(ours, theirs)
  assert theirs.max() < np.prod(factors) and len(np.unique(theirs)) > factors[0] // 2


@pytest.mark.parametrize(
  "rounds, chunk, buckets, causal",
  [(1, 4, 4, False), (2, 4, 4, True), (3, 2, 6, False), (4, 8, 2, True), (2, 16, 8, False)],
)
def test_lsh_sets_are_hugging_faces_chunked_attention(rounds, chunk, buckets, causal):
  """``lsh_candidates`` without the paper's bucket mask is Hugging Face's chunked LSH attention,
  where the first chunk of round h looks back at the last chunk of round h − 1; with
  ``per_round_look_back`` it differs from it once there are several rounds."""
  length = 16
  bucket_ids = np.asarray(jax.random.randint(KEY, (rounds, length), 0, buckets))
  theirs = upstream.lsh_attention_sets(bucket_ids, chunk, causal)

  def ours(per_round):
    cols, valid = lsh.lsh_candidates(jax.numpy.asarray(bucket_ids), chunk, causal, False, per_round)
    cols, valid = union(cols, valid, length)
    return _mask(from_rows(cols, jax.numpy.ones(cols.shape), valid))

  np.testing.assert_array_equal(ours(False), theirs)
  if rounds > 1 and length // chunk > 2:  # (with two chunks a round, both see its whole round)
    assert (ours(True) != theirs).any()


def test_the_reformer_family_draws_hugging_faces_sets_by_default():
  """``ReformerLSH`` without the paper's bucket mask, at its defaults otherwise (look-back across
  rounds), gives Hugging Face's sets on the buckets it hashed."""
  family = P.ReformerLSH(chunk=4, buckets=4, hashes=3, mask_buckets=False, causal=True, dim=8)
  length = 32
  k_vectors, k_hash = jax.random.split(KEY)
  vectors = jax.random.normal(k_vectors, (length, family.dim))
  buckets = np.asarray(lsh.lsh_buckets(k_hash, vectors, family.buckets, family.hashes))
  cols, valid = union(*family.candidates(KEY, length), length)
  ours = _mask(from_rows(cols, jax.numpy.ones(cols.shape), valid))
  np.testing.assert_array_equal(ours, upstream.lsh_attention_sets(buckets, family.chunk, True))
