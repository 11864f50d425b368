"""``{command-help}``: every ``python -m bench`` command's ``--help``, as the parser prints it."""

from __future__ import annotations

import argparse
import importlib

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def help_texts() -> dict[str, str]:
  """``--help`` of ``python -m bench`` and of every command in ``jaxattn_bench.cli.COMMANDS``."""
  from jaxattn_bench import cli  # noqa: PLC0415  (only when the directive runs)

  parser = argparse.ArgumentParser(prog="python -m bench", description=cli.__doc__.splitlines()[0])
  subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  for name in cli.COMMANDS:
    importlib.import_module(f"jaxattn_bench.commands.{name}").add_parser(subparsers)
  texts = {"python -m bench": parser.format_help()}
  texts.update(
    {f"python -m bench {name}": sub.format_help() for name, sub in subparsers.choices.items()}
  )
  return texts


class CommandHelp(SphinxDirective):
  """One section per command, each with its ``--help`` as a literal block."""

  def run(self) -> list[nodes.Node]:
    """The sections, in the order of ``COMMANDS``."""
    sections = []
    for title, text in help_texts().items():
      section = nodes.section(ids=[nodes.make_id(title)])
      section += nodes.title(text=title)
      section += nodes.literal_block(text, text, language="text")
      sections.append(section)
    return sections


def setup(app) -> dict:
  """Registers ``command-help``."""
  app.add_directive("command-help", CommandHelp)
  return {"parallel_read_safe": True, "parallel_write_safe": True}
