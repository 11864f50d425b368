"""Sphinx extension: a NamedTuple field's entry shows its type and the comment written beside it
in the class body, instead of Python's "Alias for field number N"."""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import io
import re
import textwrap
import tokenize

_ALIAS = re.compile(r"^Alias for field number \d+$")


def _owner(name: str):
  """The class of the dotted ``name`` of one of its fields (``jaxattn.Report.ok``), or None."""
  parts = name.split(".")
  for split in range(len(parts) - 1, 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:split]))
    except ImportError:
      continue
    for part in parts[split:-1]:
      obj = getattr(obj, part, None)
    return obj if inspect.isclass(obj) else None
  return None


@functools.cache
def field_notes(cls) -> dict[str, tuple[str, str]]:
  """field -> (annotation, the comment at the end of its line) of a class body (read once per
  class)."""
  source = textwrap.dedent(inspect.getsource(cls))
  comments = {
    token.start[0]: token.string.lstrip("#").strip()
    for token in tokenize.generate_tokens(io.StringIO(source).readline)
    if token.type == tokenize.COMMENT
  }
  body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
  return {
    node.target.id: (
      ast.get_source_segment(source, node.annotation) or "",
      comments.get(node.lineno, ""),
    )
    for node in body
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
  }


def _describe(app, what, name, obj, options, lines: list[str]) -> None:
  if not lines or not _ALIAS.match(lines[0].strip()):
    return
  owner = _owner(name)
  notes = field_notes(owner) if owner is not None else {}
  annotation, comment = notes.get(name.rsplit(".", 1)[-1], ("", ""))
  lines[:] = [comment, ""] if comment else []
  if annotation:
    lines.append(f"Type: ``{annotation}``")


def setup(app) -> dict:
  app.connect("autodoc-process-docstring", _describe)
  return {"parallel_read_safe": True}
