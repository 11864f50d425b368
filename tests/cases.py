"""Test solutions with known logits, shared by the test files."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import jaxattn as ja
from jaxattn.construct import solution_from_factors, target_logits


def noisy_target_solution(
  pattern: ja.SparsePattern,
  noise: float,
  eps1: float,
  eps2: float,
  max_outside_mass: float | None = None,
  seed: int = 0,
) -> ja.Solution:
  """X = [B + noise, I] (d = L): logits exactly B + noise, B the construction's target logits
  for the criterion (``target_logits``), noise i.i.d. N(0, noise²) from ``seed``."""
  length = pattern.length
  b = np.zeros((length, length))
  valid = np.asarray(pattern.valid)
  rows = np.repeat(np.arange(length)[:, None], pattern.nnz, 1)
  b[rows[valid], np.asarray(pattern.cols)[valid]] = np.asarray(
    target_logits(pattern, eps1, eps2, max_outside_mass)
  )[valid]
  b += noise * np.random.default_rng(seed).standard_normal(b.shape)
  return solution_from_factors(jnp.asarray(b, jnp.float32), jnp.eye(length, dtype=jnp.float32))
