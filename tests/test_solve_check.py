"""`python -m bench solve` and `python -m bench check`: a user's own pattern, end to end.

The CLI runs in-process through ``jaxattn_bench.cli.main(argv)`` (one compile
cache for the whole file); one subprocess test guards the no-traceback
promise. The pattern is small (L = 16, N = 2) and certifies at d = 1024 with
seed 0, and fails at d = 2.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import subprocess
import sys
import types

import jax
import numpy as np
import pytest
import scipy.io
import scipy.sparse

import jaxattn as ja
from jaxattn_bench import pattern_file, resources, solution_file
from jaxattn_bench.cli import main
from jaxattn_bench.commands import solve as solve_command
from jaxattn_bench.errors import CommandError
from tests.reference import reference_figures

L = 16
D_OK = 1024
EPS1 = EPS2 = 0.5
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pattern_matrix() -> np.ndarray:
  """A_ii and A_{i, i+3 mod L} in [0.5, 1]: N = 2 in every row and column."""
  rng = np.random.default_rng(0)
  a = np.zeros((L, L))
  rows = np.arange(L)
  a[rows, rows] = rng.uniform(0.5, 1.0, L)
  a[rows, (rows + 3) % L] = rng.uniform(0.5, 1.0, L)
  return a


A = _pattern_matrix()


def _write(folder, fmt: str, a) -> str:
  """Writes ``a`` in format ``fmt`` into ``folder``; returns the path."""
  path = os.path.join(
    folder,
    {
      "npy": "a.npy",
      "npz-dense": "a.npz",
      "npz-sparse": "s.npz",
      "mtx": "a.mtx",
      "mtx-array": "dense.mtx",
      "mtx-pattern": "graph.mtx",
    }[fmt],
  )
  if fmt == "npy":
    np.save(path, a)
  elif fmt == "npz-dense":
    np.savez(path, attention=a)
  elif fmt == "npz-sparse":
    scipy.sparse.save_npz(path, scipy.sparse.csc_matrix(a))
  elif fmt == "mtx":
    scipy.io.mmwrite(path, scipy.sparse.coo_array(a))
  elif fmt == "mtx-pattern":  # a graph's adjacency: positions only, every weight 1
    scipy.io.mmwrite(path, scipy.sparse.coo_array(a), field="pattern")
  else:
    scipy.io.mmwrite(path, a)
  return path


def _solve(*args) -> int:
  return main(["solve", *map(str, args)])


def _error_line(capsys, path: str) -> str:
  """The single stderr line of a failed command; asserts it names ``path``."""
  err = capsys.readouterr().err
  lines = [line for line in err.splitlines() if line.startswith("jaxattn ")]
  assert len(lines) == 1 and "Traceback" not in err, err
  assert "error:" in lines[0] and path in lines[0], err
  return lines[0]


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
  """A certified solution file of A (read from a Matrix Market file), and what `solve` printed."""
  folder = tmp_path_factory.mktemp("solved")
  out = str(folder / "out.npz")
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    status = _solve(_write(str(folder), "mtx", A), "--d", D_OK, "--out", out)
  assert status == 0, printed.getvalue()
  return out, printed.getvalue()


@pytest.mark.parametrize(
  "fmt", ["npy", "npz-dense", "npz-sparse", "mtx", "mtx-array", "mtx-pattern"]
)
def test_round_trip_every_format(fmt, tmp_path, capsys):
  path, out = _write(str(tmp_path), fmt, A), str(tmp_path / "out.npz")
  assert _solve(path, "--d", D_OK, "--out", out) == 0
  assert "CERTIFIED" in capsys.readouterr().out
  expected = (A > 0).astype(float) if fmt == "mtx-pattern" else A
  with np.load(out) as saved:
    pattern = ja.SparsePattern(
      *(saved[k] for k in ("pattern_cols", "pattern_weights", "pattern_valid"))
    )
    np.testing.assert_allclose(np.asarray(pattern.to_dense()), expected, rtol=1e-6)
    assert saved["X"].shape == (L, 2 * D_OK) and str(saved["params"]) == "identity"
    assert "w_q" not in saved.files and str(saved["format"]) == "jaxattn-solution-2"
    assert str(saved["method"]) == "jl" and int(saved["d"]) == D_OK and bool(saved["report_ok"])
  assert main(["check", out]) == 0
  assert main(["check", out, "--float64"]) == 0


def test_independent_float64_check_agrees_with_printed_report(solved):
  out, printed = solved
  figure = lambda name: float(re.search(rf"^{name}\s+(\S+)", printed, re.M).group(1))
  w_q, w_k = np.eye(2 * D_OK)[:, :D_OK], np.eye(2 * D_OK)[:, D_OK:]  # params "identity"
  with np.load(out) as saved:
    reference = reference_figures(saved["X"], w_q, w_k, A)
    dense = ja.reference.dense_check(saved["X"], w_q, w_k, A, eps1=0.5, eps2=0.5)
    spread, gap = dense.spread, dense.gap
  ratio_error, leak = reference["ratio_error"], reference["leak"]
  np.testing.assert_allclose(ratio_error, figure("ratio_error"), rtol=1e-4)
  np.testing.assert_allclose(leak, figure("leak"), rtol=1e-4)
  np.testing.assert_allclose(
    [np.expm1(spread.max()), np.exp(gap.max())], [ratio_error, leak], rtol=1e-9
  )
  assert ratio_error <= EPS1 and leak <= EPS2 and "ok           True" in printed


def test_check_catches_tampered_x(solved, tmp_path, capsys):
  out, _ = solved
  with np.load(out) as saved:
    arrays = dict(saved)
  x = arrays["X"].copy()
  x[5, :D_OK] = x[6, :D_OK]  # row 5 now queries like row 6
  tampered = str(tmp_path / "tampered.npz")
  np.savez(tampered, **{**arrays, "X": x})
  capsys.readouterr()
  for precision in ([], ["--float64"]):
    assert main(["check", tampered, *precision]) == 1
    printed = capsys.readouterr().out
    assert "NOT certified" in printed and "row 5:" in printed
    assert "the file's own report said ok=True" in printed


FORMAT_1 = os.path.join(REPO, "tests", "data", "solution_format1.npz")
# FORMAT_1 was written by the format-1 code (commit 30bebbb) with
#   python -m bench solve a.npy --method lstsq --d 16 --out solution_format1.npz
# for a.npy = A: dense w_q, w_k [32, 16], no params; certified.


def _recipe_logits(path: str) -> np.ndarray:
  """``logits`` of the NumPy recipe for the solution file (docs/your-pattern.md), run as written
  on ``path``."""
  text = open(os.path.join(REPO, "docs", "your-pattern.md"), encoding="utf-8").read()
  blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "np.load(" in b]
  assert len(blocks) == 1 and '"banded_solution.npz"' in blocks[0]
  namespace: dict = {}
  exec(blocks[0].replace('"banded_solution.npz"', repr(path)), namespace)  # noqa: S102
  np.testing.assert_allclose(namespace["A"], A, rtol=1e-6)
  return namespace["logits"]


def test_the_docs_recipe_gives_the_librarys_logits(solved):
  """The NumPy recipe of docs/your-pattern.md on a file of each format gives the library's logits.

  Guards a recipe (or a writer) that takes the wrong half of X for queries or keys, or that
  does not read format-1 files (dense w_q, w_k)."""
  library = ja.construct.build(
    "jl", jax.random.PRNGKey(0), ja.SparsePattern.from_dense(A), D_OK, eps1=EPS1, eps2=EPS2
  ).logits()
  scale = float(np.abs(library).max())
  np.testing.assert_allclose(_recipe_logits(solved[0]), library, rtol=1e-5, atol=1e-5 * scale)
  with np.load(FORMAT_1) as old:
    library = ja.Solution(*(jax.numpy.asarray(old[k]) for k in ("X", "w_q", "w_k"))).logits()
  scale = float(np.abs(library).max())
  np.testing.assert_allclose(_recipe_logits(FORMAT_1), library, rtol=1e-5, atol=1e-5 * scale)


def test_solution_file_grows_with_l_times_d(tmp_path):
  """Identity parameters are stored as params="identity", not as dense 2d×d W_Q, W_K.

  Doubling d doubles the file; at L = 16, d = 4096 it is X's 0.5 MB where dense W would add
  268 MB; the plan's estimate (``resources.solution_file_bytes``) bounds it from above, within
  64 KiB. Guards a writer that stores dense W (size ∝ d²) and an estimate that counts them."""
  pattern = ja.SparsePattern.from_dense(A)
  report = ja.verify(
    ja.construct.build("jl", jax.random.PRNGKey(0), pattern, D_OK, eps1=EPS1, eps2=EPS2),
    pattern,
    eps1=EPS1,
    eps2=EPS2,
  )
  sizes = {}
  for d in (1024, 2048, 4096):
    factors = np.random.default_rng(d).normal(size=(2, L, d)).astype(np.float32)
    solution = ja.construct.solution_from_factors(*map(jax.numpy.asarray, factors))
    out = str(tmp_path / f"d{d}.npz")
    solution_file.save_solution(
      out,
      solution,
      pattern,
      report,
      solution_file.Provenance("jl", d, EPS1, EPS2, seed=0, source="test"),
    )
    sizes[d] = os.path.getsize(out)
    estimate = resources.solution_file_bytes(L, pattern.nnz, d)
    assert 4 * L * 2 * d < sizes[d] <= estimate < sizes[d] + (64 << 10), (d, sizes[d], estimate)
  assert 1.9 < sizes[2048] / sizes[1024] < 2.1 and 1.9 < sizes[4096] / sizes[2048] < 2.1, sizes
  assert sizes[4096] < 0.01 * 4 * 2 * (2 * 4096) * 4096  # dense W_Q, W_K at float32


def test_check_reads_format_1_files_and_still_catches_a_tampered_one(tmp_path, capsys):
  """A file written by format 1 (dense w_q, w_k, no params) is re-verified from its own W.

  Guards a reader that refuses format 1, or that takes any L×2d file for identity parameters
  (then a tampered W_Q goes unnoticed)."""
  assert main(["check", FORMAT_1, "--float64"]) == 0
  printed = capsys.readouterr().out
  assert "params dense" in printed and "CERTIFIED at d=16" in printed
  assert "dense NumPy  float64: ok True" in printed
  with np.load(FORMAT_1) as old:
    arrays = dict(old)
  assert str(arrays["format"]) == "jaxattn-solution-1" and "params" not in arrays
  tampered = str(tmp_path / "tampered.npz")
  np.savez(tampered, **{**arrays, "w_q": -arrays["w_q"]})
  assert main(["check", tampered, "--float64"]) == 1
  printed = capsys.readouterr().out
  assert "NOT certified" in printed and "dense NumPy  float64: ok False" in printed


def test_search_picks_the_smallest_verifying_grid_d(tmp_path, capsys):
  grid = (64, 256, 512, 1024)
  path, out = _write(str(tmp_path), "npy", A), str(tmp_path / "out.npz")
  assert _solve(path, "--search", "--d-grid", ",".join(map(str, grid)), "--out", out) == 0
  pattern, key = ja.SparsePattern.from_dense(A), jax.random.PRNGKey(0)
  built = [
    bool(
      ja.verify(
        ja.construct.jl(key, pattern, d, eps1=EPS1, eps2=EPS2), pattern, eps1=EPS1, eps2=EPS2
      ).ok
    )
    for d in grid
  ]
  assert built.index(True) > 0  # the search has something to skip
  with np.load(out) as saved:
    assert int(saved["d"]) == grid[built.index(True)]
  np.testing.assert_array_equal(ja.verify_grid(key, pattern, grid, eps1=EPS1, eps2=EPS2), built)


@pytest.mark.parametrize("schedule", ["full", "adaptive"])
def test_the_search_is_one_verify_grid_on_the_chosen_schedule(
  schedule, tmp_path, capsys, monkeypatch
):
  """``bench solve --search`` is one ``ja.verify_grid`` call over the whole grid, on the schedule
  ``ja.schedule.choose_schedule`` picks (forced here both ways), and certifies the smallest d at
  which the method, built alone, verifies."""
  seen = []
  grid_fn = ja.verify_grid
  monkeypatch.setattr(ja.schedule, "choose_schedule", lambda *args: schedule)
  monkeypatch.setattr(
    ja,
    "verify_grid",
    lambda key, p, d_grid, **kw: (
      seen.append((d_grid, kw["compute"].schedule)) or grid_fn(key, p, d_grid, **kw)
    ),
  )
  grid = (4, 8, 16, 32, 64)
  path, out = _write(str(tmp_path), "npy", A), str(tmp_path / "out.npz")
  assert (
    _solve(
      path, "--method", "lstsq", "--search", "--d-grid", ",".join(map(str, grid)), "--out", out
    )
    == 0
  )
  pattern, key = ja.SparsePattern.from_dense(A), jax.random.PRNGKey(0)
  built = [
    bool(
      ja.verify(
        ja.construct.lstsq(key, pattern, d, eps1=EPS1, eps2=EPS2), pattern, eps1=EPS1, eps2=EPS2
      ).ok
    )
    for d in grid
  ]
  first = built.index(True)
  assert 0 < first < len(grid) - 2  # something below to fail, something above to skip
  assert seen == [(grid, schedule)]
  with np.load(out) as saved:
    assert int(saved["d"]) == grid[first]
  assert f"{schedule} schedule: smallest verifying d = {grid[first]}" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["onehot", "jl", "lstsq"])
def test_the_default_search_grid_stops_at_L_only_for_onehot(method, tmp_path, capsys, monkeypatch):
  """Without --d-grid the grid tops at L for onehot (d = L always verifies there), and at 4096
  for every other method (jl needs d above L on small patterns: docs/your-pattern.md). The
  searched verdicts are faked (none verifies, so the top is tried): only the grid is under
  test."""
  seen = []
  monkeypatch.setattr(
    ja,
    "verify_grid",
    lambda key, p, d_grid, **kw: seen.append(d_grid) or np.zeros(len(d_grid), bool),
  )

  def stop(args, key, pattern, candidates):
    seen.append(candidates)
    raise CommandError("stopped before the certificate")

  monkeypatch.setattr(solve_command, "_certify", stop)
  path, out = _write(str(tmp_path), "npy", A), str(tmp_path / "out.npz")
  assert _solve(path, "--method", method, "--search", "--out", out) == 2
  top = A.shape[0] if method == "onehot" else 4096
  assert max(d for chunk in seen[:-1] for d in chunk) == top and seen[-1] == [top]
  assert f"on d in 1..{top}," in capsys.readouterr().out


def test_uncertified_run_exits_1_names_failing_rows_and_keeps_out(solved, tmp_path, capsys):
  out, _ = solved
  before = open(out, "rb").read()
  path = _write(str(tmp_path), "npy", A)
  assert _solve(path, "--d", 2, "--out", out) == 1
  printed = capsys.readouterr().out
  assert "NOT certified" in printed and re.search(r"failing rows \d+ of 16", printed)
  assert re.search(r"^  row \d+: ratio_error", printed, re.M)
  assert open(out, "rb").read() == before
  fresh = str(tmp_path / "uncertified.npz")
  assert _solve(path, "--d", 2, "--out", fresh, "--save-uncertified") == 1
  assert main(["check", fresh]) == 1


def _bad_inputs(folder) -> dict[str, tuple[str, str]]:
  """name -> (path, expected words in the error line)."""

  def save(name, a, allow_pickle=False):
    path = os.path.join(folder, name)
    np.save(path, a, allow_pickle=allow_pickle)
    return path

  def raw(name, content: bytes):
    path = os.path.join(folder, name)
    with open(path, "wb") as file:
      file.write(content)
    return path

  with_nan, with_inf, negative, empty = A.copy(), A.copy(), A.copy(), A.copy()
  with_nan[2, 7], with_inf[3, 1], negative[4, 4], empty[9] = np.nan, np.inf, -0.5, 0.0
  npz_two = os.path.join(folder, "two.npz")
  np.savez(npz_two, a=A, b=A)
  truncated = raw("truncated.npz", open(_write(folder, "npz-sparse", A), "rb").read()[:200])
  inputs = {
    "missing": (os.path.join(folder, "missing.npy"), "no such file"),
    "directory": (folder, "is a directory"),
    "unknown suffix": (raw("a.csv", b"1,0\n0,1\n"), "unknown format"),
    "corrupt npy": (raw("corrupt.npy", b"\x93NUMPY\x01\x00garbage"), "cannot read as .npy"),
    "pickled npy": (save("object.npy", np.array([{}], dtype=object), True), "cannot read"),
    "not a zip npz": (raw("corrupt.npz", b"not a zip"), "cannot read as .npz"),
    "truncated npz": (truncated, "cannot read as .npz"),
    "two-array npz": (npz_two, "holds 2 arrays"),
    "corrupt mtx": (
      raw("corrupt.mtx", b"%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 x\n"),
      "cannot read as .mtx",
    ),
    "no banner mtx": (raw("banner.mtx", b"1 1 1\n"), "cannot read as .mtx"),
    "not square": (save("rect.npy", np.ones((3, 4))), "square"),
    "one-dimensional": (save("vector.npy", np.ones(4)), "square"),
    "NaN": (save("nan.npy", with_nan), "A[2, 7] = nan"),
    "inf": (save("inf.npy", with_inf), "A[3, 1] = inf"),
    "negative": (save("negative.npy", negative), "A[4, 4] = -0.5"),
    "complex": (save("complex.npy", A.astype(complex)), "real entries"),
    "empty row": (save("empty.npy", empty), "row 9 of A has no nonzero"),
  }
  assert tuple(inputs) == BAD_INPUTS
  return inputs


BAD_INPUTS = (
  "missing",
  "directory",
  "unknown suffix",
  "corrupt npy",
  "pickled npy",
  "not a zip npz",
  "truncated npz",
  "two-array npz",
  "corrupt mtx",
  "no banner mtx",
  "not square",
  "one-dimensional",
  "NaN",
  "inf",
  "negative",
  "complex",
  "empty row",
)


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_exits_2_with_one_line_and_keeps_out(name, solved, tmp_path, capsys):
  out, _ = solved
  before = open(out, "rb").read()
  path, words = _bad_inputs(str(tmp_path))[name]
  capsys.readouterr()
  assert _solve(path, "--d", D_OK, "--out", out) == 2
  assert words in _error_line(capsys, path)
  assert open(out, "rb").read() == before


@pytest.mark.parametrize(
  "argv, words",
  [
    (["--d", "0"], "d must be >= 1"),
    (["--d", "4", "--eps2", "1"], "eps2 must be in (0, 1)"),
    (["--d", "4", "--eps1", "-1"], "eps1 must be in (0, inf)"),
    (["--search", "--d-grid", "8,4"], "d_grid must be increasing"),
    (["--search", "--d-grid", "8,x"], "d_grid must be integers"),
    (["--d", "4", "--d-grid", "8"], "--d-grid needs --search"),
    (["--d", "4", "--top-n", "0"], "--top-n must be >= 1"),
  ],
)
def test_bad_options_exit_2(argv, words, tmp_path, capsys):
  path = _write(str(tmp_path), "npy", A)
  assert _solve(path, *argv, "--out", tmp_path / "out.npz") == 2
  assert words in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "out.npz")


def test_out_in_missing_folder_exits_2(tmp_path, capsys):
  out = str(tmp_path / "nowhere" / "out.npz")
  assert _solve(_write(str(tmp_path), "npy", A), "--d", 4, "--out", out) == 2
  _error_line(capsys, out)


def test_failed_write_keeps_existing_out_and_leaves_no_temporary(
  solved, tmp_path, monkeypatch, capsys
):
  out = str(tmp_path / "out.npz")
  with open(solved[0], "rb") as source, open(out, "wb") as copy:
    copy.write(source.read())
  before = open(out, "rb").read()

  def disk_full(file, **arrays):
    file.write(b"PK\x03\x04 half an archive")
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(np, "savez", disk_full)
  assert _solve(_write(str(tmp_path), "npy", A), "--d", D_OK, "--out", out) == 2
  assert "No space left on device" in _error_line(capsys, out)
  assert open(out, "rb").read() == before
  assert sorted(os.listdir(tmp_path)) == ["a.npy", "out.npz"]


CHANGED = {  # a solution file changed into a bad one
  "bad pattern": lambda a: {**a, "pattern_cols": a["pattern_cols"] + L},
  "format 3": lambda a: {**a, "format": np.str_("jaxattn-solution-3")},
  "no params": lambda a: {k: v for k, v in a.items() if k != "params"},
  "dense without W": lambda a: {**a, "params": np.str_("dense")},
  "unknown params": lambda a: {**a, "params": np.str_("random")},
  "identity, X too narrow": lambda a: {**a, "X": a["X"][:, 1:]},
}


@pytest.mark.parametrize(
  "content, words",
  [
    (None, "no such file"),
    (b"hello", "not a .npz archive"),
    ("npy", "not a .npz archive"),
    ("other npz", "missing X"),
    ("bad pattern", "column outside"),
    ("format 3", "format 'jaxattn-solution-3' is not one this jaxattn reads"),
    ("no params", "missing params"),
    ("dense without W", "missing w_q, w_k"),
    ("unknown params", "unknown params 'random'"),
    ("identity, X too narrow", "params 'identity' needs X of 2d = 2048 columns"),
  ],
)
def test_check_bad_file_exits_2(content, words, solved, tmp_path, capsys):
  path = str(tmp_path / "solution.npz")
  if content == "npy":
    np.save(str(tmp_path / "a.npy"), A)
    os.rename(tmp_path / "a.npy", path)
  elif content == "other npz":
    np.savez(path, A=A)
  elif content in CHANGED:
    with np.load(solved[0]) as saved:
      arrays = dict(saved)
    np.savez(path, **CHANGED[content](arrays))
  elif content is not None:
    open(path, "wb").write(content)
  assert main(["check", path]) == 2
  assert words in _error_line(capsys, path)


def test_top_n_keeps_the_largest_entries_and_says_what_it_dropped(tmp_path):
  a = np.array(
    [[4.0, 3.0, 2.0, 1.0], [1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 5.0, 0.0], [1.0, 2.0, 0.0, 3.0]]
  )
  np.save(tmp_path / "dense.npy", a)
  user = pattern_file.load_pattern(str(tmp_path / "dense.npy"), top_n=2)
  expected = np.array([[4.0, 3.0, 0, 0], [1.0, 1.0, 0, 0], [0, 0, 5.0, 0], [0, 2.0, 0, 3.0]])
  np.testing.assert_array_equal(np.asarray(user.pattern.to_dense()), expected)
  assert user.pattern.nnz == 2
  assert "dropped 4 of 11 nonzeros from 3 of 4 rows" in user.changes[0]
  assert "at most 0.333" in user.changes[0]  # row 1 loses a third of its weight
  assert user.dense_columns.tolist() == [1]  # rows 0, 1, 3 keep column 1: 3 > N
  assert "column 1; up to 3 nonzeros" in user.changes[1]


def test_dense_columns_are_kept_and_reported(tmp_path, capsys):
  a = np.eye(L)
  a[:, 3] = 0.5  # an attention sink: every row attends to column 3
  path = str(tmp_path / "sink.npy")
  np.save(path, a)
  user = pattern_file.load_pattern(path)
  assert user.pattern.nnz == 2 and user.dense_columns.tolist() == [3]
  np.testing.assert_array_equal(np.asarray(user.pattern.to_dense()), a)
  assert "column 3; up to 16 nonzeros" in user.changes[0]
  out = str(tmp_path / "out.npz")
  assert _solve(path, "--d", 2, "--out", out, "--save-uncertified") == 1
  printed = capsys.readouterr().out
  assert "outside the theorem: 1 column(s) have more than N=2" in printed
  assert "failing rows" in printed
  assert main(["check", out]) == 1  # a sink pattern is re-read, not refused


def test_examples_are_what_the_script_writes_and_certify(tmp_path, capsys):
  spec = importlib.util.spec_from_file_location(
    "make_examples", os.path.join(REPO, "examples", "make_examples.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  module.main(tmp_path)
  for name in ("banded.npy", "global_columns.mtx"):
    with (
      open(tmp_path / name, "rb") as fresh,
      open(os.path.join(REPO, "examples", name), "rb") as committed,
    ):
      assert fresh.read() == committed.read(), name
  out = str(tmp_path / "global_solution.npz")
  assert (
    _solve(os.path.join(REPO, "examples", "global_columns.mtx"), "--d", 2048, "--out", out) == 0
  )  # as in docs/your-pattern.md
  assert "column 0, 1; up to 64 nonzeros" in capsys.readouterr().out
  assert main(["check", out, "--float64"]) == 0


def test_from_dense_check_columns():
  a = np.eye(4)
  a[:, 0] = 1.0
  assert ja.SparsePattern.from_dense(a).nnz == 4
  assert ja.SparsePattern.from_dense(a, check_columns=False).nnz == 2
  with pytest.raises(ValueError, match="column 0 of A has 4 nonzeros, more than nnz=2"):
    ja.SparsePattern.from_dense(a, nnz=2)
  with pytest.raises(ValueError, match="row 1 of A has 2 nonzeros, more than nnz=1"):
    ja.SparsePattern.from_scipy(scipy.sparse.csr_array(a), nnz=1, check_columns=False)


def test_verify_grid_rejects_bad_arguments():
  pattern = ja.SparsePattern.from_dense(A)
  key = jax.random.PRNGKey(0)
  for grid, method, words in (
    ((8, 4), "jl", "increasing"),
    ((0, 4), "jl", "increasing"),
    ((4, 8), "nope", "unknown method"),
  ):
    with pytest.raises(ValueError, match=words):
      ja.verify_grid(key, pattern, grid, eps1=EPS1, eps2=EPS2, method=method)
  with pytest.raises(ValueError, match="eps2"):
    ja.verify_grid(key, pattern, (4, 8), eps1=EPS1, eps2=1.5)


def test_dense_check_on_a_hand_computed_case():
  # X W_Q = X W_K = X = [[1, 0], [0, 2]]: logits [[1, 0], [0, 4]].
  x, eye = np.array([[1.0, 0.0], [0.0, 2.0]]), np.eye(2)
  dense = ja.reference.dense_check(
    x, eye, eye, np.array([[1.0, 0.5], [0.0, 1.0]]), eps1=0.5, eps2=0.5
  )
  spread, gap = dense.spread, dense.gap
  np.testing.assert_allclose(spread, [1.0 - np.log(2.0), 0.0])  # (1 − 0) − (0 − ln ½)
  np.testing.assert_allclose(gap, [-np.inf, 0.0 - 4.0])


def test_no_traceback_in_a_real_process(tmp_path):
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "bench",
      "solve",
      str(tmp_path / "missing.mtx"),
      "--d",
      "8",
      "--out",
      str(tmp_path / "out.npz"),
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
    f"python -m bench solve: error: {tmp_path / 'missing.mtx'}: no such file"
  )


def test_mass_criterion_is_certified_saved_and_rechecked(solved, tmp_path, capsys):
  """--max-outside-mass η: solve builds for η and certifies under it, the file keeps η, and
  check re-verifies under the stored η (streamed and dense): a file whose η is lowered below
  the solution's outside mass fails, so check does not fall back to the ratio criterion.
  The ratio-certified solution carries most of its mass outside (it would fail at η)."""
  path, out = _write(str(tmp_path), "npy", A), str(tmp_path / "mass.npz")
  assert _solve(path, "--d", 512, "--eps1", 2, "--max-outside-mass", 0.3, "--out", out) == 0
  printed = capsys.readouterr().out
  assert "criterion mass" in printed and "(limit 0.3, mass criterion)" in printed
  with np.load(out) as saved:
    arrays = dict(saved)
  mass = float(arrays["report_outside_mass_max"])
  assert float(arrays["max_outside_mass"]) == 0.3 and mass <= 0.3
  assert main(["check", out, "--float64"]) == 0
  lowered = str(tmp_path / "lowered.npz")
  np.savez(lowered, **{**arrays, "max_outside_mass": np.float64(mass / 2)})
  capsys.readouterr()
  assert main(["check", lowered]) == 1 and "NOT certified" in capsys.readouterr().out
  assert main(["check", lowered, "--float64"]) == 1
  assert "dense NumPy  float64: ok False" in capsys.readouterr().out
  with np.load(solved[0]) as saved:
    assert float(saved["report_outside_mass_max"]) > 0.5 and "max_outside_mass" not in saved


def test_the_search_plan_is_the_cost_model_of_the_schedule_it_runs(capsys):
  """``bench solve --search`` plans and runs the schedule ``ja.min_d`` would choose (the cost
  model's, ``ja.schedule.choose_schedule``): optimize on 1,797 and 8,192 tokens is adaptive;
  its plan line is ``search_cost`` at the runner's rate, printed from ``MENTION_S`` on."""
  from jaxattn_bench import resources, runner
  from jaxattn_bench.commands import solve

  grid = ja.geometric_grid(4096, per_octave=2)
  assert ja.schedule.choose_schedule("optimize", 1797, 4, grid) == "adaptive"
  assert ja.schedule.choose_schedule("lstsq", 64, 3, grid) == "full"
  args = types.SimpleNamespace(method="optimize", search=True, d=None, out="x.npz")
  for length, nnz, d_grid in ((1797, 4, grid), (8192, 4, ja.geometric_grid(512, 2))):
    solve._plan(
      args, ja.patterns.random_regular(jax.random.PRNGKey(0), length=length, nnz=nnz), d_grid
    )
    seconds = (
      ja.schedule.search_cost("optimize", length, nnz, d_grid, schedule="adaptive")
      / runner.COST_RATE
    )
    shown = f"adaptive schedule: about {seconds:.0f} s" in capsys.readouterr().err
    assert shown == (seconds >= resources.MENTION_S), (length, seconds)
    assert length == 1797 or shown
