"""Writes the two example patterns of docs/your-pattern.md (deterministic).

  banded.npy          dense L×L, L = 64: row i attends to i−1, i, i+1 (N = 3)
  global_columns.mtx  Matrix Market, L = 64: every row attends to the two global
                      tokens 0 and 1 and to itself (N = 3 per row, but columns 0
                      and 1 have 64 nonzeros each: attention sinks, outside the theorem)

Weights are uniform in [0.3, 1], so a_min ≥ 0.3. Run from the repository root:
``python examples/make_examples.py``.
"""

from __future__ import annotations

import pathlib

import numpy as np
import scipy.io
import scipy.sparse

LENGTH = 64
GLOBAL_COLUMNS = (0, 1)


def banded(rng: np.random.Generator, length: int = LENGTH) -> np.ndarray:
  """A_ij ~ U(0.3, 1) for |i − j| ≤ 1, else 0."""
  offsets = np.subtract.outer(np.arange(length), np.arange(length))
  return np.where(np.abs(offsets) <= 1, rng.uniform(0.3, 1.0, (length, length)), 0.0)


def global_columns(rng: np.random.Generator, length: int = LENGTH) -> scipy.sparse.coo_array:
  """A_ij ~ U(0.3, 1) for j ∈ GLOBAL_COLUMNS or j = i, else 0."""
  support = np.eye(length, dtype=bool)
  support[:, list(GLOBAL_COLUMNS)] = True
  return scipy.sparse.coo_array(np.where(support, rng.uniform(0.3, 1.0, (length, length)), 0.0))


def main(folder: pathlib.Path = pathlib.Path(__file__).parent) -> None:
  """Writes both examples into ``folder`` (by default, next to this script)."""
  folder = pathlib.Path(folder)
  rng = np.random.default_rng(0)
  np.save(folder / "banded.npy", banded(rng).astype(np.float32))
  scipy.io.mmwrite(
    folder / "global_columns.mtx",
    global_columns(rng),
    comment=" jaxattn example: two global tokens (columns 0, 1) and the diagonal",
    precision=6,
  )


if __name__ == "__main__":
  main()
