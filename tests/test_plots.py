"""Fits and figures (plots): known slopes are recovered, censored points are shown."""

import json

import numpy as np
import pytest

import jaxattn as ja
from jaxattn_bench.store import ResultsStore
from jaxattn_plots import fit as fitting
from jaxattn_plots import figures
from jaxattn_plots.__main__ import main as plots_main

LENGTHS = np.array([32, 64, 128, 256, 512, 1024, 2048], float)


def test_fit_line_recovers_known_slope():
  rng = np.random.default_rng(0)
  x = np.linspace(0, 10, 40)
  fit = fitting.fit_line(x, 3.0 * x - 2.0 + rng.normal(0, 0.5, x.size))
  assert fit.slope_low < 3.0 < fit.slope_high and fit.slope_high - fit.slope_low < 0.3
  assert abs(fit.intercept + 2.0) < 0.5 and fit.r2 > 0.98 and fit.n == 40
  np.testing.assert_allclose(fit.predict([0.0, 1.0]), [fit.intercept, fit.intercept + fit.slope])


def test_log_law_recovers_slope_and_prefers_log_over_power():
  rng = np.random.default_rng(1)
  lengths = np.repeat(LENGTHS, 3)
  d = 40.0 * np.log(lengths) + 10.0 + rng.normal(0, 4, lengths.size)
  log_fit, power_fit = fitting.fit_log_law(lengths, d), fitting.fit_power_law(lengths, d)
  assert log_fit.param_low < 40.0 < log_fit.param_high and log_fit.param_low > 0
  assert log_fit.r2 > 0.95 and log_fit.r2 > power_fit.r2 and log_fit.n == 21
  low, high = log_fit.band(LENGTHS)
  assert np.all(low < log_fit.predict(LENGTHS)) and np.all(log_fit.predict(LENGTHS) < high)


def test_power_law_recovers_exponent():
  d = 3.0 * LENGTHS**0.5
  power_fit = fitting.fit_power_law(LENGTHS, d)
  np.testing.assert_allclose([power_fit.param, power_fit.constant, power_fit.r2], [0.5, 3.0, 1.0])
  np.testing.assert_allclose(power_fit.predict(LENGTHS), d)
  assert fitting.fit_log_law(LENGTHS, d).r2 < 0.95


def test_fit_needs_three_points():
  with pytest.raises(ValueError, match=">= 3 points"):
    fitting.fit_line([1.0, 2.0], [1.0, 2.0])
  with pytest.raises(ValueError, match="two distinct x"):
    fitting.fit_line([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])


def _result(d_grid, d_min, trials=8):
  d_grid = np.asarray(d_grid)
  successes = np.where(d_grid >= (d_min or 10**9), trials, 0)
  low, high = ja.stats.clopper_pearson(successes, trials)
  return ja.MinDResult(d_min=d_min, d_grid=d_grid, successes=successes, trials=trials,
                       success_rate=successes / trials, ci_low=low, ci_high=high)


def synthetic_store(path):
  """d_min = 30 ln L − 60 over L (one point above the grid), plus N and ε1 sweeps at L = 256."""
  base = {"family": "random_regular", "method": "jl", "nnz": 1, "a_min": 0.2, "eps1": 0.5,
          "eps2": 0.5, "trials": 8, "delta": 0.1}
  grid = [2**k for k in range(3, 11)]
  with ResultsStore(path) as store:
    run = store.start_run({"seed": 0, "backend": "cpu"})
    for length in [32, 64, 128, 256, 512, 1024, 2048, 4096]:
      d_min = round(30 * np.log(length) - 60) if length < 4096 else None
      grid_l = sorted(set(grid) | ({d_min} if d_min else set()))
      store.add(run, {**base, "length": length, "d_grid": grid_l}, 0, _result(grid_l, d_min),
                1000 + length, 1.0)
    for nnz, d_min in [(2, 400), (3, 700)]:
      store.add(run, {**base, "length": 256, "nnz": nnz, "d_grid": grid}, 0,
                _result(grid, d_min), 2000, 1.0)
    for eps1, d_min in [(1.0, 64), (2.0, 32)]:
      store.add(run, {**base, "length": 256, "eps1": eps1, "d_grid": grid}, 0,
                _result(grid, d_min), 900, 1.0)


def test_figures_and_fit_from_synthetic_results(tmp_path, capsys):
  synthetic_store(tmp_path / "r.sqlite")
  assert plots_main(["--results", str(tmp_path / "r.sqlite"), "--out", str(tmp_path / "f")]) == 0
  printed = capsys.readouterr().out
  assert "log: d = a ln L + b" in printed and "power: d = c L^alpha" in printed
  for name in figures.FIGURES:
    for suffix in ("png", "pdf"):
      assert (tmp_path / "f" / f"{name}.{suffix}").stat().st_size > 1000
  rows = json.loads((tmp_path / "f" / "fit.json").read_text())
  log_row = next(r for r in rows if r["law"].startswith("log"))
  # Rounded 30 ln L − 60 over L = 32..2048; the point above the grid is left out but counted.
  assert abs(log_row["param"] - 30) < 0.5 and log_row["r2"] > 0.999
  assert log_row["n"] == 7 and log_row["not_reached"] == 1 and log_row["d_ge_L"] == 2
  assert (tmp_path / "f" / "fit.csv").read_text().startswith("series,law,param")


def test_censored_points_are_drawn_not_dropped(tmp_path):
  synthetic_store(tmp_path / "r.sqlite")
  with ResultsStore(tmp_path / "r.sqlite") as store:
    records = store.records()
  fig = figures.figure_d_vs_length(records)
  triangles = [line for ax in fig.axes for line in ax.get_lines()
               if line.get_marker() == "^" and len(line.get_xdata())]
  open_circles = [line for ax in fig.axes for line in ax.get_lines()
                  if line.get_marker() == "o" and line.get_markerfacecolor() == "white"
                  and len(line.get_xdata())]
  assert triangles and all(list(t.get_xdata()) == [4096] and list(t.get_ydata()) == [1024]
                           for t in triangles)
  assert all(sorted(c.get_xdata()) == [32, 64] for c in open_circles) and open_circles
  record = figures.threshold_record(records)
  assert record.params["length"] == 2048 and record.d_min is not None


def test_plots_cli_errors(tmp_path, capsys):
  assert plots_main(["--results", str(tmp_path / "missing.sqlite")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("python -m plots: error: no results file") and err.count("\n") == 1


def test_points_differing_only_in_d_grid_count_once(tmp_path):
  synthetic_store(tmp_path / "r.sqlite")
  with ResultsStore(tmp_path / "r.sqlite") as store:
    run = store.start_run({"seed": 0})
    records = store.records()
    longest = max(records, key=lambda r: len(r.d))
    coarse = {**longest.params, "d_grid": [64, 4096]}
    store.add(run, coarse, 0, _result([64, 4096], 4096), 1, 1.0)
    store.add(run, coarse, 1, _result([64, 4096], 4096), 1, 1.0)  # another seed: new trials
    records = store.records()
  kept = figures.distinct(records)
  assert len(records) == len(kept) + 1 and longest.params in [r.params for r in kept]
  assert sum(r.params["d_grid"] == [64, 4096] for r in kept) == 1
