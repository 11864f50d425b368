"""Runs verify and min_d on this process's devices and saves every figure (see test_sharding.py)."""

import functools
import sys

import jax
import numpy as np

import jaxattn as ja


def main(out_path: str) -> None:
  key = jax.random.PRNGKey(0)
  pattern = ja.patterns.random_sparse(key, length=700, nnz=3, a_min=0.3)
  solution = ja.construct.jl(jax.random.PRNGKey(1), pattern, d=48, eps1=0.5, eps2=0.5)
  # row_block 128: several row blocks per device at a small L
  report = ja.verify(
    solution, pattern, eps1=0.5, eps2=0.5, compute=ja.Compute(block_size=96, row_block=128)
  )
  figures = {f"verify_{k}": np.asarray(v) for k, v in report._asdict().items()}
  sampler = functools.partial(ja.patterns.random_regular, length=300, nnz=1, a_min=0.5)
  for trials in (6, 2):  # 6: trials split over devices; 2 (< 4 devices): row blocks split
    result = ja.min_d(
      key,
      sampler,
      (32, 128, 256, 512),
      eps1=0.5,
      eps2=0.5,
      trials=trials,
      compute=ja.Compute(row_block=128),
    )
    figures[f"min_d_{trials}"] = result.successes
  figures["devices"] = np.asarray(jax.local_device_count())
  np.savez(out_path, **figures)


if __name__ == "__main__":
  main(sys.argv[1])
