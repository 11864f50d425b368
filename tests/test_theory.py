"""jl_dim: the provable dimension of the paper's construction."""

import math

import pytest

import jaxattn as ja


def test_jl_dim_is_the_smallest_d_meeting_the_union_bound():
  length, nnz, eps1, eps2, a_min, delta = 256, 2, 0.5, 0.5, 0.2, 0.1
  d = ja.theory.jl_dim(length, nnz, eps1, eps2, a_min, delta)
  eps = (math.log1p(eps1) / 2) / (math.sqrt(nnz) * (math.log1p(eps1) + math.log(1 / (eps2 * a_min))))
  failure = lambda d: length**2 * ja.theory.jl_inner_product_failure(d, eps)
  assert failure(d) <= delta < failure(d - 1)


def test_jl_dim_grows_like_log_l():
  dims = [ja.theory.jl_dim(2**k, 2, 0.5, 0.5, 0.2) for k in range(5, 17)]
  steps = [b - a for a, b in zip(dims, dims[1:])]
  assert all(s > 0 for s in steps)
  assert max(steps) - min(steps) <= 1  # linear in ln L: constant step per doubling
  assert ja.theory.jl_dim(1024, 4, 0.5, 0.5, 0.2) > ja.theory.jl_dim(1024, 2, 0.5, 0.5, 0.2)
  assert ja.theory.jl_dim(1024, 2, 0.2, 0.5, 0.2) > ja.theory.jl_dim(1024, 2, 0.5, 0.5, 0.2)


@pytest.mark.parametrize("args", [(0, 2, 0.5, 0.5, 0.2), (8, 2, 0.0, 0.5, 0.2),
                                  (8, 2, 0.5, 1.0, 0.2), (8, 2, 0.5, 0.5, 0.0),
                                  (8, 2, 0.5, 0.5, 0.2, 1.0)])
def test_bad_arguments(args):
  with pytest.raises(ValueError):
    ja.theory.jl_dim(*args)
