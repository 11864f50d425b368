"""Patterns from data: kNN graphs against a brute-force reference, graph adjacencies."""

import numpy as np
import pytest
import scipy.sparse

import jaxattn as ja


def knn_reference(points, k, self_loops, weighted):
  """Dense A from the definition: k nearest others by brute force, exp(−(δ/σ_i)²) weights."""
  length = len(points)
  distance = np.linalg.norm(points[:, None] - points[None], axis=-1)
  np.fill_diagonal(distance, np.inf)
  a = np.zeros((length, length))
  for i in range(length):
    near = np.argsort(distance[i])[:k]
    sigma = distance[i, near[-1]]
    a[i, near] = np.exp(-((distance[i, near] / sigma) ** 2)) if weighted else 1.0
    if self_loops:
      a[i, i] = 1.0
  return a


@pytest.mark.parametrize(
  "k, self_loops, weighted",
  [(1, True, True), (3, True, False), (3, False, True), (5, False, False)],
)
def test_knn(k, self_loops, weighted):
  points = np.random.default_rng(k).normal(size=(40, 3))
  pattern = ja.patterns.knn(points, k, self_loops=self_loops, weighted=weighted)
  np.testing.assert_allclose(
    np.asarray(pattern.to_dense()), knn_reference(points, k, self_loops, weighted), rtol=1e-6
  )
  assert pattern.nnz == k + self_loops
  if weighted:
    assert float(pattern.a_min) >= np.exp(-1) * (1 - 1e-6)


def test_knn_columns_above_n_are_kept():
  """A hub: five points on the unit circle, 72° apart, all have the centre as nearest neighbour."""
  angles = 2 * np.pi * np.arange(5) / 5
  points = np.concatenate([np.zeros((1, 2)), np.stack([np.cos(angles), np.sin(angles)], -1)])
  pattern = ja.patterns.knn(points, 1)
  columns = (np.asarray(pattern.to_dense()) > 0).sum(0)
  assert pattern.nnz == 2 and columns[0] == 6


@pytest.mark.parametrize(
  "points, k, message",
  [
    (np.zeros(5), 1, "finite \\[L, D\\]"),
    (np.full((4, 2), np.nan), 1, "finite"),
    (np.zeros((4, 2)), 4, "k must be"),
    (np.zeros((4, 2)), 0, "k must be"),
  ],
)
def test_knn_bad_input(points, k, message):
  with pytest.raises(ValueError, match=message):
    ja.patterns.knn(points, k)


def test_from_graph_scipy():
  adjacency = scipy.sparse.csr_array(np.array([[0, 2.0, 0], [1.0, 0, 4.0], [0, 0, 0]]))
  pattern = ja.patterns.from_graph(adjacency)
  np.testing.assert_allclose(
    np.asarray(pattern.to_dense()), [[2.0, 2.0, 0], [1.0, 4.0, 4.0], [0, 0, 1.0]]
  )
  with pytest.raises(ValueError, match="row 2 of A has no nonzero"):
    ja.patterns.from_graph(adjacency, self_loops=False)
  with pytest.raises(ValueError, match="square"):
    ja.patterns.from_graph(scipy.sparse.csr_array(np.ones((2, 3))))
  with pytest.raises(ValueError, match="networkx graph, got list"):
    ja.patterns.from_graph([[1]])


def test_from_networkx():
  networkx = pytest.importorskip("networkx")
  graph = networkx.karate_club_graph()
  pattern = ja.patterns.from_graph(graph)
  dense = np.asarray(pattern.to_dense()) > 0
  reference = networkx.to_numpy_array(graph, weight=None) > 0
  np.fill_diagonal(reference, True)
  np.testing.assert_array_equal(dense, reference)
  assert pattern.nnz == max(d for _, d in graph.degree()) + 1
  weighted = ja.patterns.from_graph(graph, weight="weight", self_loops=False)
  np.testing.assert_allclose(
    np.asarray(weighted.to_dense()), networkx.to_numpy_array(graph, weight="weight")
  )


def test_knn_duplicates_are_neighbours_not_self():
  points = np.array([[0.0], [0.0], [0.0], [7.0], [7.0], [7.0]])
  dense = np.asarray(ja.patterns.knn(points, 2, self_loops=False).to_dense())
  assert (np.diag(dense) == 0).all() and (dense.sum(1) == 2).all()
  np.testing.assert_array_equal(dense[:3, 3:], 0)


def test_example_script_writes_what_bench_solve_reads(tmp_path):
  pytest.importorskip("sklearn")
  pytest.importorskip("networkx")
  import importlib.util
  import pathlib

  from jaxattn_bench.pattern_file import load_pattern

  path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "practice_graphs.py"
  spec = importlib.util.spec_from_file_location("practice_graphs", path)
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  lines = script.main(tmp_path, data_sets=("iris",), graphs=("karate_club",))
  assert len(lines) == 2 and "L = 150, N = 4 per row" in lines[0]
  read = load_pattern(str(tmp_path / "knn_iris.mtx")).pattern
  direct = ja.patterns.knn(script.standardised("iris"), script.K)
  np.testing.assert_allclose(np.asarray(read.to_dense()), np.asarray(direct.to_dense()), rtol=1e-5)
  assert load_pattern(str(tmp_path / "graph_karate_club.mtx")).pattern.nnz == 18
