"""One page per public function and class (``docs/api/NAME.rst``), listed by the ``autosummary``
tables of ``docs/api.md``; constants stay on that page.

``python docs/_ext/api_pages.py`` writes the pages from the public modules' ``__all__``;
``tests/test_docs.py`` checks that the committed pages are exactly those it writes. A name a
second module re-exports is documented once, under the first module of ``MODULES``.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib

MODULES = (
  "jaxattn",
  "jaxattn.certify",
  "jaxattn.construct",
  "jaxattn.patterns",
  "jaxattn.reference",
  "jaxattn.schedule",
  "jaxattn.stats",
  "jaxattn.theory",
)
FOLDER = pathlib.Path(__file__).resolve().parent.parent / "api"


def kind(obj) -> str | None:
  """ "class", "function", or None for what stays on the API page (constants, modules)."""
  if inspect.isclass(obj):
    return "class"
  if inspect.isroutine(obj) or inspect.isroutine(getattr(obj, "__wrapped__", None)):
    return "function"
  return None


def symbols() -> dict[str, list[tuple[str, str]]]:
  """Module -> [(full name, kind)] of the functions and classes it documents, in ``__all__``
  order, each object once."""
  seen: set[int] = set()
  found: dict[str, list[tuple[str, str]]] = {}
  for module_name in MODULES:
    module = importlib.import_module(module_name)
    found[module_name] = []
    for name in module.__all__:
      obj = getattr(module, name)
      if kind(obj) is not None and id(obj) not in seen:
        seen.add(id(obj))
        found[module_name].append((f"{module_name}.{name}", kind(obj)))  # type: ignore[arg-type]
  return found


def page(full_name: str, what: str) -> str:
  """The reStructuredText of one symbol's page."""
  return f"{full_name}\n{'=' * len(full_name)}\n\n.. auto{what}:: {full_name}\n"


def pages() -> dict[str, str]:
  """File name -> text of every page."""
  return {
    f"{name}.rst": page(name, what) for entries in symbols().values() for name, what in entries
  }


def main() -> None:
  FOLDER.mkdir(exist_ok=True)
  for stale in set(p.name for p in FOLDER.glob("*.rst")) - set(pages()):
    (FOLDER / stale).unlink()
  for name, text in pages().items():
    (FOLDER / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
  main()
