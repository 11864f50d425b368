"""``ruff check .`` passes with the rule set of pyproject.toml."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_ruff_passes():
  result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_no_function_is_longer_than_sixty_lines():
  """Functions of the library and the figures stay short enough to read at once (docstrings
  included): above 60 lines, split them into named steps."""
  import ast
  long = []
  for folder in ("jaxattn", "plots"):
    for path in sorted((ROOT / folder).rglob("*.py")):
      for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
          if node.end_lineno - node.lineno + 1 > 60:
            long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
  assert long == []
