"""``ruff check .`` passes with the rule set of pyproject.toml, and ``ruff format`` has laid the
code out; functions, parameters and modules stay within the house's sizes; mypy finds no error."""

import re
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_ruff_passes():
  result = subprocess.run(
    [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_the_code_is_laid_out_by_ruffs_formatter():
  """``ruff format --check .``: the layout is the formatter's, with the house's two-space indent
  (pyproject.toml); ``ruff format .`` writes it."""
  result = subprocess.run(
    [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_no_function_is_longer_than_sixty_lines():
  """Functions of the library, the benchmarks and the figures stay short enough to read at once:
  above 60 lines of code (signature and body as the formatter writes them; the docstring,
  documentation, apart), split them into named steps."""
  import ast

  long = []
  for folder in ("jaxattn", "bench", "plots"):
    for path in sorted((ROOT / folder).rglob("*.py")):
      for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
          docstring = ast.get_docstring(node, clean=False) is not None
          first = node.body[0]
          lines = node.end_lineno - node.lineno + 1
          lines -= first.end_lineno - first.lineno + 1 if docstring else 0
          if lines > 60:
            long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
  assert long == []


def test_no_function_takes_more_than_twelve_parameters():
  """1.0's rule (docs/api.md, "Options (1.0)"): a function of the library, the benchmarks or the
  figures takes at most 12 parameters, grouped where they travel together (``ja.Compute``,
  ``ja.construct.Training``, ``SearchSpec``); a public entry point at most 3 positional ones,
  and then at most 12 by keyword."""
  import ast

  many = []
  for folder in ("jaxattn", "bench", "plots"):
    for path in sorted((ROOT / folder).rglob("*.py")):
      for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
          args = node.args
          positional = len(args.posonlyargs) + len(args.args) + bool(args.vararg)
          keyword = len(args.kwonlyargs) + bool(args.kwarg)
          entry = positional <= 3 and keyword <= 12
          if positional + keyword > 12 and not entry:
            many.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
  assert many == []


def test_no_library_module_is_longer_than_five_hundred_lines():
  """A module per job (1.0): a module of ``jaxattn`` over ~500 lines does more than one."""
  long = {
    str(path.relative_to(ROOT)): n
    for path in sorted((ROOT / "jaxattn").rglob("*.py"))
    if (n := len(path.read_text(encoding="utf-8").splitlines())) > 500
  }
  assert long == {}


def test_the_library_the_commands_and_the_plots_type_check(tmp_path):
  """mypy (pyproject.toml's ``[tool.mypy]``) finds no error in ``jaxattn``, ``bench`` and ``plots``.
  The last two are installed as ``jaxattn_bench`` and ``jaxattn_plots`` (a mapping mypy does not
  follow), so they are checked under those names through links in a folder of their own.
  Third-party packages without type information are listed there and read as Any; about 16 s
  from cold. (It found ``bench perf --causal`` passing ε positionally to ``ja.verify``.)"""
  for name, folder in (
    ("jaxattn", "jaxattn"),
    ("jaxattn_bench", "bench"),
    ("jaxattn_plots", "plots"),
  ):
    (tmp_path / name).symlink_to(ROOT / folder)
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "mypy",
      "--config-file",
      str(ROOT / "pyproject.toml"),
      "--cache-dir",
      str(tmp_path / "cache"),
      "-p",
      "jaxattn",
      "-p",
      "jaxattn_bench",
      "-p",
      "jaxattn_plots",
    ],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
  modules = sum(
    1 for folder in ("jaxattn", "bench", "plots") for _ in (ROOT / folder).rglob("*.py")
  )
  checked = re.search(r"no issues found in (\d+) source files", result.stdout)
  assert checked and int(checked.group(1)) >= modules, result.stdout  # all three were read
