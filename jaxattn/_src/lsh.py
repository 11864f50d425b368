"""Reformer's LSH attention sets (Kitaev, Kaiser & Levskaya 2020) as Hugging Face and trax
compute them: the hash of every token in each round, and the keys each token attends
(docs/practice.md; ``published.ReformerLSH`` draws patterns from them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray


def lsh_candidates(
  buckets: Int[Array, "H L"],
  chunk: int,
  causal: bool,
  mask_buckets: bool,
  per_round_look_back: bool = False,
) -> tuple[Int[Array, "L M"], Bool[Array, "L M"]]:
  """Reformer's attention sets from the bucket of every token in each of H hash rounds.

  As Hugging Face (``LSHSelfAttention``: ``_hash_vectors``' round offsets,
  ``_stable_argsort``, ``_look_adjacent``) and trax: tokens are sorted by
  (round, bucket, position), the H·L sorted slots are cut into chunks of
  ``chunk``, and a slot attends its own chunk and the chunk before, cyclically
  over all H·L/c chunks: the first chunk of round h looks back at the last
  chunk of round h − 1 (of round H − 1 for h = 0). ``per_round_look_back``:
  within round h instead (its own last chunk; the same for H = 1). Kept: tokens
  of the same bucket of the same round (``mask_buckets``, the set P_i of the
  paper; Hugging Face masks none), j ≤ i if ``causal``, j ≠ i; a token's sets
  over its H slots are unioned. Self: a token attends itself only when no
  other token is left (the paper's rule; Hugging Face and trax give self a
  logit of −1e5). tests/upstream.py ports Hugging Face's procedure to check this.
  """
  rounds, length = buckets.shape
  chunks = length // chunk
  rows = jnp.arange(length)[:, None]
  # Per round, the sorted order and each token's chunk; a slot's previous chunk in its round
  # (per round) or in the concatenated sequence of all rounds (Hugging Face, trax).
  orders = jax.vmap(lambda bucket: jnp.argsort(bucket * length + jnp.arange(length)))(buckets)
  ranks = jax.vmap(
    lambda order: jnp.zeros(length, jnp.int32).at[order].set(jnp.arange(length, dtype=jnp.int32))
  )(orders)
  own = ranks // chunk + chunks * jnp.arange(rounds)[:, None]  # chunk ids over all rounds
  back = (
    (own % chunks - 1) % chunks + own // chunks * chunks
    if per_round_look_back
    else (own - 1) % (rounds * chunks)
  )
  slots = jnp.stack([own, back], -1)[..., None] * chunk + jnp.arange(chunk)  # [H, L, 2, c]
  cols = orders.reshape(-1)[slots.reshape(rounds, length, -1)]
  round_of = slots.reshape(rounds, length, -1) // length  # the round each slot belongs to
  here = jnp.arange(rounds)[:, None, None]
  same_bucket = (round_of == here) & (buckets[here, cols] == buckets[:, :, None])
  valid = (cols != rows[None]) & (same_bucket | (not mask_buckets))
  valid = valid & ((cols <= rows[None]) | (not causal))
  cols = jnp.moveaxis(cols, 0, 1).reshape(length, -1)
  valid = jnp.moveaxis(valid, 0, 1).reshape(length, -1)
  alone = ~jnp.any(valid, axis=-1, keepdims=True)
  return jnp.concatenate([cols, rows], axis=-1), jnp.concatenate([valid, alone], axis=-1)


def lsh_buckets(
  key: PRNGKeyArray, vectors, buckets: int | tuple[int, ...], rounds: int
) -> Int[Array, "H L"]:
  """h(x) = argmax([x R; −x R]) with R ∈ R^{D×buckets/2} Gaussian, one R per round (Kitaev et al.
  2020); for ``buckets`` = (f_1, …, f_k) the factorised hash of f_1·…·f_k buckets
  (``hash_rotated``) on one R ∈ R^{D×Σf/2} per round."""
  factors = (buckets,) if isinstance(buckets, int) else tuple(buckets)
  rotations = jax.vmap(
    lambda round_key: jax.random.normal(round_key, (vectors.shape[-1], sum(factors) // 2))
  )(jax.random.split(key, rounds))
  return hash_rotated(vectors, rotations, factors)


def hash_rotated(
  vectors: Float[Array, "L D"], rotations: Float[Array, "H D R"], factors: tuple[int, ...]
) -> Int[Array, "H L"]:
  """Per round, the bucket Σ_k b_k·Π_{m<k} f_m with b_k = argmax([x R_k; −x R_k]), R_k the next
  f_k/2 columns of the round's R: Hugging Face ``LSHSelfAttention._hash_vectors`` (a list
  ``num_buckets`` factorises the hash; one factor is the plain hash)."""
  rotated = jax.vmap(lambda rotation: vectors @ rotation)(rotations)
  buckets, start, product = jnp.zeros(rotated.shape[:2], jnp.int32), 0, 1
  for factor in factors:
    part = rotated[..., start : start + factor // 2]
    buckets = buckets + product * jnp.argmax(jnp.concatenate([part, -part], -1), -1)
    start, product = start + factor // 2, product * factor
  return buckets
