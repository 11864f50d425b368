"""Ports of the upstream functions the published families say they follow, kept as close to the
source as NumPy allows, for tests/test_upstream.py to compare against (docs/practice.md).

- ``bigbird_block_rand_mask``: google-research/bigbird ``bigbird/core/attention.py`` (the same
  function is Hugging Face's ``BigBirdBlockSparseAttention._bigbird_block_rand_mask``), with the
  permutation injectable so that a test can read the list each row draws from.
- ``hash_vectors``: Hugging Face ``LSHSelfAttention._hash_vectors`` for one head and batch, the
  random rotations given.
- ``lsh_attention_sets``: Hugging Face ``LSHSelfAttention`` chunked attention for one head and
  batch (``_stable_argsort`` of the round-offset buckets, ``_look_adjacent`` with one chunk
  before, the causal and self masks of ``_attend``), as the set of keys each token attends.
"""

from __future__ import annotations

import numpy as np


def bigbird_block_rand_mask(
  from_seq_length,
  to_seq_length,
  from_block_size,
  to_block_size,
  num_rand_blocks,
  last_idx=-1,
  permutation=np.random.permutation,
):
  """Adjacency list [n − 2, r] of random blocks, as the source (its comments kept)."""
  assert from_seq_length // from_block_size == to_seq_length // to_block_size
  rand_attn = np.zeros((from_seq_length // from_block_size - 2, num_rand_blocks), dtype=np.int32)
  middle_seq = np.arange(1, to_seq_length // to_block_size - 1, dtype=np.int32)
  last = to_seq_length // to_block_size - 1
  if last_idx > (2 * to_block_size):
    last = (last_idx // to_block_size) - 1

  r = num_rand_blocks  # shorthand
  for i in range(1, from_seq_length // from_block_size - 1):
    start = i - 2
    end = i
    if i == 1:
      rand_attn[i - 1, :] = permutation(middle_seq[2:last])[:r]
    elif i == 2:
      rand_attn[i - 1, :] = permutation(middle_seq[3:last])[:r]
    elif i == from_seq_length // from_block_size - 3:
      rand_attn[i - 1, :] = permutation(middle_seq[:last])[:r]
      # Missing -3: should have been sliced till last-3
    elif i == from_seq_length // from_block_size - 2:
      rand_attn[i - 1, :] = permutation(middle_seq[:last])[:r]
      # Missing -4: should have been sliced till last-4
    else:
      if start > last:
        start = last
        rand_attn[i - 1, :] = permutation(middle_seq[:start])[:r]
      elif (end + 1) == last:
        rand_attn[i - 1, :] = permutation(middle_seq[:start])[:r]
      else:
        rand_attn[i - 1, :] = permutation(
          np.concatenate((middle_seq[:start], middle_seq[end + 1 : last]))
        )[:r]
  return rand_attn


def hash_vectors(vectors, num_buckets, random_rotations):
  """Buckets [H, L] of ``vectors`` [L, D] with ``random_rotations`` [D, H, Σf/2] (the source's
  ``rotations_shape`` for one head), before the source adds its round offsets."""
  factors = [num_buckets] if isinstance(num_buckets, int) else list(num_buckets)
  rotated_vectors = np.einsum("td,dhr->htr", vectors, random_rotations)
  if len(factors) == 1:
    rotated_vectors = np.concatenate([rotated_vectors, -rotated_vectors], axis=-1)
    return np.argmax(rotated_vectors, axis=-1)
  buckets, cur_sum, cur_product = None, 0, 1
  for bucket_factor in factors:
    rotated_vectors_factor = rotated_vectors[..., cur_sum : cur_sum + (bucket_factor // 2)]
    cur_sum = cur_sum + bucket_factor // 2
    rotated_vectors_factor = np.concatenate(
      [rotated_vectors_factor, -rotated_vectors_factor], axis=-1
    )
    if buckets is None:
      buckets = np.argmax(rotated_vectors_factor, axis=-1)
    else:
      buckets = buckets + (cur_product * np.argmax(rotated_vectors_factor, axis=-1))
    cur_product = cur_product * bucket_factor
  return buckets


def _stable_argsort(vector):
  """The source's ``_stable_argsort`` along the last axis: ties broken by position."""
  scale_offset = np.arange(vector.shape[-1]) % vector.shape[-1]
  return np.argsort(vector.shape[-1] * vector + scale_offset, axis=-1, kind="stable")


def _look_adjacent(vectors, num_chunks_before=1, num_chunks_after=0):
  """The source's ``_look_adjacent`` on [chunks, chunk_length]: each chunk with its neighbours."""
  slices = [
    np.concatenate([vectors[i:], vectors[:i]], axis=0)
    for i in range(-num_chunks_before, num_chunks_after + 1)
  ]
  return np.concatenate(slices, axis=1)


def lsh_attention_sets(buckets, chunk_length, is_decoder):
  """bool [L, L]: the keys token i attends with weight above the masks' (−1e9 masked, −1e5 self:
  self only where nothing else is left in any round), from per-round ``buckets`` [H, L]."""
  num_hashes, sequence_length = buckets.shape
  num_buckets = int(buckets.max()) + 1
  offset_buckets = (buckets + np.arange(num_hashes)[:, None] * num_buckets).reshape(-1)
  sorted_bucket_idx_per_hash = _stable_argsort(offset_buckets) % sequence_length
  query_idx = sorted_bucket_idx_per_hash.reshape(-1, chunk_length)
  key_idx = _look_adjacent(query_idx)
  keep = query_idx[:, :, None] != key_idx[:, None, :]  # the self mask
  if is_decoder:
    keep &= query_idx[:, :, None] >= key_idx[:, None, :]
  attended = np.zeros((sequence_length, sequence_length), bool)
  for n, a in np.ndindex(query_idx.shape):
    attended[query_idx[n, a], key_idx[n][keep[n, a]]] = True
  alone = np.flatnonzero(~attended.any(1))
  attended[alone, alone] = True
  return attended
