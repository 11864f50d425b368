"""The commands' persistent compilation cache (bench/compile_cache.py): where it lives, that a
command fills it, and that the off switch leaves it empty."""

import os
import pathlib
import subprocess
import sys

import pytest

from jaxattn_bench import compile_cache

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
  "environ, expected",
  [
    ({"HOME": "/h"}, "/h/.cache/jaxattn/jax"),
    ({"XDG_CACHE_HOME": "/x"}, "/x/jaxattn/jax"),
    ({"XDG_CACHE_HOME": "/x", "JAX_COMPILATION_CACHE_DIR": "/j"}, "/j"),
    ({"JAX_COMPILATION_CACHE_DIR": "/j", "JAXATTN_COMPILE_CACHE": "0"}, None),
    ({"JAXATTN_COMPILE_CACHE": "off"}, None),
  ],
)
def test_the_folder_follows_jax_then_xdg_and_the_switch_turns_it_off(
  environ, expected, monkeypatch
):
  monkeypatch.setenv("HOME", environ.get("HOME", "/h"))
  folder = compile_cache.folder(environ)
  assert (None if folder is None else str(folder)) == expected


@pytest.mark.parametrize("switch", [[], ["--no-compile-cache"]])
def test_a_command_fills_the_cache_unless_switched_off(switch, tmp_path):
  """``bench min_d`` leaves its programs in the cache folder; with ``--no-compile-cache`` it
  leaves none there."""
  cache = tmp_path / "cache"
  environ = {
    **os.environ,
    "JAX_COMPILATION_CACHE_DIR": str(cache),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
  }  # however fast this machine
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "bench",
      *switch,
      "min_d",
      "--length",
      "16",
      "--nnz",
      "1",
      "--trials",
      "2",
      "--d-max",
      "16",
      "--per-octave",
      "1",
    ],
    cwd=REPO,
    env=environ,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr
  entries = list(cache.rglob("*")) if cache.exists() else []
  assert bool(entries) == (not switch), entries
