"""The documentation site builds with no warning, and its API reference has every public name.

The build is README.md's documented command, ``python -m sphinx -W --keep-going -b html docs
OUT``, from scratch (``-E``), offline (no intersphinx in docs/conf.py).
"""

from __future__ import annotations

import html as htmllib
import importlib
import inspect
import pathlib
import re
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
import api_pages  # noqa: E402  (docs/_ext is Sphinx's extension folder, not a package)

MODULES = api_pages.MODULES
BUILD_SECONDS = 60


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp("site")
  start = time.perf_counter()
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "sphinx",
      "-E",
      "-W",
      "--keep-going",
      "-q",
      "-b",
      "html",
      "docs",
      str(out),
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
  assert time.perf_counter() - start < BUILD_SECONDS
  return out


def test_docs_build_without_warnings(site):
  for page in (
    "index",
    "getting-started",
    "tutorial-construction",
    "hardware",
    "results",
    "api",
    "commands",
  ):
    assert (site / f"{page}.html").is_file(), page
  hardware = (site / "hardware.html").read_text(encoding="utf-8")
  assert 'id="measured-on-an-nvidia-h200"' in hardware  # the README links this anchor


def test_namedtuple_fields_show_their_type_and_comment(site):
  """Signatures carry their types, and no field reads Python's "Alias for field number N": each
  shows its annotation and the comment beside it in the class body
  (docs/_ext/namedtuple_fields.py)."""
  pages = [p.read_text(encoding="utf-8") for p in (site / "api").glob("*.html")]
  assert len(pages) == len(api_pages.pages()) > 90
  assert not any("Alias for field number" in html for html in pages)
  html = (site / "api" / "jaxattn.Report.html").read_text(encoding="utf-8")
  report = html[html.index('id="jaxattn.Report.ratio_error"') :][:1500]
  assert "exp(max_i spread_i) − 1" in report and "Float[Array" in report
  html = (site / "api" / "jaxattn.min_d.html").read_text(encoding="utf-8")
  entry = html[html.index('id="jaxattn.min_d"') :][:6000]
  signature = htmllib.unescape(re.sub(r"<[^>]+>", "", entry))
  assert "key: PRNGKeyArray" in signature and "compute: Compute = Compute()" in signature


def test_every_public_name_is_in_the_api_reference(site):
  """Each name of each public module's ``__all__`` has an entry (``module.name``) on the API
  page or its own page, or is the same object as a name documented under another module, or
  is a documented module."""
  html = "".join(
    p.read_text(encoding="utf-8") for p in [site / "api.html", *(site / "api").glob("*.html")]
  )
  ids = set(re.findall(r'id="([^"]+)"', html))
  documented = {}
  for module_name in MODULES:
    module = importlib.import_module(module_name)
    for name in module.__all__:
      if f"{module_name}.{name}" in ids:
        documented[id(getattr(module, name))] = f"{module_name}.{name}"
  missing = []
  for module_name in MODULES:
    module = importlib.import_module(module_name)
    for name in module.__all__:
      obj = getattr(module, name)
      full = f"{module_name}.{name}"
      if inspect.ismodule(obj):
        found = f"module-{obj.__name__}" in ids
      else:
        found = full in ids or id(obj) in documented
      if not found:
        missing.append(full)
  assert not missing, f"not in docs/api.md: {missing}"


def test_every_public_function_and_class_has_a_docstring():
  """autodoc lists undocumented members too, so an empty docstring is caught here."""
  missing = []
  for module_name in MODULES:
    module = importlib.import_module(module_name)
    for name in module.__all__:
      obj = getattr(module, name)
      if inspect.isfunction(obj) or inspect.isclass(obj) or hasattr(obj, "__wrapped__"):
        doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        if not doc or doc.startswith(f"{name}("):  # NamedTuple's generated docstring
          missing.append(f"{module_name}.{name}")
  assert not missing, missing


def test_the_commands_page_has_every_commands_help(site):
  from jaxattn_bench.cli import COMMANDS

  html = (site / "commands.html").read_text(encoding="utf-8")
  for name in COMMANDS:
    assert f'id="python-m-bench-{name.replace("_", "-")}"' in html, name
  assert html.count("usage: python -m bench") == len(COMMANDS) + 1


def test_each_function_and_class_has_its_committed_page():
  """docs/api/ holds exactly the pages docs/_ext/api_pages.py writes (one per public function
  and class): a new public name without its page, or a stale page, fails here."""
  committed = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "api").glob("*")}
  assert committed == api_pages.pages()


def test_the_narrative_pages_link_names_to_their_api_entries(site):
  """Inline code naming a documented object links to it (docs/_ext/api_links.py)."""
  html = (site / "definitions.html").read_text(encoding="utf-8")
  assert (
    'href="api/jaxattn.verify.html#jaxattn.verify"><code class="docutils literal '
    'notranslate"><span class="pre">ja.verify</span>'
  ) in html
  assert 'href="api/jaxattn.construct.NESTED' not in html  # a constant stays on api.md
  assert 'href="api.html#jaxattn.construct.NESTED"' in html
