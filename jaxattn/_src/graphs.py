"""Patterns from data: the k-nearest-neighbour graph of points, and any graph's adjacency.

Both build on the host (NumPy/SciPy) and return a validated ``SparsePattern``
whose N is its largest *row* count: a column may hold more than N nonzeros
(a hub, a point that many others have as nearest neighbour), which is outside
the theorem and is not refused (``SparsePattern.from_scipy(check_columns=False)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
import scipy.spatial

from jaxattn._src.pattern import SparsePattern


def _with_self_loops(adjacency: scipy.sparse.csr_array) -> scipy.sparse.csr_array:
  """A + diag(m_i), m_i the largest entry of row i (1 for an empty row): self weight = row max."""
  row_max = np.asarray(adjacency.max(axis=1).todense()).reshape(-1)
  diagonal = np.where(row_max > 0, row_max, 1.0)
  without = adjacency - scipy.sparse.diags_array(adjacency.diagonal())
  return scipy.sparse.csr_array(without + scipy.sparse.diags_array(diagonal))


def knn(points: Any, k: int, *, self_loops: bool = True, weighted: bool = True) -> SparsePattern:
  """Pattern of the k-nearest-neighbour graph of L points: row i attends its k nearest others.

  With δ_ij the Euclidean distance and σ_i the distance from i to its k-th
  nearest other point, A_ij = exp(−(δ_ij/σ_i)²) ∈ [e⁻¹, 1] (a_min ≥ e⁻¹;
  A_ij = 1 where σ_i = 0), or 1 with ``weighted=False``. ``self_loops`` adds
  A_ii = 1 (the row's largest weight): N = k + 1 per row, else N = k.
  Neighbours come from ``scipy.spatial.cKDTree`` (ties in distance as it
  returns them; a point's duplicates are neighbours at distance 0). Columns (points that are many
  others' neighbours) may hold more than N. ValueError unless ``points`` is
  a finite [L, D] array with 1 ≤ k < L.
  """
  points = np.asarray(points, dtype=np.float64)
  if points.ndim != 2 or not np.isfinite(points).all():
    raise ValueError(f"points must be a finite [L, D] array, got shape {points.shape}")
  length = points.shape[0]
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < length:
    raise ValueError(f"k must be an integer in [1, L) = [1, {length}), got {k!r}")
  near, found = scipy.spatial.cKDTree(points).query(points, k + 1)
  is_self = found == np.arange(length)[:, None]
  others = np.ones(found.shape, bool)  # drop the point itself, or the farthest if it is not found
  others[np.arange(length), np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)] = False
  neighbours, near = found[others].reshape(length, k), near[others].reshape(length, k)
  scale = near[:, -1:]
  values = np.exp(-(np.divide(near, scale, out=np.zeros_like(near), where=scale > 0) ** 2))
  values = values if weighted else np.ones_like(values)
  if self_loops:
    neighbours = np.concatenate([np.arange(length)[:, None], neighbours], axis=-1)
    values = np.concatenate([np.ones((length, 1)), values], axis=-1)
  rows = np.repeat(np.arange(length), neighbours.shape[-1])
  adjacency = scipy.sparse.csr_array(
    (values.reshape(-1), (rows, neighbours.reshape(-1))), shape=(length, length)
  )
  return from_graph(adjacency, self_loops=False)


def from_graph(graph: Any, *, self_loops: bool = True, weight: str | None = None) -> SparsePattern:
  """Pattern of a graph's adjacency: row i attends the neighbours j of node i (A_ij = edge weight).

  ``graph``: a square ``scipy.sparse`` matrix or array (A as given), or a
  networkx graph (nodes in ``graph.nodes`` order; undirected edges give both
  A_ij and A_ji; ``weight`` names the edge attribute to use, None: binary).
  ``self_loops`` sets A_ii to the row's largest weight (1 on a row without
  edges), so that every row has a nonzero and a_min is unchanged; without
  it an isolated node is a ValueError naming its row. N is the largest row
  count; columns may hold more (``check_columns=False``).
  """
  if not scipy.sparse.issparse(graph):
    if not hasattr(graph, "adj") or not hasattr(graph, "nodes"):
      raise ValueError(
        f"expected a scipy.sparse matrix or a networkx graph, got {type(graph).__name__}"
      )
    import networkx  # optional: only for networkx input (extra "data")

    graph = networkx.to_scipy_sparse_array(graph, weight=weight, dtype=np.float64)
  if graph.ndim != 2 or graph.shape[0] != graph.shape[1]:
    raise ValueError(f"the adjacency must be square, got shape {graph.shape}")
  adjacency = scipy.sparse.csr_array(graph, dtype=np.float64)
  if self_loops:
    adjacency = _with_self_loops(adjacency)
  return SparsePattern.from_scipy(adjacency, check_columns=False)
