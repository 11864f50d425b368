"""The wiring: no import cycle, and imports only point down the layers (docs/getting-started.md,
"Layout").

Layers, bottom to top: the library ``jaxattn``; the experiments
``jaxattn_bench`` (folder bench/); the figures ``jaxattn_plots`` (folder
plots/); the commands (``jaxattn_bench.commands``, ``jaxattn_bench.cli`` and
the ``__main__`` modules). Inside the library, the base layer imports only
the pattern type, and each construction only the base (``optimize`` also
starts from ``lstsq`` and trains on the negatives of ``mining``, which streams with the tiling
``tiles`` that ``verify`` uses).
"""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = {
  "jaxattn": ROOT / "jaxattn",
  "jaxattn_bench": ROOT / "bench",
  "jaxattn_plots": ROOT / "plots",
}
COMMANDS = (
  "jaxattn_bench.commands",
  "jaxattn_bench.cli",
  "jaxattn_bench.__main__",
  "jaxattn_plots.__main__",
)
LAYERS = ("jaxattn", "jaxattn_bench", "jaxattn_plots", "commands")


def _modules() -> dict[str, pathlib.Path]:
  """Import name -> file of every module of the three packages."""
  modules = {}
  for package, folder in PACKAGES.items():
    for path in folder.rglob("*.py"):
      parts = path.relative_to(folder).with_suffix("").parts
      parts = parts[:-1] if parts[-1] == "__init__" else parts
      modules[".".join((package, *parts))] = path
  return modules


def _imports(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
  """The project modules that ``name`` imports anywhere in its source (function-level too)."""
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(
          package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
        )
      targets = [
        f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
      ]
    else:
      continue
    found |= {t for t in targets if t in known and t != name}
  return found


def import_graph() -> dict[str, set[str]]:
  """Module -> the project modules it imports explicitly (parents Python implies are no edges)."""
  modules = _modules()
  return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def layer(module: str) -> int:
  if module.startswith(COMMANDS):
    return LAYERS.index("commands")
  return LAYERS.index(module.split(".")[0])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components of several modules (Tarjan), or a module importing itself."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for target in sorted(graph[node]):
      if target not in index:
        visit(target)
        low[node] = min(low[node], low[target])
      elif target in on_stack:
        low[node] = min(low[node], index[target])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return found


def test_graph_sees_the_modules_and_their_imports():
  graph = import_graph()
  assert "jaxattn_bench.commands.run" in graph and "jaxattn_plots.figures" in graph
  assert "jaxattn._src.base" in graph["jaxattn._src.jl"]
  assert "jaxattn_plots" in graph["jaxattn_bench.commands.run"]  # a function-level import


def test_cycle_finder_finds_a_cycle():
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
  assert cycles(import_graph()) == []


def test_imports_point_down_the_layers():
  upward = [
    (source, target)
    for source, targets in import_graph().items()
    for target in targets
    if layer(target) > layer(source)
  ]
  assert upward == []


@pytest.mark.parametrize(
  "module, allowed",
  [
    ("jaxattn._src.base", {"jaxattn._src.pattern"}),
    ("jaxattn._src.pattern", set()),
    ("jaxattn._src.jl", {"jaxattn._src.base", "jaxattn._src.pattern"}),
    ("jaxattn._src.lstsq", {"jaxattn._src.base", "jaxattn._src.pattern"}),
    ("jaxattn._src.moment_curve", {"jaxattn._src.base", "jaxattn._src.pattern"}),
    (
      "jaxattn._src.optimize",
      {"jaxattn._src.base", "jaxattn._src.pattern", "jaxattn._src.lstsq", "jaxattn._src.mining"},
    ),
    ("jaxattn._src.mining", {"jaxattn._src.base", "jaxattn._src.pattern", "jaxattn._src.tiles"}),
    ("jaxattn._src.tiles", {"jaxattn._src.base", "jaxattn._src.pattern"}),
    (
      "jaxattn._src.verify",
      {
        "jaxattn._src.base",
        "jaxattn._src.pattern",
        "jaxattn._src.tiles",
        "jaxattn._src.certify",
        "jaxattn._src.exact",
        "jaxattn._src.options",
        "jaxattn._src.stream",
      },
    ),
    ("jaxattn._src.stream", {"jaxattn._src.pattern", "jaxattn._src.tiles", "jaxattn._src.certify"}),
    ("jaxattn._src.options", set()),
    ("jaxattn._src.certify", set()),
    ("jaxattn._src.exact", set()),
    ("jaxattn_bench.store", {"jaxattn_bench.errors", "jaxattn_bench.filesystems"}),
    ("jaxattn_bench.filesystems", set()),
    ("jaxattn_bench.merge", {"jaxattn_bench.errors", "jaxattn_bench.store"}),
  ],
)
def test_the_base_layer_and_constructions_import_only_below(module, allowed):
  assert import_graph()[module] <= allowed


def private_imports() -> list[tuple[str, str]]:
  """(module, name) for every ``from <project module> import _name`` across modules."""
  modules = _modules()
  found = []
  for name, path in modules.items():
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
      if isinstance(node, ast.ImportFrom) and node.module in modules and node.module != name:
        found += [
          (name, f"{node.module}.{alias.name}")
          for alias in node.names
          if alias.name.startswith("_") and not alias.name.startswith("__")
        ]
  return found


def test_no_private_name_is_imported_across_modules():
  assert private_imports() == []


def test_figures_read_only_the_jax_free_store():
  """plots/ (commands aside) reads results through the store and its error type, nothing else."""
  reads = {
    target
    for source, targets in import_graph().items()
    if source.startswith("jaxattn_plots") and layer(source) < LAYERS.index("commands")
    for target in targets
    if target.startswith("jaxattn_bench")
  }
  assert reads <= {"jaxattn_bench.store", "jaxattn_bench.errors"}


@pytest.mark.parametrize(
  "statement, absent",
  [
    ("import jaxattn", "optax"),
    ("import jaxattn._src.verify", "optax"),
    ("import jaxattn_plots, jaxattn_plots.__main__, jaxattn_bench.store", "jax"),
    ("import jaxattn_plots.__main__", "jaxattn_bench.runner"),
  ],
)
def test_imports_do_not_load_what_they_do_not_need(statement, absent):
  code = f"import sys; {statement}; print({absent!r} in sys.modules)"
  result = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
  )
  assert result.stdout.strip() == "False", result.stderr
