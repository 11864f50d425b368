"""Published sparse-attention masks as pattern families (Longformer, BigBird, Sparse Transformer,
Reformer).

A family is a frozen dataclass of its source's parameters; calling it draws a
pattern: ``family(key, length, a_min=1.0) -> SparsePattern``, jit-able with
the family and ``length`` static and vmappable over keys. Masks are binary
(every nonzero 1, a_min = 1) unless ``a_min < 1``, which draws weights
log-uniform in [a_min, 1] from the key.

Each family first lists, for every row i, candidate columns with a validity
flag (``candidates``); the union is then taken (duplicates dropped, columns
sorted) and the row-padded width is the family's row bound. Rows whose support is
every key (global tokens, BigBird's full-attention fallback) are held apart as
dense rows (``SparsePattern.dense``, ``dense_mask``: one flag and one placeholder
slot each rather than L slots); ``Bounds.dense_rows`` says how many there
are. A dense row is binary (A_ij = 1) also when ``a_min < 1``.

``bounds(length)`` reports the family's row and column bounds at L. The
theorem of Likhosherstov et al. covers a family whose bound N = max(row,
column) does not grow with L at fixed parameters (``Bounds.inside_theorem``);
the others are generated all the same and labelled outside it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int, PRNGKeyArray

from jaxattn._src.family import Bounds, Family, check_positive
from jaxattn._src.lsh import lsh_buckets, lsh_candidates


def row_index(length: int) -> Int[Array, "L 1"]:
  """The row indices i = 0 … L − 1 as a column."""
  return jnp.arange(length)[:, None]


@dataclasses.dataclass(frozen=True)
class Longformer(Family):
  """Sliding window with g global tokens (Beltagy, Peters & Cohan 2020, ``longformer-base-4096``).

  S_i = {j : |i − j| ≤ w} ∪ G (causal: {j : i − w ≤ j ≤ i} ∪ {j ∈ G : j ≤ i}),
  G = {0, …, g − 1} the global tokens (task tokens such as [CLS] come first).
  A global token's row attends every key (``global_rows``; non-causal only:
  a causal global row is already inside its window and G). Published:
  attention_window = 512, i.e. w = 256 on each side plus self (513 keys);
  Hugging Face halves attention_window the same way. Longformer gives global
  tokens their own projections Q_g, K_g; one fixed W_Q, W_K for all tokens
  is the stricter setting. ``global_rows=False`` keeps the global columns but
  gives global tokens' rows their window only (the cost of a global token to
  a fixed layer lies in its column: a binary dense row is met by q_i = 0).
  Row bound 2w + 1 + g (causal w + 1 + g); column bound L once g ≥ 1, else 2w + 1.
  """

  name: ClassVar[str] = "longformer"
  window: int = 256
  globals: int = 0
  causal: bool = False
  global_rows: bool = True

  def __post_init__(self):
    check_positive("window", self.window, 0)
    check_positive("globals", self.globals, 0)

  def candidates(self, key, length):
    del key
    ahead = 0 if self.causal else self.window
    cols = jnp.concatenate(
      [
        row_index(length) + jnp.arange(-self.window, ahead + 1),
        jnp.broadcast_to(jnp.arange(self.globals), (length, self.globals)),
      ],
      axis=-1,
    )
    valid = (cols >= 0) & (cols < length) & ((cols <= row_index(length)) | (not self.causal))
    return cols, valid

  def dense_mask(self, length):
    if self.global_rows and self.globals and not self.causal:
      return jnp.arange(length) < self.globals
    return None

  def bounds(self, length):
    band = self.window + 1 + (0 if self.causal else self.window)
    dense = min(self.globals, length) if self.global_rows and not self.causal else 0
    column = length if self.globals else min(band + dense, length)
    return Bounds(
      row=min(band + self.globals, length),
      column=column,
      dense_rows=dense,
      grows_with_length=self.globals > 0,
    )


@dataclasses.dataclass(frozen=True)
class BigBird(Family):
  """BigBird block-sparse attention (Zaheer et al. 2020; bigbird's ``full_bigbird_mask``).

  L = n·b in blocks of b tokens. Block row B ∉ {0, n − 1} attends blocks
  B − 1, B, B + 1 (window of 3), blocks 0 and n − 1 (global) and r random
  blocks, drawn per block row uniformly without replacement: by default among
  the blocks 1 … n − 2 outside its window (the paper's description, §2). With
  ``focus`` = F (1024 in the sources), among the candidates of google-research's
  ``bigbird_block_rand_mask(M, M, b, b, r, last_idx=F)`` (M = ``max_length``,
  4096): blocks 1 … F/b − 1 outside the window, all of them for the block rows
  M/b − 3 and M/b − 2, and blocks 3 … and 4 … for rows 1 and 2 (``focus_candidates``;
  tests/upstream.py ports it). That is what ``full_bigbird_mask`` draws, and what
  Hugging Face's ``BigBirdBlockSparseAttention`` draws in training for
  L ∈ {1024, 3072, 4096}; for other L it follows a per-length plan
  (``_bigbird_block_rand_mask_with_head``, not reproduced here), and in eval mode
  its recent versions draw no random blocks at all.
  Rows of blocks 0 and n − 1 attend every key (``global_rows``; with
  ``global_rows=False`` they follow the rule of the other block rows). As in
  Hugging Face ``modeling_big_bird.py``, L ≤ (5 + 2r)·b falls back to full
  attention (every row dense). Published: b = 64, r = 3 (Hugging Face
  configs); the original defaults b = 16, r = 3. Non-causal (an encoder).
  Row bound (5 + r)·b; column bound L (the global blocks).
  """

  name: ClassVar[str] = "bigbird"
  block: int = 64
  random_blocks: int = 3
  global_rows: bool = True
  focus: int | None = None
  max_length: int = 4096

  def __post_init__(self):
    check_positive("block", self.block)
    check_positive("random_blocks", self.random_blocks, 0)
    check_positive("max_length", self.max_length)
    if self.focus is not None:
      check_positive("focus", self.focus)

  def check_length(self, length):
    check_positive("length", length)
    if length % self.block:
      raise ValueError(f"bigbird needs length a multiple of block={self.block}, got {length}")

  def full(self, length: int) -> bool:
    """Whether L ≤ (5 + 2r)·b, where BigBird attends fully."""
    return length <= (5 + 2 * self.random_blocks) * self.block

  def block_columns(self, key: PRNGKeyArray, blocks: int) -> Int[Array, "n 5+r"]:
    """Per block row: blocks B − 1, B, B + 1, 0, n − 1 and r random blocks (−1, n: none)."""
    row = jnp.arange(blocks)[:, None]
    column = jnp.arange(blocks)[None, :]
    taken = (jnp.abs(column - row) <= 1) | (column == 0) | (column == blocks - 1)
    allowed = ~taken if self.focus is None else jnp.asarray(self.focus_candidates(blocks))
    scores = jnp.where(allowed, jax.random.uniform(key, (blocks, blocks)), jnp.inf)
    chosen = jnp.argsort(scores, axis=-1)[:, : self.random_blocks]
    chosen = jnp.where(jnp.take_along_axis(allowed, chosen, -1), chosen, -1)  # too few: none
    fixed = jnp.concatenate(
      [row + jnp.arange(-1, 2), jnp.broadcast_to(jnp.array([0, blocks - 1]), (blocks, 2))], axis=-1
    )
    return jnp.concatenate([fixed, chosen], axis=-1)

  def focus_candidates(self, blocks: int) -> np.ndarray:
    """bool [n, n]: the blocks block row B may draw with ``focus`` F, as google-research's
    ``bigbird_block_rand_mask(M, M, b, b, r, last_idx=F)`` lists them for rows 1 … n − 2 of its
    M/b: ``middle_seq[2:last]``, ``[3:last]``, ``[:last]`` for the rows M/b − 3 and M/b − 2,
    else ``middle_seq[:B − 2]`` and ``[B + 1:last]`` (none for rows 0 and n − 1)."""
    total, focus = self.max_length // self.block, self.focus or self.max_length
    last = focus // self.block - 1 if focus > 2 * self.block else total - 1
    allowed = np.zeros((blocks, blocks), bool)
    middle = np.arange(1, total - 1)
    for b in range(1, min(blocks - 1, total - 1)):
      if b in (1, 2):
        picks = middle[b + 1 : last]
      elif b in (total - 3, total - 2) or b - 2 > last:
        picks = middle[:last]
      elif b + 1 == last:
        picks = middle[: b - 2]
      else:
        picks = np.concatenate([middle[: b - 2], middle[b + 1 : last]])
      allowed[b, picks[picks < blocks]] = True
    return allowed

  def candidates(self, key, length):
    if self.full(length):  # every row dense (``dense_mask``): one placeholder slot each
      return row_index(length), jnp.ones((length, 1), bool)
    blocks = length // self.block
    chosen = self.block_columns(key, blocks)
    cols = (chosen[:, :, None] * self.block + jnp.arange(self.block)).reshape(blocks, -1)
    cols = jnp.repeat(cols, self.block, axis=0)
    return cols, (cols >= 0) & (cols < length)

  def dense_mask(self, length):
    if self.full(length):
      return jnp.ones(length, bool)
    if not self.global_rows:
      return None
    row_block = jnp.arange(length) // self.block
    return (row_block == 0) | (row_block == length // self.block - 1)

  def bounds(self, length):
    if self.full(length):
      return Bounds(row=length, column=length, dense_rows=length, grows_with_length=True)
    return Bounds(
      row=min((5 + self.random_blocks) * self.block, length),
      column=length,
      dense_rows=2 * self.block if self.global_rows else 0,
      grows_with_length=True,
    )


def _stride(value: int | None, length: int) -> int:
  """``value``, or round(√L) when None."""
  return max(1, round(math.sqrt(length))) if value is None else value


@dataclasses.dataclass(frozen=True)
class SparseTransformerStrided(Family):
  """Strided attention of the Sparse Transformer (Child, Gray, Radford & Sutskever 2019).

  S_i = A1 ∪ A2 with A1 = {max(0, i − l), …, i} and A2 = {j ≤ i : (i − j) mod l = 0};
  l = round(√L) unless ``stride`` is given. Causal, as in the source;
  ``causal=False`` (not in the source) takes A1 = {j : |i − j| ≤ l} and
  A2 = {j : (i − j) mod l = 0}. Row and column bounds l + ⌊(L − 1)/l⌋
  (non-causal 2l − 2 + ⌈L/l⌉): N ≈ 2√L grows with L.
  """

  name: ClassVar[str] = "sparse_transformer_strided"
  stride: int | None = None
  causal: bool = True

  def __post_init__(self):
    if self.stride is not None:
      check_positive("stride", self.stride)

  def candidates(self, key, length):
    del key
    stride = _stride(self.stride, length)
    steps = jnp.arange(-(-length // stride))
    rows = row_index(length)
    if self.causal:
      cols = jnp.concatenate([rows + jnp.arange(-stride, 1), rows - steps * stride], axis=-1)
    else:
      cols = jnp.concatenate(
        [rows + jnp.arange(-stride, stride + 1), rows % stride + steps * stride], axis=-1
      )
    valid = (cols >= 0) & (cols < length) & ((cols <= rows) | (not self.causal))
    return cols, valid

  def bounds(self, length):
    stride = _stride(self.stride, length)
    if self.causal:
      count = stride + (length - 1) // stride
    else:
      count = 2 * stride - 2 + -(-length // stride)
    count = min(count, length)
    return Bounds(row=count, column=count, dense_rows=0, grows_with_length=True)


@dataclasses.dataclass(frozen=True)
class SparseTransformerFixed(Family):
  """Fixed attention of the Sparse Transformer (Child et al. 2019).

  S_i = A1 ∪ A2 with A1 = {j : ⌊j/l⌋ = ⌊i/l⌋} and A2 = {j : j mod l ∈ {l − c, …, l − 1}}
  (the c summary columns of every block), both restricted to j ≤ i (causal,
  as in the source; ``causal=False`` is not in the source). The source uses
  l = 128 and c ∈ {8, 16, 32}. Row bound l + c·(⌈L/l⌉ − 1); the summary
  columns are attended by every later row: column bound L.
  """

  name: ClassVar[str] = "sparse_transformer_fixed"
  block: int = 128
  summary: int = 8
  causal: bool = True

  def __post_init__(self):
    check_positive("block", self.block)
    check_positive("summary", self.summary)
    if self.summary > self.block:
      raise ValueError(f"summary={self.summary} must be <= block={self.block}")

  def candidates(self, key, length):
    del key
    rows = row_index(length)
    own = rows // self.block * self.block + jnp.arange(self.block)
    starts = jnp.arange(-(-length // self.block)) * self.block + self.block - self.summary
    summaries = (starts[:, None] + jnp.arange(self.summary)).reshape(-1)
    cols = jnp.concatenate([own, jnp.broadcast_to(summaries, (length, summaries.size))], axis=-1)
    valid = (cols < length) & ((cols <= rows) | (not self.causal))
    return cols, valid

  def bounds(self, length):
    row = min(self.block + self.summary * (-(-length // self.block) - 1), length)
    return Bounds(row=row, column=length, dense_rows=0, grows_with_length=True)


@dataclasses.dataclass(frozen=True)
class ReformerLSH(Family):
  """LSH attention of the Reformer (Kitaev, Kaiser & Levskaya 2020), on random shared query-keys.

  Token vectors x_j ∈ R^D (D = ``dim``) are standard Gaussian (Reformer
  shares queries and keys), hashed into ``buckets`` buckets by random
  rotations in each of ``hashes`` rounds (``lsh_buckets``); attention sets
  as in ``lsh_candidates`` (``per_round_look_back``: a round's first chunk
  looks back within its round, not at the previous round's last chunk).
  ``buckets``: an even count, or even factors (f_1, …, f_k) of a factorised
  hash of f_1·…·f_k buckets (``hash_rotated``; spec ``buckets=64x128``).
  Requires L a multiple of ``chunk``. Published (Hugging Face configs):
  ``google/reformer-enwik8`` chunk 256, 512 buckets, 4 hashes, causal;
  ``google/reformer-crime-and-punishment`` chunk 64, ``num_buckets = [64, 128]``
  (a factorised hash of 64 × 128 = 8192 buckets, ``buckets=64x128``), 1 hash,
  causal (a language model). Row bound H·(2c − 1), column bound H·(2c − 1) + 1
  (a token left alone attends itself): fixed in L.
  """

  name: ClassVar[str] = "reformer_lsh"
  chunk: int = 64
  buckets: int | tuple[int, ...] = 64
  hashes: int = 1
  causal: bool = False
  mask_buckets: bool = True
  dim: int = 64
  per_round_look_back: bool = False

  def __post_init__(self):
    for name in ("chunk", "hashes", "dim"):
      check_positive(name, getattr(self, name))
    for factor in (self.buckets,) if isinstance(self.buckets, int) else self.buckets:
      check_positive("buckets", factor)
      if factor % 2:
        raise ValueError(f"buckets must be even (each factor), got {self.buckets}")

  def check_length(self, length):
    check_positive("length", length)
    if length % self.chunk:
      raise ValueError(f"reformer_lsh needs length a multiple of chunk={self.chunk}, got {length}")

  def candidates(self, key, length):
    k_vectors, k_hash = jax.random.split(key)
    vectors = jax.random.normal(k_vectors, (length, self.dim))
    buckets = lsh_buckets(k_hash, vectors, self.buckets, self.hashes)
    return lsh_candidates(
      buckets, self.chunk, self.causal, self.mask_buckets, self.per_round_look_back
    )

  def bounds(self, length):
    per_round = min(2, length // self.chunk) * self.chunk - 1
    row = min(self.hashes * per_round, length)
    return Bounds(
      row=max(row, 1),
      column=min(self.hashes * per_round + 1, length),
      dense_rows=0,
      grows_with_length=False,
    )


FAMILIES: dict[str, type[Family]] = {
  f.name: f
  for f in (Longformer, BigBird, SparseTransformerStrided, SparseTransformerFixed, ReformerLSH)
}
_SPEC = re.compile(r"^(\w+)(?:\((.*)\))?$")


def _spec_value(text: str) -> int | tuple[int, ...] | bool | None:
  lowered = text.strip().lower()
  if lowered in ("true", "false"):
    return lowered == "true"
  if lowered == "none":
    return None
  try:
    values = tuple(int(part) for part in lowered.split("x"))
  except ValueError:
    raise ValueError(
      f"expected an integer, integers joined by x (64x128), true, false or none, "
      f"got {text.strip()!r}"
    ) from None
  return values[0] if len(values) == 1 else values


def family_from_spec(spec: str) -> Family:
  """The family named ``name`` or ``name(field=value, ...)``, as ``longformer(window=8,globals=2)``.

  ValueError naming the unknown family, field or bad value.
  """
  match = _SPEC.match(spec.replace(" ", "")) if isinstance(spec, str) else None
  if not match or match.group(1) not in FAMILIES:
    raise ValueError(
      f"unknown published family {spec!r}; choose from {sorted(FAMILIES)}, "
      "optionally with (field=value, ...)"
    )
  family = FAMILIES[match.group(1)]
  fields = {f.name for f in dataclasses.fields(family)}
  values = {}
  for item in filter(None, (match.group(2) or "").split(",")):
    name, _, value = item.partition("=")
    if name not in fields:
      raise ValueError(f"{family.name} has no field {name!r}; fields: {sorted(fields)}")
    values[name] = _spec_value(value)
  return family(**values)
