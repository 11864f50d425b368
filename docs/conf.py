"""Sphinx configuration of the jaxattn documentation site (offline: no intersphinx).

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
(``tests/test_docs.py`` runs the same build with warnings as errors).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

project = "jaxattn"
author = "the jaxattn authors"
copyright = "2026, the jaxattn authors"  # noqa: A001  (Sphinx's name)

extensions = [
  "myst_parser",
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "command_help",
  "namedtuple_fields",
  "api_links",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
# The symbol pages in api/ are committed (docs/_ext/api_pages.py writes them); a name of an
# autosummary table without its page is a warning, so an error of the -W build.
autosummary_generate = False
root_doc = "index"
exclude_patterns = ["_build", "_ext", "design"]  # design: working notes for contributors, not pages
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]
# A fence's first word picks the highlighting; the words after it ("text output",
# "toml file=my_grid.toml") are for the tests that run the pages (tests/doc_blocks.py).
myst_fence_as_directive = []

autodoc_member_order = "bysource"
autodoc_typehints = "signature"  # with jaxtyping shapes, e.g. Float[Array, "L d"]
autodoc_preserve_defaults = True  # "compute: Compute = Compute()", as written, not its repr
autodoc_type_aliases = {"PRNGKeyArray": "PRNGKeyArray", "Sampler": "Sampler"}  # by name, unexpanded
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" of a NamedTuple as fields of its page, not a second entry

html_theme = "furo"
html_title = "jaxattn"


def _escape_bars(lines: list[str]) -> None:
  """|x| in the docstrings is an absolute value (or a set's size), which reStructuredText
  would read as a substitution: escape every bar outside ``inline literals`` and literal
  blocks (the lines indented under a paragraph that ends in ``::``)."""
  literal_indent = None
  for i, line in enumerate(lines):
    indent = len(line) - len(line.lstrip())
    if literal_indent is not None and line.strip() and indent <= literal_indent:
      literal_indent = None
    if literal_indent is None:
      parts = line.split("``")
      lines[i] = "``".join(
        part if k % 2 else part.replace("|", "\\|") for k, part in enumerate(parts)
      )
      if line.rstrip().endswith("::"):
        literal_indent = indent


def setup(app) -> None:
  """Escapes the docstrings' absolute-value bars before they are parsed."""
  app.connect(
    "autodoc-process-docstring", lambda app, what, name, obj, options, lines: _escape_bars(lines)
  )
