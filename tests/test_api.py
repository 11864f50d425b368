"""The 1.0 surface (docs/api.md, "Options (1.0)"): tolerances by keyword, ``ja.Compute``, and the
names 1.0 replaced still working with a DeprecationWarning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattn as ja

KEY = jax.random.PRNGKey(0)
PATTERN = ja.patterns.random_regular(KEY, length=16, nnz=2, a_min=0.5)
SOLUTION = ja.construct.jl(jax.random.PRNGKey(1), PATTERN, 64, eps1=0.5, eps2=0.5)
SAMPLER = ja.patterns.Sampler("random_regular", length=16, nnz=2, a_min=0.5)


@pytest.mark.parametrize(
  "call",
  [
    lambda: ja.verify(SOLUTION, PATTERN, 0.5, 0.5),
    lambda: ja.precision_bits(SOLUTION, PATTERN, 0.5, 0.5),
    lambda: ja.construct.jl(KEY, PATTERN, 8, 0.5, 0.5),
    lambda: ja.construct.build("lstsq", KEY, PATTERN, 8, 0.5, 0.5),
    lambda: ja.min_d(KEY, SAMPLER, (4, 8), 0.5, 0.5),
    lambda: ja.verify_grid(KEY, PATTERN, (4, 8), 0.5, 0.5),
    lambda: ja.theory.jl_dim(64, 2, 0.5, 0.5, 0.2),
    lambda: ja.reference.dense_check(
      SOLUTION.X, np.asarray(SOLUTION.w_q), np.asarray(SOLUTION.w_k), PATTERN.to_dense(), 0.5, 0.5
    ),
  ],
)
def test_positional_tolerances_are_a_type_error_that_names_the_keywords(call):
  with pytest.raises(
    TypeError,
    match=r"takes eps1 and eps2 by keyword since 1\.0: .*eps1=0\.5, "
    r"eps2=0\.5",
  ):
    call()


def test_the_flat_keywords_of_before_1_0_warn_and_mean_what_they_meant():
  """``block_size=``/``row_block=`` are ``compute=ja.Compute(...)``'s fields and ``matmul_dtype=``
  is ``layer_dtype=``: same report, one DeprecationWarning naming the new spelling."""
  tiles = ja.Compute(block_size=4, row_block=8)
  new = ja.verify(SOLUTION, PATTERN, eps1=0.5, eps2=0.5, compute=tiles, layer_dtype=jnp.bfloat16)
  with pytest.warns(
    DeprecationWarning, match=r"compute=ja\.Compute\(block_size, row_block=\.\.\.\)"
  ):
    with pytest.warns(DeprecationWarning, match=r"verify\(layer_dtype=\.\.\.\)"):
      old = ja.verify(
        SOLUTION, PATTERN, eps1=0.5, eps2=0.5, block_size=4, row_block=8, matmul_dtype=jnp.bfloat16
      )
  for name, value in new._asdict().items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(getattr(old, name)), err_msg=name)
  with (
    pytest.raises(TypeError, match="both matmul_dtype and layer_dtype"),
    pytest.warns(DeprecationWarning),
  ):
    ja.verify(
      SOLUTION, PATTERN, eps1=0.5, eps2=0.5, matmul_dtype=jnp.bfloat16, layer_dtype=jnp.bfloat16
    )
  with pytest.warns(DeprecationWarning, match=r"compute=ja\.Compute\(schedule=\.\.\.\)"):
    states = ja.verify_grid(
      KEY, PATTERN, (2, 4, 8), eps1=0.5, eps2=0.5, method="lstsq", schedule="adaptive"
    )
  np.testing.assert_array_equal(
    states,
    ja.verify_grid(
      KEY,
      PATTERN,
      (2, 4, 8),
      eps1=0.5,
      eps2=0.5,
      method="lstsq",
      compute=ja.Compute(schedule="adaptive"),
    ),
  )


@pytest.mark.parametrize(
  "compute, error, match",
  [
    (ja.Compute(block_size=0), ValueError, "block_size must be a positive integer"),
    (ja.Compute(row_block=2.5), ValueError, "row_block must be a positive integer"),
    (ja.Compute(max_trial_batch=True), ValueError, "max_trial_batch"),
    (ja.Compute(schedule="upward"), ValueError, "schedule must be"),
    (ja.Compute(check_above=-1), ValueError, "check_above"),
    ({"block_size": 4}, TypeError, "compute must be a ja.Compute"),
  ],
)
def test_a_bad_compute_is_refused_naming_the_field(compute, error, match):
  with pytest.raises(error, match=match):
    ja.min_d(KEY, SAMPLER, (4, 8), eps1=0.5, eps2=0.5, method="lstsq", compute=compute)
