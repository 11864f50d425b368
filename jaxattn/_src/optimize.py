"""Gradient-based construction: start from ``lstsq``, optimise Q (and K) with optax on each row's
support and its K hardest negatives.

W_Q, W_K stay fixed; only the factors Q = X W_Q and K = X W_K (hence X) move.
The loss is a squared hinge on both conditions' violations with a margin
κ·ln(1 + ε1) (κ = ``SLACK``), over the support logits and, per row, the
logits of its *hard negatives* H_i ⊂ [L] ∖ S_i:

  loss = (1/L) Σ_i [ Σ_{s,s'∈S_i} relu(r_is − r_is' − (1 − κ) ln(1 + ε1))²
                   + Σ_{j∈H_i, s∈S_i} relu(ℓ_ij − ℓ_is − ln ε2 + κ ln(1 + ε1))² ],

r_is = ℓ_is − ln A_is; each pair term is C¹. H_i holds the K largest
off-support logits of row i, re-mined every ``MINE_EVERY`` Adam steps by
one streamed pass over key blocks (``mine``, the tiling of ``ja.verify``: ``tiles``):
per tile of rows × keys, the maximum of every chunk of ``CHUNK``
consecutive keys, merged per group of key blocks (``lax.top_k`` over the
row's K kept maxima and the group's new ones; a group is the largest
divisor of the number of blocks that is ≤ ``MERGE_BLOCKS`` and at most half
of it) into each row's K largest chunk maxima. The K largest logits of a
row lie in those K chunks (a chunk holding one of them has its maximum ≥
the K-th largest logit, and at most K chunks do), so recomputing the
K·CHUNK logits of those chunks from gathered keys and keeping their top K
is exact, while the pass itself costs one matmul and one fused max per tile.

Stopping test. The same pass yields max_{j∉S_i} ℓ_ij exactly (the largest
chunk maximum, from the very tiles and support mask of ``ja.verify``), so
gap_i, and spread_i from the gathered support logits: the streamed check
of docs/definitions.md on the current factors, rounded to the evaluation
dtype. The loop stops only when it passes with half the training margin,
spread_i ≤ (1 − κ/2) ln(1 + ε1) and gap_i ≤ ln ε2 − (κ/2) ln(1 + ε1), so
that ``ja.verify``, summing in another order, agrees; or after
``MAX_STEPS``. A round trains on its mined set until the loss there is
zero or ``MINE_EVERY`` steps have passed, then mines and checks again.

Memory per trial is O(L·(N + K)·w) (the loss, its gradient and Adam's
moments) plus tiles of rows × keys and the K·CHUNK gathered keys of one
row block, never O(L²). Time per round: one O(L²·w) pass plus at most
``MINE_EVERY`` steps of O(L·(N + K)·N·w).

Dense reference. ``negatives=None`` keeps the former dense loss, over every
pair j ∉ S_i from the full logits ℓ = Q Kᵀ (O(L²·N) memory, L ≲ 4096), with
the same rounds and streamed stopping test (each pass then only checks):
the small-L reference that the tests and ``python -m bench perf
--optimize`` compare the hard-negative loss against.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from jaxattn._src.base import HIGHEST, Factors
from jaxattn._src.lstsq import SHIFT_FACTOR, lstsq_shifted
from jaxattn._src.pattern import SparsePattern
from jaxattn._src.tiles import default_tiles, dot, pad_rows, row_blocks, support_stats, tile_mask

MAX_STEPS = 200
LEARNING_RATE = 0.05
SLACK = 0.25
NEGATIVES = 16   # K: hard negatives per row
MINE_EVERY = 10  # Adam steps per round between two mining passes
CHUNK = 32       # keys per chunk of the mining pass
MERGE_BLOCKS = 16  # at most this many key blocks per top-K merge of the mining pass
                   # (merging after every block made the pass markedly slower on the CPU)


class Training(NamedTuple):
  """optimize's training schedule (``optimize_run``): Adam's step size, its steps, the hard
  negatives it trains on and how often it re-mines them."""

  train_keys: bool = True            # keys move too (else only the queries)
  max_steps: int = MAX_STEPS         # Adam steps in all
  learning_rate: float = LEARNING_RATE
  negatives: int | None = NEGATIVES  # K per row (static); None: the dense loss, O(L²·N) memory
  mine_every: int = MINE_EVERY       # Adam steps per round between two mining passes


class OptimizeResult(NamedTuple):
  """Factors after optimisation, the Adam steps and streamed passes taken, whether they passed."""

  queries: Float[Array, "L w"]
  keys: Float[Array, "L w"]
  steps: Int[Array, ""]
  passed: Bool[Array, ""]
  passes: Int[Array, ""]  # streamed passes (mining and check): 1 if the lstsq start passed


class Mined(NamedTuple):
  """Output of ``mine``: each row's hard negatives and its streamed figures."""

  negatives: Int[Array, "L K"]  # column indices of the K largest off-support logits, largest first
  valid: Bool[Array, "L K"]     # False where the row has fewer than K off-support columns
  spread: Float[Array, " L"]     # spread_i (docs/definitions.md)
  gap: Float[Array, " L"]        # gap_i = max_{j∉S_i} ℓ_ij − min_{j∈S_i} ℓ_ij


def merge_chunk_maxima(carry: tuple[Float[Array, "R k"], Int[Array, "R k"]],
                       maxima: Float[Array, "R G P"], start: Int[Array, " G"], chunk: int,
                       kept: int) -> tuple[Float[Array, "R k"], Int[Array, "R k"]]:
  """Per row, the ``kept`` largest chunk maxima, and their chunk ids, of the kept ``carry`` and
  the maxima of a group of G key blocks (P chunks each) starting at keys ``start``."""
  rows, group, per_block = maxima.shape
  ids = start[:, None] // chunk + jnp.arange(per_block, dtype=jnp.int32)  # [group, per_block]
  ids = jnp.broadcast_to(ids.reshape(-1), (rows, group * per_block))
  values, order = jax.lax.top_k(jnp.concatenate([carry[0], maxima.reshape(rows, -1)], 1), kept)
  return values, jnp.take_along_axis(jnp.concatenate([carry[1], ids], 1), order, 1)


def negatives_in_chunks(q: Float[Array, "R w"], keys: Float[Array, "P w"],
                        chunk_ids: Int[Array, "R k"], cols: Int[Array, "R N"],
                        valid: Bool[Array, "R N"], chunk: int, count: int, length: int,
                        causal: tuple[Int[Array, " R"], Float[Array, "R k"]] | None = None
                        ) -> tuple[Int[Array, "R K"], Bool[Array, "R K"]]:
  """The ``count`` largest off-support logits of each row among the keys of its kept chunks
  (columns, largest first) and whether each exists (rows with fewer off-support columns).
  ``causal`` = (each row's index i, its kept chunk maxima): only the columns j ≤ i, of chunks
  whose maximum is finite (an early row sees fewer chunks than it keeps; the rest are padding
  that may repeat a chunk)."""
  rows = q.shape[0]
  columns = (chunk_ids[:, :, None] * chunk + jnp.arange(chunk)).reshape(rows, -1)
  logits = jnp.einsum("rw,rcw->rc", q, keys[columns], precision=HIGHEST)
  in_support = jnp.any((columns[:, :, None] == cols[:, None, :]) & valid[:, None, :], -1)
  outside = (columns < length) & ~in_support
  if causal is not None:
    row_index, chunk_max = causal
    seen = jnp.repeat(jnp.isfinite(chunk_max), chunk, axis=1)
    outside = outside & (columns <= row_index[:, None]) & seen
  values, order = jax.lax.top_k(jnp.where(outside, logits, -jnp.inf), count)
  negatives = jnp.minimum(jnp.take_along_axis(columns, order, 1), length - 1)
  return negatives, jnp.isfinite(values)


def mine(queries: Float[Array, "L w"], keys: Float[Array, "L w"], pattern: SparsePattern,
         count: int, *, block_size: int | None = None, row_block: int | None = None,
         merge_blocks: int = MERGE_BLOCKS, causal: bool = False) -> Mined:
  """H_i = the ``count`` largest ℓ_ij over j ∉ S_i (ℓ = Q Kᵀ), with spread_i and gap_i, in one pass
  (``causal``: over j ≤ i, j ∉ S_i, the keys j > i masked as in ``ja.verify``'s causal pass).

  Streams over key blocks of ``block_size`` (rounded up to whole chunks) in
  row blocks of ``row_block`` (defaults: ``default_tiles()``), keeping per
  row the ``count`` largest maxima of chunks of ``CHUNK`` keys, merged per
  group of at most ``merge_blocks`` key blocks (module docstring,
  ``merge_chunk_maxima``), then the negatives among the kept chunks' keys
  (``negatives_in_chunks``); memory O(L·(N + count + w) + tile + row_block·count·CHUNK·w).
  A dense row (``SparsePattern.dense``) is taken at q_i = 0, where ``optimize_run`` holds it:
  spread 0 (its one placeholder slot) and gap −∞.
  """
  length, width = keys.shape
  dtype = queries.dtype
  default_rows, default_keys = default_tiles()
  chunk = min(CHUNK, length)
  block = math.ceil(min(block_size or default_keys, length) / chunk) * chunk
  n_blocks = math.ceil(length / block)
  per_block = block // chunk
  kept = min(count, n_blocks * per_block)  # chunks kept per row
  count = min(count, length)
  rows = min(row_block or default_rows, length)
  n_row_blocks = math.ceil(length / rows)
  # Blocks per merge: a divisor of n_blocks, at most half of them (a single group, a scan of
  # length 1, made the pass slower than merging every block on the CPU, L = 1024–8192).
  group = max(g for g in range(1, min(merge_blocks, max(1, n_blocks // 2)) + 1)
              if n_blocks % g == 0)
  padded_keys = pad_rows(keys, n_blocks * block)
  key_blocks = padded_keys.reshape(n_blocks // group, group, block, width)
  starts = (jnp.arange(n_blocks, dtype=jnp.int32) * block).reshape(n_blocks // group, group)
  ones = jnp.ones((width, 1), dtype)

  def one_row_block(args):
    q, cols, valid, log_w, dense, index = args
    support = support_stats(q, keys, cols, log_w, valid, ones, ones[0])
    spread, support_min = support.spread, support.minimum

    def chunk_maxima(k, start):
      tile = dot(q, k, dtype) + tile_mask(cols, valid, start, block, length, dtype, None, index)
      return jnp.max(tile.reshape(rows, per_block, chunk), -1)

    def key_group(carry, inputs):
      k, start = inputs
      maxima = jnp.moveaxis(jax.lax.map(lambda a: chunk_maxima(*a), (k, start)), 0, 1)
      return merge_chunk_maxima(carry, maxima, start, chunk, kept), None

    init = (jnp.full((rows, kept), -jnp.inf, dtype), jnp.zeros((rows, kept), jnp.int32))
    (chunk_max, chunk_ids), _ = jax.lax.scan(key_group, init, (key_blocks, starts))
    negatives, found = negatives_in_chunks(q, padded_keys, chunk_ids, cols, valid, chunk, count,
                                           length, None if index is None else (index, chunk_max))
    gap = chunk_max[:, 0] - support_min[0]
    return Mined(negatives, found, spread[0], gap if dense is None else
                 jnp.where(dense, -jnp.inf, gap))  # q_i = 0 (frozen): spread 0, nothing outside

  mined = jax.lax.map(one_row_block, row_blocks(queries, pattern, n_row_blocks, rows, dtype,
                                                jnp.arange(length) if causal else None))
  return jax.tree.map(lambda x: x.reshape(n_row_blocks * rows, *x.shape[2:])[:length], mined)


def outside_logits(queries: Float[Array, "L w"], keys: Float[Array, "L w"],
                   pattern: SparsePattern, mined: Mined | None, causal: bool = False
                   ) -> tuple[Float[Array, "L M"], Bool[Array, "L M"]]:
  """(ℓ_ij, whether j ∉ S_i) for the columns j the zeros terms see: the mined negatives
  H_i (M = K, gathered keys, O(L·K·w)), or with ``mined=None`` every column (M = L, ℓ = Q Kᵀ;
  ``causal``: the columns j ≤ i only)."""
  if mined is not None:
    logits = jnp.einsum("lw,lkw->lk", queries, keys[mined.negatives], precision=HIGHEST)
    return logits, mined.valid
  length = pattern.length
  rows = jnp.broadcast_to(jnp.arange(length)[:, None], pattern.cols.shape)
  in_support = jnp.zeros((length, length), bool).at[rows, pattern.cols].max(pattern.valid)
  visible = jnp.tri(length, dtype=bool) if causal else True
  return jnp.matmul(queries, keys.T, precision=HIGHEST), ~in_support & visible


def excess(queries: Float[Array, "L w"], keys: Float[Array, "L w"], pattern: SparsePattern,
           eps1, eps2, slack, mined: Mined | None = None, causal: bool = False
           ) -> tuple[Float[Array, "L N N"], Float[Array, "L M N"]]:
  """By how much each pair exceeds its threshold with margin slack·ln(1 + ε1); −inf where no pair.

  Ratios: r_is − r_is' − (1 − slack) ln(1 + ε1) for s, s' ∈ S_i.
  Zeros:  ℓ_ij − ℓ_is − ln ε2 + slack ln(1 + ε1) for s ∈ S_i and j ∈ H_i (``mined``), or every
  j ∉ S_i (``mined=None``, dense): then both conditions hold with that margin iff every entry
  is ≤ 0.
  """
  dtype = queries.dtype
  support = jnp.einsum("lw,lkw->lk", queries, keys[pattern.cols], precision=HIGHEST)
  outside, outside_valid = outside_logits(queries, keys, pattern, mined, causal)
  valid = pattern.sparse_valid  # a dense row has no terms: its gradient is 0, q_i stays 0
  margin = jnp.asarray(slack * jnp.log1p(eps1), dtype)
  shifted = support - pattern.log_weights.astype(dtype)
  ratio = shifted[:, :, None] - shifted[:, None, :] - (jnp.log1p(eps1).astype(dtype) - margin)
  ratio = jnp.where(valid[:, :, None] & valid[:, None, :], ratio, -jnp.inf)
  zeros = outside[:, :, None] - support[:, None, :] - (jnp.log(eps2).astype(dtype) - margin)
  zeros = jnp.where(outside_valid[:, :, None] & valid[:, None, :], zeros, -jnp.inf)
  return ratio, zeros


def loss(queries, keys, pattern: SparsePattern, mined: Mined | None, eps1, eps2,
         causal: bool = False) -> Float[Array, ""]:
  """Squared hinge of ``excess`` (mined negatives, or dense) at margin ``SLACK``·ln(1 + ε1), / L."""
  hinge = lambda x: jnp.sum(jnp.square(jax.nn.relu(x)))
  ratio, zeros = excess(queries, keys, pattern, eps1, eps2, SLACK, mined, causal)
  return (hinge(ratio) + hinge(zeros)) / pattern.length


def stopping_test(mined: Mined, eps1, eps2, slack=SLACK / 2) -> Bool[Array, ""]:
  """The stopping test: max_i spread_i ≤ (1 − slack) ln(1 + ε1) and
  max_i gap_i ≤ ln ε2 − slack ln(1 + ε1)."""
  margin = slack * jnp.log1p(eps1)
  return ((jnp.max(mined.spread) <= jnp.log1p(eps1) - margin)
          & (jnp.max(mined.gap) <= jnp.log(eps2) - margin))


def mined_check(params: tuple[Float[Array, "L w"], Float[Array, "L w"]], pattern: SparsePattern,
                negatives: int, eps1, eps2, evaluate, block_size: int | None,
                row_block: int | None, causal: bool = False) -> tuple[Mined, Bool[Array, ""]]:
  """One streamed pass of ``optimize_run``: ``mine`` on the factors rounded to the evaluation
  dtype, and its ``stopping_test``."""
  queries, keys = (x.astype(evaluate) for x in params)
  mined = mine(queries, keys, pattern, negatives, block_size=block_size, row_block=row_block,
               causal=causal)
  return mined, stopping_test(mined, eps1, eps2)


def train_round(value_and_grad, optimizer, mask, params, opt_state, mined: Mined, budget):
  """≤ ``budget`` Adam steps on the mined set, stopping where its loss is 0; the steps taken.

  ``value_and_grad(params, mined)``: the loss and its gradient; ``mask``: per factor, 1 on the
  columns that move, 0 elsewhere (``optimize_run``).
  """
  import optax

  def step(state):
    taken, params, opt_state, _ = state
    value, grads = value_and_grad(params, mined)
    updates, new_state = optimizer.update(grads, opt_state, params)
    updates = jax.tree.map(lambda u, m: u * m, updates, mask)
    moved = value > 0
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(moved, a, b), new, old)
    return (taken + moved, keep(optax.apply_updates(params, updates), params),
            keep(new_state, opt_state), value)

  active = lambda state: (state[0] < budget) & (state[3] > 0)
  init = (jnp.zeros((), jnp.int32), params, opt_state, jnp.asarray(jnp.inf, params[0].dtype))
  taken, params, opt_state, _ = jax.lax.while_loop(active, step, init)
  return params, opt_state, taken


def rounds_left(state, max_steps: int, mine_every: int) -> Bool[Array, ""]:
  """Whether ``optimize_run`` goes on: passes and steps are left, and the last pass failed."""
  passes, steps, _, _, _, passed = state
  return (passes <= math.ceil(max_steps / mine_every)) & (steps < max_steps) & ~passed


def optimize_run(key: PRNGKeyArray, pattern: SparsePattern, d: Int[Array, ""] | int, width: int,
                 eps1, eps2, *, dtype=None, training: Training = Training(),
                 block_size: int | None = None, row_block: int | None = None,
                 causal: bool = False) -> OptimizeResult:
  """Adam on ``loss`` from the ``lstsq`` factors, in rounds of ≤ ``mine_every`` steps between
  streamed mining passes, in one ``lax.while_loop`` (jit- and vmap-able; static shapes).

  The start is ``lstsq`` if it already passes (0 steps, 1 pass), and
  otherwise ``lstsq`` at the shift c_i = c_jl,i (``shift_factor=1``):
  logits of order ln(1/(ε2 a_min)), the scale Adam's fixed step size suits
  (from lstsq's 32× larger logits it needs more steps and stalls).

  The first round trains on the negatives mined from the lstsq start (the pass that checked
  it). Only the first d columns move (the rest stay zero); keys move only if ``train_keys``
  (``training``: ``Training``). ``negatives``: K hard negatives per row (static), or None for
  the dense loss (O(L²·N) memory). Each round trains until the loss on its mined set is 0 or
  ``mine_every`` steps (``train_round``), then ``mine`` re-mines and checks (``mined_check``);
  the loop stops at the first pass whose ``stopping_test`` holds, or after ``max_steps`` steps (or
  1 + ⌈max_steps/mine_every⌉ passes, ``rounds_left``) in all. ``block_size``, ``row_block``:
  the pass's tiles; ``causal``: negatives, dense loss and stopping test over j ≤ i only.
  """
  import optax  # here, not at the top: importing jaxattn or the verifier does not load optax

  train_keys, max_steps, learning_rate, negatives, mine_every = training
  if negatives is not None and negatives < 1 or mine_every < 1:
    raise ValueError(f"need negatives >= 1 (or None) and mine_every >= 1, got negatives="
                     f"{negatives}, mine_every={mine_every}")
  check = functools.partial(mined_check, pattern=pattern, negatives=negatives or 1, eps1=eps1,
                            eps2=eps2, evaluate=pattern.weights.dtype if dtype is None else dtype,
                            block_size=block_size, row_block=row_block, causal=causal)
  # Both starts from one factorisation: two independent LAPACK solves could run
  # at once and deadlock XLA's CPU thread pool (``min_norm_solve``).
  (start, moderate), keys = lstsq_shifted(key, pattern, d, width, eps1, eps2,
                                          (SHIFT_FACTOR, 1.0), dtype=dtype)
  columns = (jnp.arange(width) < d).astype(start.dtype)
  mask = (columns, columns if train_keys else jnp.zeros_like(columns))
  optimizer = optax.adam(learning_rate)
  value_and_grad = jax.value_and_grad(lambda p, mined: loss(
      p[0], p[1], pattern, None if negatives is None else mined, eps1, eps2, causal))

  def body(state):
    """A round: train (not before the first pass, which checks the lstsq start), mine, check;
    after a failed first pass, the moderate start (with the negatives mined from lstsq)."""
    passes, steps, params, opt_state, mined, _ = state
    budget = jnp.where(passes == 0, 0, jnp.minimum(mine_every, max_steps - steps))
    params, opt_state, taken = train_round(value_and_grad, optimizer, mask, params, opt_state,
                                           mined, budget)
    mined, passed = check(params)
    fallback = (passes == 0) & ~passed
    params = (jnp.where(fallback, moderate, params[0]), params[1])
    return passes + 1, steps + taken, params, opt_state, mined, passed

  params = (start, keys)
  zero = jnp.zeros((), jnp.int32)
  no_negatives = jax.eval_shape(check, params)[0]
  init = (zero, zero, params, optimizer.init(params),
          jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), no_negatives), jnp.asarray(False))
  more = functools.partial(rounds_left, max_steps=max_steps, mine_every=mine_every)
  passes, steps, (queries, keys), _, _, passed = jax.lax.while_loop(more, body, init)
  return OptimizeResult(queries, keys, steps, passed, passes)


def optimize_factors(key: PRNGKeyArray, pattern: SparsePattern, d: Int[Array, ""] | int,
                     width: int, eps1, eps2, *, dtype=None, causal: bool = False) -> Factors:
  """Factors of ``optimize`` (queries and keys trained, ``MAX_STEPS``, ``NEGATIVES`` hard
  negatives per row): ``optimize_run``'s Q, K; ``causal``: trained for a causal layer."""
  result = optimize_run(key, pattern, d, width, eps1, eps2, dtype=dtype, causal=causal)
  return result.queries, result.keys
