"""``bench perf``: its NumPy baseline checks the same thing as ``ja.verify``; the CLI runs."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattn as ja
from jaxattn_bench import resources
from jaxattn_bench.cli import main as bench_main
from jaxattn_bench.perf import numpy_check


@pytest.mark.parametrize("d", [8, 512])  # fails, then passes
def test_numpy_baseline_agrees_with_verify(d):
  pattern = ja.patterns.random_sparse(jax.random.PRNGKey(d), length=64, nnz=2, a_min=0.3)
  sol = ja.construct.jl(jax.random.PRNGKey(1), pattern, d=d, eps1=1.0, eps2=0.5)
  report = ja.verify(sol, pattern, eps1=1.0, eps2=0.5)
  ok, ratio_error, leak = numpy_check(
    *(
      np.asarray(a) for a in (sol.X, sol.w_q, sol.w_k, pattern.cols, pattern.weights, pattern.valid)
    ),
    1.0,
    0.5,
  )
  assert ok == bool(report.ok) == (d == 512)
  np.testing.assert_allclose([ratio_error, leak], [report.ratio_error, report.leak], rtol=1e-4)


def test_bfloat16_option_and_bad_dtype():
  pattern = ja.patterns.random_regular(jax.random.PRNGKey(0), length=32, nnz=1, a_min=0.5)
  sol = ja.construct.jl(jax.random.PRNGKey(1), pattern, d=64, eps1=1.0, eps2=0.5)
  report = ja.verify(sol, pattern, eps1=1.0, eps2=0.5, layer_dtype=jnp.bfloat16)
  assert report.leak.dtype == jnp.float32
  assert float(report.leak) != float(
    ja.verify(sol, pattern, eps1=1.0, eps2=0.5).leak
  )  # rounding shows
  with pytest.raises(ValueError, match="layer_dtype"):
    ja.verify(sol, pattern, eps1=1.0, eps2=0.5, layer_dtype=jnp.int32)


def test_cli_prints_ratios_and_child_memory(capsys):
  status = bench_main(
    [
      "perf",
      "--length",
      "256",
      "--d",
      "32",
      "--repeats",
      "1",
      "--memory",
      "--memory-length",
      "512",
      "--memory-d",
      "16",
    ]
  )
  captured = capsys.readouterr()
  out = captured.out
  assert status == 0, captured.err
  for figure in (
    "a/d",
    "b/a",
    "e/a",
    "peak RSS",
    "(d) ceiling, one product",
    "(d) ceiling, 256-row blocks",
    "bfloat16 arithmetic",
    "(a) certified, bfloat16",
    "(e) certified search, float32",
    "certified float32 / float32, search (e)",
    "search cost per level",
  ):
    assert figure in out
  # the certified rows decide what the float64 reference decides
  reference = re.search(r"float64 dense reference\s+(True|False)", out).group(1)
  assert re.search(rf"\(a\) certified, float32\s+[\d.]+\s+{reference}; rows", out)


def test_level_cost_inverts_the_cost_model():
  """t ∝ d_max + c·G: the times of G levels and of one level give back c."""
  from jaxattn_bench import perf

  d_max, levels, c = 724, 17, 34.0
  assert perf.level_cost(d_max + c * levels, d_max + c, levels, d_max) == pytest.approx(c)


def test_cli_without_numpy_skips_b(monkeypatch, capsys):
  """Also guards a resource estimate that refuses everything: L = 64 runs within 1 GB."""
  fake = lambda *_: resources.Available(10**9, "test limit")
  monkeypatch.setattr(resources, "available_memory", fake)
  assert bench_main(["perf", "--length", "64", "--d", "16", "--repeats", "1", "--no-numpy"]) == 0
  out = capsys.readouterr().out
  assert "(b) NumPy" not in out and "(a) ja.verify" in out
  assert "b/a  NumPy time / verify time                   = skipped (--no-numpy)" in out


def test_cli_sweeps_tiles_and_prints_the_best(capsys):
  status = bench_main(
    [
      "perf",
      "--sweep-tiles",
      "--length",
      "64",
      "--d",
      "16",
      "--repeats",
      "1",
      "--layer-dtype",
      "bfloat16",
      "--tile-rows",
      "16,64,512",
      "--tile-keys",
      "32,100",
    ]
  )
  out = capsys.readouterr().out
  assert status == 0
  tiles = [tuple(line.split()[:2]) for line in out.splitlines() if line[:6].strip().isdigit()]
  # 512 rows and 100 keys clamp to L = 64
  assert tiles == [("16", "32"), ("16", "64"), ("64", "32"), ("64", "64")]
  for name in ("verify", "search"):
    best = re.findall(rf"^best {name} tile \(bfloat16\): rows=(\d+) keys=(\d+) ", out, re.M)
    assert len(best) == 1 and best[0] in tiles
  with pytest.raises(SystemExit):
    bench_main(["perf", "--sweep-tiles", "--tile-rows", "0,16"])


def test_cli_optimize_reports_both_variants_and_fails_on_disagreement(capsys, monkeypatch):
  """``perf --optimize`` with the children's figures given: a row per variant, the run-time
  ratio, and exit status 1 when ``ja.verify`` and the float64 reference disagree (guards the
  check that makes the command an independent test of optimize's certificate)."""
  from jaxattn_bench.commands import perf as command

  figures = dict(
    compile_s=1.0,
    run_s=2.0,
    steps=70,
    passes=8,
    passed=True,
    ok=True,
    leak=0.46,
    ratio_error=0.4,
    reference_ok=True,
    reference_leak=0.46,
    peak_rss_kib=2**19,
  )
  runs = []

  def child(*arguments):
    runs.append(arguments)
    return {**figures, "run_s": 6.0} if arguments[-1] == "dense" else figures

  monkeypatch.setattr(command, "_child", child)
  assert bench_main(["perf", "--optimize", "--optimize-length", "64", "--optimize-d", "6"]) == 0
  out = capsys.readouterr().out
  assert [r[:4] for r in runs] == [("optimize", 64, 6, 2)] * 2
  assert "dense / hard negatives: run time 3.00x" in out
  assert sum(line.startswith(("hard negatives", "dense loss ")) for line in out.splitlines()) == 2
  figures["reference_ok"] = False
  assert bench_main(["perf", "--optimize", "--optimize-length", "64"]) == 1


def test_cli_causal_times_both_layers(capsys):
  """``bench perf --causal`` (docs/causal.md) verifies and searches both layers and prints the
  speed-ups; its verdicts are certified."""
  assert bench_main(["perf", "--causal", "--length", "64", "--d", "16", "--repeats", "1"]) == 0
  out = capsys.readouterr().out
  for layer in ("bidirectional", "causal"):
    assert re.search(rf"\(a\) ja.verify, {layer} .* certified True", out), out
  assert "causal speed-up, verify (a)" in out and "causal speed-up, search (e)" in out
