"""Sphinx extension: inline code that names a documented object (``ja.verify``,
``jaxattn.construct.jl``, ``ja.min_d()``) links to its API entry, so the narrative pages
cross-link to the reference without markup that GitHub would show raw."""

from __future__ import annotations

import re

from docutils import nodes

_NAME = re.compile(r"^(?:ja|jaxattn)\.([A-Za-z_][\w.]*)(?:\(\))?$")


def _link(app, doctree, docname: str) -> None:
  objects = app.env.get_domain("py").objects
  for literal in list(doctree.findall(nodes.literal)):
    match = _NAME.match(literal.astext())
    if match is None or isinstance(literal.parent, nodes.reference):
      continue
    entry = objects.get(f"jaxattn.{match.group(1)}")
    if entry is None or entry.docname == docname:
      continue
    uri = app.builder.get_relative_uri(docname, entry.docname) + "#" + entry.node_id
    reference = nodes.reference("", "", internal=True, refuri=uri)
    literal.replace_self(reference)
    reference.append(literal)


def setup(app):
  app.connect("doctree-resolved", _link)
  return {"parallel_read_safe": True}
