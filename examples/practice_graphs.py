"""Writes real patterns for ``bench solve``: kNN graphs of scikit-learn's bundled data sets and
networkx's bundled graphs, as Matrix Market files.

  knn_<data set>.mtx   row i attends itself and its k = 3 nearest other samples
                       (features standardised to zero mean, unit variance;
                       weights exp(−(δ_ij/σ_i)²), ``ja.patterns.knn``)
  graph_<graph>.mtx    row i attends itself and its neighbours (binary,
                       ``ja.patterns.from_graph``)

Needs the "data" extra (``pip install -e ".[data]"``); nothing is downloaded,
every input ships with the two packages. Run from the repository root:
``python examples/practice_graphs.py [FOLDER]`` (default ``results/practice_graphs``),
then e.g. ``python -m bench solve results/practice_graphs/knn_digits.mtx --method lstsq --search``.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import scipy.io

import jaxattn as ja

K = 3
DATA_SETS = ("iris", "digits", "wine", "breast_cancer", "diabetes")
GRAPHS = {
  "karate_club": "karate_club_graph",
  "les_miserables": "les_miserables_graph",
  "davis_southern_women": "davis_southern_women_graph",
  "florentine_families": "florentine_families_graph",
}


def standardised(name: str) -> np.ndarray:
  """The features of ``sklearn.datasets.load_<name>()``, each to zero mean and unit variance."""
  import sklearn.datasets

  features = getattr(sklearn.datasets, f"load_{name}")().data.astype(np.float64)
  spread = features.std(axis=0)
  return (features - features.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


def patterns(data_sets=DATA_SETS, graphs=tuple(GRAPHS)) -> dict[str, ja.SparsePattern]:
  """File stem -> pattern, for the named data sets and graphs."""
  import networkx

  found = {f"knn_{name}": ja.patterns.knn(standardised(name), K) for name in data_sets}
  found.update(
    {f"graph_{name}": ja.patterns.from_graph(getattr(networkx, GRAPHS[name])()) for name in graphs}
  )
  return found


def main(folder: pathlib.Path = pathlib.Path("results/practice_graphs"), **which) -> list[str]:
  """Writes every pattern into ``folder``; returns one line per file (L, N, largest column)."""
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  lines = []
  for stem, pattern in patterns(**which).items():
    matrix = pattern.to_scipy()
    scipy.io.mmwrite(
      folder / f"{stem}.mtx",
      matrix,
      precision=6,
      comment=f" jaxattn examples/practice_graphs.py: {stem}",
    )
    column = int(np.bincount(matrix.tocoo().col, minlength=pattern.length).max())
    lines.append(
      f"{folder / stem}.mtx: L = {pattern.length}, N = {pattern.nnz} per row, "
      f"largest column {column}"
    )
  return lines


if __name__ == "__main__":
  if sys.argv[1:] in (["-h"], ["--help"]):
    sys.exit(print(__doc__))
  if len(sys.argv) > 2 or any(arg.startswith("-") for arg in sys.argv[1:]):
    print(f"usage: python {sys.argv[0]} [FOLDER]", file=sys.stderr)
    sys.exit(2)
  print("\n".join(main(*map(pathlib.Path, sys.argv[1:2]))))
