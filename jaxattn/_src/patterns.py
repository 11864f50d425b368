"""Pattern generators: ``f(key, length, nnz, a_min) -> SparsePattern``.

Every generator is a pure function of its key, jit-able with ``length`` and
``nnz`` static, and vmappable over keys. Nonzero weights are log-uniform in
[a_min, 1]: ln A_ij ~ U(ln a_min, 0), so every row's ratio min/max ≥ a_min.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int, PRNGKeyArray

from jaxattn._src.pattern import SparsePattern, from_rows, log_uniform
from jaxattn._src.published import family_from_spec

_static = functools.partial(jax.jit, static_argnames=("length", "nnz", "a_min"))


def _check(length: int, nnz: int, a_min: float) -> None:
  if length < 1 or nnz < 1 or nnz > length:
    raise ValueError(f"need 1 <= nnz <= length, got length={length}, nnz={nnz}")
  if not 0 < a_min <= 1:
    raise ValueError(f"a_min must be in (0, 1], got {a_min}")


def _with_weights(
  cols: Int[Array, "L N"], valid: Bool[Array, "L N"], key: PRNGKeyArray, a_min: float
) -> SparsePattern:
  """Pattern on ``cols`` (where ``valid``) with weights log-uniform in [a_min, 1]."""
  return from_rows(cols, log_uniform(key, cols.shape, a_min), valid)


@_static
def random_regular(key: PRNGKeyArray, length: int, nnz: int, a_min: float = 0.1) -> SparsePattern:
  """Random pattern with exactly N distinct nonzeros in every row and every column.

  S_i = {π₂((π₁(i) + s_k) mod L) : k < N} for random permutations π₁, π₂ and N
  distinct random shifts s_k: a relabelled circulant, so row i and column j
  each meet exactly N nonzeros. Weights log-uniform in [a_min, 1].
  Row bound: N. Column bound: N.
  """
  _check(length, nnz, a_min)
  k_rows, k_cols, k_shift, k_w = jax.random.split(key, 4)
  rows_perm = jax.random.permutation(k_rows, length)
  cols_perm = jax.random.permutation(k_cols, length)
  shifts = jax.random.choice(k_shift, length, (nnz,), replace=False)
  cols = cols_perm[(rows_perm[:, None] + shifts[None, :]) % length]
  return _with_weights(cols, jnp.ones(cols.shape, bool), k_w, a_min)


@_static
def random_causal(key: PRNGKeyArray, length: int, nnz: int, a_min: float = 0.1) -> SparsePattern:
  """Random causal pattern: S_i = {i} plus up to N − 1 distinct earlier columns (docs/definitions.md
  §3, causal layers).

  Slot 0 is the diagonal i; slot k ≥ 1 holds σ_k(i) for an independent random
  permutation σ_k of 0..L−1, kept when σ_k(i) < i and not already in the row.
  Each σ_k meets every column once, so a column holds at most N nonzeros (the
  diagonal and one per σ_k): row bound N, column bound N. Row i keeps about
  1 + (N − 1)·i/L of its slots (a causal pattern with exactly N per row and
  column cannot exist for N ≥ 2). Weights log-uniform in [a_min, 1].
  """
  _check(length, nnz, a_min)
  k_perm, k_w = jax.random.split(key)
  rows = jnp.arange(length)
  perms = jax.vmap(lambda k: jax.random.permutation(k, length))(
    jax.random.split(k_perm, nnz - 1)
  )  # [N − 1, L]
  cols = jnp.concatenate([rows[:, None], perms.T], axis=1)  # [L, N]
  earlier = (cols < rows[:, None]).at[:, 0].set(True)
  repeated = jnp.triu(cols[:, :, None] == cols[:, None, :], 1).any(1)  # equals a slot before it
  return _with_weights(cols, earlier & ~repeated, k_w, a_min)


@functools.partial(jax.jit, static_argnames=("length", "nnz", "a_min", "keep"))
def random_sparse(
  key: PRNGKeyArray, length: int, nnz: int, a_min: float = 0.1, keep: float = 0.5
) -> SparsePattern:
  """Random pattern whose rows have between 1 and N nonzeros.

  ``random_regular`` with each slot but the first kept with probability ``keep``.
  Row bound: N (at least 1). Column bound: N.
  """
  if not 0 <= keep <= 1:
    raise ValueError(f"keep must be in [0, 1], got {keep}")
  k_pattern, k_keep = jax.random.split(key)
  full = random_regular(k_pattern, length, nnz, a_min)
  valid = jax.random.bernoulli(k_keep, keep, full.valid.shape).at[:, 0].set(True)
  return from_rows(full.cols, full.weights, valid)


@_static
def banded(key: PRNGKeyArray, length: int, nnz: int, a_min: float = 0.1) -> SparsePattern:
  """Local window: row i attends to j ∈ [i − ⌊(N−1)/2⌋, i + ⌈(N−1)/2⌉] ∩ [0, L).

  The key draws only the weights. Row bound: N (fewer at the edges).
  Column bound: N.
  """
  _check(length, nnz, a_min)
  cols = jnp.arange(length)[:, None] - (nnz - 1) // 2 + jnp.arange(nnz)[None, :]
  in_range = (cols >= 0) & (cols < length)
  return _with_weights(jnp.clip(cols, 0, length - 1), in_range, key, a_min)


@_static
def block_diagonal(key: PRNGKeyArray, length: int, nnz: int, a_min: float = 0.1) -> SparsePattern:
  """Dense N×N blocks on the diagonal (the last block is L mod N if N ∤ L).

  The key draws only the weights. Row bound: N. Column bound: N.
  """
  _check(length, nnz, a_min)
  cols = (jnp.arange(length) // nnz * nnz)[:, None] + jnp.arange(nnz)[None, :]
  in_range = cols < length
  return _with_weights(jnp.minimum(cols, length - 1), in_range, key, a_min)


@functools.partial(jax.jit, static_argnames=("length", "nnz", "a_min", "stride"))
def strided(
  key: PRNGKeyArray, length: int, nnz: int, a_min: float = 0.1, stride: int | None = None
) -> SparsePattern:
  """Strided attention: S_i = {(i + k·stride) mod L : k < N}, stride = ⌊L/N⌋ by default.

  The key draws only the weights. Row bound: N. Column bound: N.
  Raises ValueError if the N offsets k·stride are not distinct mod L.
  """
  _check(length, nnz, a_min)
  stride = length // nnz if stride is None else stride
  offsets = [k * stride % length for k in range(nnz)]
  if len(set(offsets)) != nnz:
    raise ValueError(f"stride={stride} gives repeated offsets mod length={length} for nnz={nnz}")
  cols = (jnp.arange(length)[:, None] + jnp.asarray(offsets)[None, :]) % length
  return _with_weights(cols, jnp.ones(cols.shape, bool), key, a_min)


GENERATORS = {
  "random_regular": random_regular,
  "random_causal": random_causal,
  "random_sparse": random_sparse,
  "banded": banded,
  "block_diagonal": block_diagonal,
  "strided": strided,
}
CAUSAL_GENERATORS = frozenset({"random_causal"})  # causal by construction


def is_causal(family: str) -> bool:
  """Whether every pattern of ``family`` is causal, S_i ⊆ {0, …, i} (docs/definitions.md §3), by
  construction: ``CAUSAL_GENERATORS``, or a published spec whose family is causal
  (``sparse_transformer_strided``, ``longformer(window=4,causal=true)``). ValueError for an
  unknown family."""
  if family in GENERATORS:
    return family in CAUSAL_GENERATORS
  return bool(getattr(family_from_spec(family), "causal", False))


@dataclasses.dataclass(frozen=True)
class Sampler:
  """``key -> pattern`` of a named family at (length, nnz, a_min), hashable by value.

  ``family`` is a key of ``GENERATORS`` (``GENERATORS[family](key, length, nnz,
  a_min)``) or a published family spec such as ``"longformer(window=8,globals=2)"``
  (``family_from_spec(family)(key, length, a_min)``), whose ``nnz`` must be the
  family's width at that length (``family_from_spec(family).width(length)``).
  Pass it to ``ja.min_d``: equal samplers share one compiled search, whereas
  every new ``functools.partial`` would compile again.
  """

  family: str
  length: int
  nnz: int
  a_min: float = 0.1

  def __post_init__(self):
    if self.family in GENERATORS:
      _check(self.length, self.nnz, self.a_min)
      return
    try:
      published = family_from_spec(self.family)
    except ValueError as error:
      raise ValueError(
        f"unknown pattern family {self.family!r}; choose from "
        f"{sorted(GENERATORS)} or a published family ({error})"
      ) from None
    width = published.width(self.length)
    if self.nnz != width:
      raise ValueError(f"{self.family} at length={self.length} has nnz={width}, got nnz={self.nnz}")
    _check(self.length, self.nnz, self.a_min)

  def __call__(self, key: PRNGKeyArray) -> SparsePattern:
    if self.family in GENERATORS:
      return GENERATORS[self.family](key, length=self.length, nnz=self.nnz, a_min=self.a_min)
    return family_from_spec(self.family)(key, self.length, self.a_min)
