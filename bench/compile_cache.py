"""JAX's persistent compilation cache for the commands (docs/scale-and-speed.md, "Compilation
cache"): a second run of the same programs reads them from disk instead of compiling them.

The folder is ``$JAX_COMPILATION_CACHE_DIR`` when set (JAX's own variable), else
``$XDG_CACHE_HOME/jaxattn/jax`` (``~/.cache/jaxattn/jax``). ``--no-compile-cache`` or
``JAXATTN_COMPILE_CACHE=0`` turns it off. Programs that took at least
``MIN_COMPILE_S`` to compile are kept (``$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``
wins): low enough for the presets' searches, whose programs take about a second each on
the 2-core CPU. JAX keys each entry by the program, its
options, the backend and the JAX version, so a stale entry is never read.
"""

from __future__ import annotations

import os
import pathlib

MIN_COMPILE_S = 0.2
OFF = ("0", "off", "false", "no")


def folder(environ=os.environ) -> pathlib.Path | None:
  """The cache folder the commands use, or None when it is turned off."""
  if environ.get("JAXATTN_COMPILE_CACHE", "1").strip().lower() in OFF:
    return None
  if environ.get("JAX_COMPILATION_CACHE_DIR"):
    return pathlib.Path(environ["JAX_COMPILATION_CACHE_DIR"])
  base = environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(base) / "jaxattn" / "jax"


def enable(environ=os.environ) -> pathlib.Path | None:
  """Points JAX's persistent cache at ``folder()`` (before the first compilation), or turns it
  off; returns the folder."""
  import jax

  path = folder(environ)
  if path is None:
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", str(path))
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in environ:  # JAX's own variable wins
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
  return path
