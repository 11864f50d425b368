"""jl_dim: the provable dimension of the paper's construction; pattern_bits: the counting bound."""

import functools
import itertools
import math

import jax
import numpy as np
import pytest

import jaxattn as ja


def test_jl_dim_is_the_smallest_d_meeting_the_union_bound():
  length, nnz, eps1, eps2, a_min, delta = 256, 2, 0.5, 0.5, 0.2, 0.1
  d = ja.theory.jl_dim(length, nnz, eps1=eps1, eps2=eps2, a_min=a_min, delta=delta)
  eps = (math.log1p(eps1) / 2) / (
    math.sqrt(nnz) * (math.log1p(eps1) + math.log(1 / (eps2 * a_min)))
  )
  failure = lambda d: length**2 * ja.theory.jl_inner_product_failure(d, eps)
  assert failure(d) <= delta < failure(d - 1)


def test_jl_dim_grows_like_log_l():
  dims = [ja.theory.jl_dim(2**k, 2, eps1=0.5, eps2=0.5, a_min=0.2) for k in range(5, 17)]
  steps = [b - a for a, b in zip(dims, dims[1:])]
  assert all(s > 0 for s in steps)
  assert max(steps) - min(steps) <= 1  # linear in ln L: constant step per doubling
  dim = functools.partial(ja.theory.jl_dim, eps2=0.5, a_min=0.2)
  assert dim(1024, 4, eps1=0.5) > dim(1024, 2, eps1=0.5)
  assert dim(1024, 2, eps1=0.2) > dim(1024, 2, eps1=0.5)


@pytest.mark.parametrize(
  "args",
  [
    (0, 2, 0.5, 0.5, 0.2),
    (8, 2, 0.0, 0.5, 0.2),
    (8, 2, 0.5, 1.0, 0.2),
    (8, 2, 0.5, 0.5, 0.0),
    (8, 2, 0.5, 0.5, 0.2, 1.0),
  ],
)
def test_bad_arguments(args):
  length, nnz, eps1, eps2, a_min, *delta = args
  with pytest.raises(ValueError):
    ja.theory.jl_dim(length, nnz, eps1=eps1, eps2=eps2, a_min=a_min, **dict(zip(["delta"], delta)))


def _circulant_codes(length: int, nnz: int) -> np.ndarray:
  """Every support random_regular can draw, as bit codes Σ 2^(L·i + j) over its ones (i, j).

  Row i of a draw holds the columns τ((σ(i) + s) mod L), s ∈ S, for permutations σ, τ and
  N distinct shifts S: enumerated over every σ, τ and every S ∋ 0 (S + c is the relabelling
  τ(· + c) of S, so S ∋ 0 loses nothing).
  """
  perms = np.array(list(itertools.permutations(range(length))))  # [P, L]
  codes = []
  for rest in itertools.combinations(range(1, length), nnz - 1):
    targets = (perms[:, :, None] + np.array((0, *rest))) % length  # [σ, i, s]
    cols = perms[np.arange(len(perms))[:, None, None, None], targets[None]]  # [τ, σ, i, s]
    bits = np.left_shift(np.int64(1), length * np.arange(length)[:, None] + cols)
    codes.append(np.unique(bits.sum(axis=(-2, -1))))
  return np.unique(np.concatenate(codes))


def _regular_count(length: int, nnz: int) -> int:
  """The exact number of L×L 0-1 matrices with all row and column sums N, row by row; the state
  counts the columns that still need k ones, k = 0..N."""

  @functools.lru_cache(maxsize=None)
  def count(state: tuple[int, ...]) -> int:
    if all(n == 0 for n in state[1:]):
      return 1
    total = 0
    for take in itertools.product(*(range(min(n, nnz) + 1) for n in state[1:])):
      if sum(take) == nnz:  # the next row's N ones: take[k−1] of them in columns needing k
        after = list(state)
        for k, c in enumerate(take, 1):
          after[k] -= c
          after[k - 1] += c
        total += math.prod(math.comb(n, c) for n, c in zip(state[1:], take)) * count(tuple(after))
    return total

  return count((0,) * nnz + (length,))


@pytest.mark.parametrize("length, nnz", [(length, nnz) for length in range(2, 7) for nnz in (1, 2)])
def test_pattern_bits_counts_random_regular_supports_exactly(length, nnz):
  """Against an enumeration of every support the generator can draw: guards the divisor sum
  for N = 2 (its g! and (2m)^g) and log2 L! for N = 1."""
  assert ja.theory.pattern_bits("random_regular", length, nnz) == pytest.approx(
    math.log2(_circulant_codes(length, nnz).size) / length, abs=1e-9
  )


def test_random_regular_draws_are_the_enumerated_supports():
  """The generator's draws at L = 6, N = 2 lie in the enumeration above (what pattern_bits
  counts); guards the enumeration against a generator whose supports it does not describe."""
  sampler = ja.patterns.Sampler("random_regular", 6, 2)
  cols = np.stack(
    [np.asarray(sampler(key).cols) for key in jax.random.split(jax.random.PRNGKey(0), 64)]
  )
  drawn = np.left_shift(np.int64(1), 6 * np.arange(6)[:, None] + cols).sum(axis=(-2, -1))
  assert np.isin(drawn, _circulant_codes(6, 2)).all()


def test_random_regular_supports_are_fewer_than_all_regular_matrices():
  """At L = 6, N = 2 the relabelled circulants (one cycle length) are 51750 of the 67950
  2-regular 0-1 matrices: the family is a strict subset, counted as such."""
  assert 2 ** (6 * ja.theory.pattern_bits("random_regular", 6, 2)) == pytest.approx(51750)
  assert _regular_count(6, 2) == 67950 and _regular_count(8, 3) == 24046189440


@pytest.mark.parametrize("nnz", [2, 3])
def test_pattern_bits_regular_is_the_asymptotic_count_within_its_error_term(nnz):
  """log2 of (LN)!/(N!)^{2L}·exp(−(N−1)²/2) against exact counts: the error shrinks like 1/L
  (within 2(N−1)³/L bits in all); guards the exp(−(N−1)²/2) factor (0.7 bits at N = 2)."""
  errors = [
    math.log2(_regular_count(length, nnz)) - length * ja.theory.pattern_bits("regular", length, nnz)
    for length in (8, 12, 16, 20)
  ]
  assert all(abs(e) <= 2 * (nnz - 1) ** 3 / length for e, length in zip(errors, (8, 12, 16, 20)))
  assert all(abs(b) < abs(a) for a, b in zip(errors, errors[1:]))
  assert ja.theory.pattern_bits("regular", 6, 1) == pytest.approx(math.log2(720) / 6)


def test_pattern_bits_fixed_families_and_bad_arguments():
  assert ja.theory.pattern_bits("banded", 64, 3) == 0.0
  assert ja.theory.pattern_bits("random_regular", 5, 5) == 0.0  # the all-ones matrix
  for args in (("random_regular", 8, 3), ("random_sparse", 8, 2), ("regular", 4, 5)):
    with pytest.raises(ValueError):
      ja.theory.pattern_bits(*args)
