"""The law test: weighted fits recover known laws, prefer the right one, and stay undecided
on data too short to tell; bench run --seeds parses and rejects bad input."""

import json

import numpy as np
import pytest

from jaxattn_bench.cli import main as bench_main
from jaxattn_plots import fit as fitting

LONG = 2.0 ** np.arange(5, 17)


def synthetic(law, lengths, seed):
  """d = the true law + Gaussian noise of σ = 2% (half a step of a 2^(1/16) grid is 2.2%)."""
  truth = 35 * np.log(lengths) - 10 if law == "log" else 20 * lengths**0.3
  sigma = 0.02 * truth
  d = truth + np.random.default_rng(seed).normal(0, 1, truth.size) * sigma
  return d, sigma


@pytest.mark.parametrize("law", ["log", "power"])
def test_weighted_fit_recovers_the_law_and_prefers_it(law):
  d, sigma = synthetic(law, LONG, seed=3)
  log_fit, power_fit = (fitting.fit_weighted(name, LONG, d, sigma) for name in ("log", "power"))
  right = log_fit if law == "log" else power_fit
  wrong = power_fit if law == "log" else log_fit
  truth = 35.0 if law == "log" else 0.3
  assert right.param_low < truth < right.param_high and right.p_value > 1e-3
  assert wrong.p_value < 1e-6 and right.dof == LONG.size - 2 and right.n == LONG.size
  preferred, delta = fitting.weighted_preference(log_fit, power_fit)
  assert preferred == law and abs(delta) >= fitting.PREFERENCE_THRESHOLD
  np.testing.assert_allclose(right.chi2, np.sum(((d - right.predict(LONG)) / sigma) ** 2))


def test_exact_data_give_exact_parameters():
  sigma = np.full(LONG.size, 2.0)
  fit = fitting.fit_weighted("log", LONG, 35 * np.log(LONG) - 10, sigma)
  np.testing.assert_allclose([fit.param, fit.constant, fit.chi2], [35, -10, 0], atol=1e-6)
  fit = fitting.fit_weighted("power", LONG, 20 * LONG**0.3, sigma)
  np.testing.assert_allclose([fit.param, fit.constant], [0.3, 20], rtol=1e-6)


@pytest.mark.parametrize("law", ["log", "power"])
def test_short_range_is_undecided(law):
  short = 2.0 ** np.arange(5, 9)
  d, sigma = synthetic(law, short, seed=1)
  fits = [fitting.fit_weighted(name, short, d, sigma) for name in ("log", "power")]
  assert fitting.weighted_preference(*fits)[0] == "undecided"


def test_poor_fit_widens_intervals():
  d, sigma = synthetic("log", LONG, seed=0)
  honest = fitting.fit_weighted("log", LONG, d, sigma)
  tiny = fitting.fit_weighted("log", LONG, d, sigma / 10)  # χ²/dof ≈ 100: intervals scale back
  np.testing.assert_allclose(
    tiny.param_high - tiny.param_low, honest.param_high - honest.param_low, rtol=0.3
  )


def test_fit_table_has_estimators_and_one_verdict_per_series(tmp_path):
  from tests.test_plots import synthetic_store
  from jaxattn_plots.__main__ import main as plots_main

  synthetic_store(tmp_path / "r.sqlite")
  assert plots_main(["--results", str(tmp_path / "r.sqlite"), "--out", str(tmp_path / "f")]) == 0
  rows = json.loads((tmp_path / "f" / "fit.json").read_text())
  assert rows and all(
    r["estimator"] == "d_min" and r["preferred"] in ("log", "power", "undecided") for r in rows
  )
  assert len({(r["series"], r["estimator"], r["preferred"], r["delta_aic"]) for r in rows}) == 1


@pytest.mark.parametrize(
  "seeds, message",
  [
    ("3-1", "--seeds: expected A-B"),
    ("x", "--seeds: expected A-B"),
    ("1,1", "distinct"),
    ("0,-2", "--seeds: expected"),
    ("", "--seeds: expected"),
  ],
)
def test_bad_seeds_are_one_line(capsys, seeds, message):
  assert bench_main(["run", "--preset", "quick", "--seeds", seeds, "--plan"]) == 2
  err = capsys.readouterr().err
  assert message in err and err.count("\n") == 1 and err.startswith("jaxattn run: error:")


def test_seed_and_seeds_together_are_refused(capsys):
  assert bench_main(["run", "--preset", "quick", "--seed", "1", "--seeds", "0-1", "--plan"]) == 2
  assert "not both" in capsys.readouterr().err
