"""Fits and figures (plots): known slopes are recovered, censored points are shown."""

import json

import numpy as np
import pytest
from matplotlib.text import Text

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
  return ja.MinDResult(
    d_min=d_min,
    d_grid=d_grid,
    successes=successes,
    trials=trials,
    success_rate=successes / trials,
    ci_low=low,
    ci_high=high,
  )


def synthetic_store(path):
  """d_min = 30 ln L − 60 over L (one point above the grid), plus N and ε1 sweeps at L = 256.

  As in the quick preset, the series over L has T = 16 trials and the sweeps T = 8, so the
  sweeps' point at L = 256, N = 1, ε1 = 0.5 is the series' one, with T = 16.
  """
  base = {
    "family": "random_regular",
    "method": "jl",
    "nnz": 1,
    "a_min": 0.2,
    "eps1": 0.5,
    "eps2": 0.5,
    "dtype": "float32",
    "trials": 8,
    "delta": 0.1,
  }
  grid = [2**k for k in range(3, 11)]
  with ResultsStore(path) as store:
    run = store.start_run({"seed": 0, "backend": "cpu"})
    for length in [32, 64, 128, 256, 512, 1024, 2048, 4096]:
      d_min = round(30 * np.log(length) - 60) if length < 4096 else None
      grid_l = sorted(set(grid) | ({d_min} if d_min else set()))
      store.add(
        run,
        {**base, "length": length, "d_grid": grid_l, "trials": 16},
        0,
        _result(grid_l, d_min, trials=16),
        1000 + length,
        1.0,
      )
    for nnz, d_min in [(2, 400), (3, 700)]:
      store.add(
        run, {**base, "length": 256, "nnz": nnz, "d_grid": grid}, 0, _result(grid, d_min), 2000, 1.0
      )
    for eps1, d_min in [(1.0, 64), (2.0, 32)]:
      store.add(
        run,
        {**base, "length": 256, "eps1": eps1, "d_grid": grid},
        0,
        _result(grid, d_min),
        900,
        1.0,
      )


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
  triangles = [
    line
    for ax in fig.axes
    for line in ax.get_lines()
    if line.get_marker() == "^" and len(line.get_xdata())
  ]
  open_circles = [
    line
    for ax in fig.axes
    for line in ax.get_lines()
    if line.get_marker() == "o" and line.get_markerfacecolor() == "white" and len(line.get_xdata())
  ]
  assert triangles and all(
    list(t.get_xdata()) == [4096] and list(t.get_ydata()) == [1024] for t in triangles
  )
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


# ---- figures that show what they say (issue 16 item 9) ---------------------------------------


def _per_trial_store(path):
  """Per-trial data: figure (a) with d_50 bars and d_{1−δ}, and single-trial scans at 3 seeds
  against a T = 16 reference (figure (e))."""
  base = {
    "family": "random_regular",
    "method": "jl",
    "nnz": 2,
    "a_min": 0.2,
    "eps1": 1.0,
    "eps2": 0.5,
    "dtype": "float32",
    "delta": 0.1,
  }
  grid = sorted({round(16 * 2 ** (k / 4)) for k in range(25)})  # 16 .. 1024, 4 per octave
  rng = np.random.default_rng(0)
  with ResultsStore(path) as store:
    run = store.start_run({"seed": 0, "backend": "cpu"})
    for length in [32, 64, 128, 256, 512]:
      centre = 20 * np.log(length)
      for seed, trials in [(0, 16), (1, 1), (2, 1), (3, 1)]:
        thresholds = np.array(grid)[
          np.searchsorted(grid, rng.normal(centre, 10, trials)).clip(0, len(grid) - 1)
        ]
        verdicts = np.array(grid)[None, :] >= thresholds[:, None]
        store.add(
          run,
          {**base, "length": length, "d_grid": grid, "trials": trials},
          seed,
          ja.MinDResult.from_verdicts(grid, verdicts, 0.1),
          2000,
          1.0,
        )


def _beyond_data():
  """``jaxattn_bench.beyond.collect``'s shape: moment_curve and optimize partly not reached."""
  from jaxattn_plots import beyond

  lengths = [64, 128, 256, 512, 1024]
  d_50 = {
    "jl": [1400, 1400, 1900, 1900, 2600],
    "lstsq": [40, 44, 52, 52, 60],
    "optimize": [6, 6, 8, 12, None],
    "moment_curve": [4, None, None, None, None],
  }
  main = {
    m: [
      dict(
        length=n,
        trials=8,
        d_grid=[2, 4, 8, 16, 32, 64, 128, 2048, 4096],
        top=8,
        d_median=d,
        d_median_low=None if d is None else 0.8 * d,
        d_median_high=None if d is None else 1.2 * d,
        d_min=d,
        logit_range=None if d is None else 3.0 * (i + 1),
        optimize=None,
      )
      for n, d in zip(lengths, values)
    ]
    for i, (m, values) in enumerate(d_50.items())
  }
  curve = {
    f"N={n} {t}": dict(
      largest=64 if t == "float32" else 4096,
      first_failure=None,
      tested_up_to=16384,
      logit_range={}
      if t == "float32"
      else {str(length): float(length) ** (2 * n) for length in (16, 64, 256, 1024, 4096, 16384)},
    )
    for n in (1, 2)
    for t in ("float32", "float64")
  }
  data = dict(main=main, curve=curve)
  data["fit"] = beyond.fit_slopes(data)
  return data


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
  """Every figure (runner's (a)–(e), beyond's two), drawn, with the original handles and labels
  of each legend (recorded as the legends are made: a legend keeps only copies)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.legend import Legend

  from jaxattn_plots import beyond

  folder = tmp_path_factory.mktemp("figures")
  synthetic_store(folder / "s.sqlite")
  _per_trial_store(folder / "t.sqlite")
  with ResultsStore(folder / "s.sqlite") as store:
    synthetic = store.records()
  with ResultsStore(folder / "t.sqlite") as store:
    per_trial = store.records()
  legends = {}
  make_legend = Legend.__init__

  def recording(self, parent, handles, labels, *args, **kwargs):
    legends[id(self)] = (list(handles), list(labels))
    make_legend(self, parent, handles, labels, *args, **kwargs)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(Legend, "__init__", recording)
    made = {
      **{name: make(synthetic) for name, make in figures.FIGURES.items()},
      "a_d_vs_length per-trial": figures.figure_d_vs_length(per_trial),
      "e_paper_scan": figures.figure_paper_scan(per_trial),
      "beyond d_50": beyond.figure_d50(_beyond_data()),
      "beyond logit range": beyond.figure_logit_range(_beyond_data()),
    }
  for fig in made.values():
    FigureCanvasAgg(fig).draw()
  return made, legends


FIGURE_NAMES = [
  *figures.FIGURES,
  "a_d_vs_length per-trial",
  "e_paper_scan",
  "beyond d_50",
  "beyond logit range",
]


def _legends(fig, recorded):
  found = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
  assert found, "no legend"
  return [(legend, *recorded[id(legend)]) for legend in found]


@pytest.mark.parametrize("name", FIGURE_NAMES)
def test_no_text_is_clipped_at_the_figure_edge(drawn, name):
  """Guards: the subtitles of (b) and (c) ran past the right edge of the figure and were cut."""
  fig = drawn[0][name]
  box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches, every drawn artist
  width, height = fig.get_size_inches()
  assert box.x0 >= -0.01 and box.y0 >= -0.01, (name, box)
  assert box.x1 <= width + 0.01 and box.y1 <= height + 0.01, (name, box, width)


def _has_data(handle) -> bool:
  if hasattr(handle, "get_xdata"):
    return len(handle.get_xdata()) > 0
  if hasattr(handle, "get_paths"):
    return any(len(path.vertices) for path in handle.get_paths())
  return any(_has_data(child) for child in handle.get_children() if child is not None)


def _style(handle) -> tuple | None:
  """Marker, line style and whether the marker is open, of a line (None for other artists)."""
  if not hasattr(handle, "get_marker"):
    return None
  return (handle.get_marker(), handle.get_linestyle(), str(handle.get_markerfacecolor()) == "white")


@pytest.mark.parametrize("name", FIGURE_NAMES)
def test_every_legend_entry_names_something_drawn(drawn, name):
  """Guards: keys drawn for what the figure does not hold ("not reached" with no triangle,
  "d_min ≥ L" with no open circle, jl_dim where none is drawn), and entries with no label.

  An entry is either an artist with data or a key (a black proxy) in the style of a line
  with data in the figure.
  """
  fig = drawn[0][name]
  drawn_styles = {
    _style(line) for ax in fig.axes for line in ax.get_lines() if len(line.get_xdata())
  }
  for _, handles, labels in _legends(fig, drawn[1]):
    for handle, text in zip(handles, labels):
      assert text and not text.startswith("_"), (name, text)
      assert _has_data(handle) or _style(handle) in drawn_styles, (name, text)


@pytest.mark.parametrize("name", FIGURE_NAMES)
def test_legends_cover_neither_axes_nor_titles(drawn, name):
  """Guards: a legend inside the axes covers data on small grids ((c)'s over jl_dim, (d)'s over
  the 1 − δ line); every legend is now placed beside the axes, over no title or axis label."""
  fig = drawn[0][name]
  renderer = fig.canvas.get_renderer()
  titles = {fig.get_suptitle(), *(ax.get_title() for ax in fig.axes)} - {""}
  covered = (
    [ax.get_window_extent(renderer) for ax in fig.axes]
    + [text.get_window_extent(renderer) for text in fig.findobj(Text) if text.get_text() in titles]
    + [
      label.get_window_extent(renderer)
      for ax in fig.axes
      for label in (ax.xaxis.label, ax.yaxis.label)
    ]
  )
  for legend, *_ in _legends(fig, drawn[1]):
    box = legend.get_window_extent(renderer)
    for other in covered:
      overlap = box.intersection(box, other)
      assert overlap is None or min(overlap.width, overlap.height) < 1, (name, legend)


@pytest.mark.parametrize("name", ["a_d_vs_length", "a_d_vs_length per-trial"])
def test_the_identity_line_is_smooth_on_both_panels(drawn, name):
  """Guards: d = L drawn through the data's L only, a kinked polyline on the log–linear panel.

  Every visible segment's midpoint lies within half a pixel of the curve d = L, and the
  line starts at the smallest L (straight on the log–log panel, smooth on the other).
  """
  fig = drawn[0][name]
  lines = [(ax, line) for ax in fig.axes for line in ax.get_lines() if line.get_label() == "d = L"]
  assert len(lines) == 2
  for ax, line in lines:
    x, y = (np.asarray(v, float) for v in line.get_data())
    np.testing.assert_allclose(x, y)
    assert x[0] == 32
    pixels = ax.transData.transform(np.c_[x, y])
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    visible = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    both = visible[1:] & visible[:-1]
    assert both.sum() >= 20
    middle = (pixels[1:] + pixels[:-1])[both] / 2
    at = ax.transData.inverted().transform(middle)[:, 0]
    curve = ax.transData.transform(np.c_[at, at])
    assert np.max(np.abs(curve[:, 1] - middle[:, 1])) < 0.5


def test_points_say_how_many_trials_they_used(drawn):
  """Guards: the subtitle's "T=8/16 trials" said neither which point used 8 nor which 16.

  (c) sweeps ε1 with T = 8, but its ε1 = 0.5 point is the series' over L, with T = 16: the
  subtitle gives the common T and the odd point is marked "T=16" where it is drawn.
  """
  fig = drawn[0]["c_d_vs_eps1"]
  title = fig.get_suptitle()
  assert "T=8 trials (other T marked at the points), δ=0.1, seed 0" in title and "8/16" not in title
  notes = [(text.get_text(), text.xy) for ax in fig.axes for text in ax.texts]
  assert notes == [("T=16", (0.5, round(30 * np.log(256) - 60)))]
  assert "T=16 trials" in drawn[0]["a_d_vs_length"].get_suptitle()
  assert not [t for ax in drawn[0]["a_d_vs_length"].axes for t in ax.texts]


def test_wrapped_text_fits_its_width():
  """Guards: a title longer than its figure (many fixed fields, a long family name) is cut at
  the edge; ``wrapped`` breaks it into lines no wider than the width it is given."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  text = (
    "(b) d_min against N\na_min=0.2, dtype=float32, ε1=1, ε2=0.5, family=random_regular, "
    "L=128, method=jl, N=4, a_min=0.2, dtype=float32, ε1=1, ε2=0.5, WWWW=MMMM, 0000=8888\n"
    "T=8 trials, δ=0.1 (T=16 where marked), seed 0"
  )
  for width in (4.0, 6.4):
    fig = Figure(figsize=(width, 3))
    shown = fig.text(0.5, 0.5, figures.wrapped(text, width, 9), ha="center", fontsize=9)
    FigureCanvasAgg(fig).draw()
    box = shown.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 and shown.get_text().count("\n") > 2


def test_bits_table_and_figure(tmp_path):
  """The bits table reads 2d·b (d, median b) per method and L, marks points above the grid and
  missing ones, and divides by the random_regular bound; the figure is written."""
  from jaxattn_bench.bits import bits_per_token
  from jaxattn_plots import bits as bits_plots

  def point(method, length, d, bits, dtype="float32"):
    return {
      "method": method,
      "dtype": dtype,
      "length": length,
      "nnz": 2,
      "d": d,
      "top": 16,
      "bits": bits,
      "bits_per_token": None if d is None else bits_per_token(d, bits),
    }

  data = {
    "points": [
      point("lstsq", 64, 8, [9, 10, None, 9]),
      point("lstsq", 128, None, []),
      point("moment_curve", 64, 4, [20, 21], "float64"),
    ],
    "bounds": {
      "2": {
        "64": {"random_regular": 9.0, "regular": 9.5},
        "128": {"random_regular": 11.0, "regular": 11.5},
      }
    },
  }
  assert bits_per_token(8, [9, 10, None, 9]) == {"median": 144.0, "min": 144, "max": 160}
  assert bits_per_token(8, [None]) is None
  lines = bits_plots.table(data).splitlines()
  assert lines[0] == (
    "| L | bound: random_regular | bound: all 2-regular | lstsq | moment_curve (float64) |"
  )
  assert lines[2] == "| 64 | 9.00 | 9.50 | 144 (8, 9) | 164 (4, 20.5) |"
  assert lines[3] == "| 128 | 11.00 | 11.50 | d > 16 | n/a |"
  assert "| 64 | 16× | 18× |" in lines and "| 128 | — | — |" in lines
  assert bits_plots.figure(data, tmp_path).is_file()


def test_beyond_fits_d50_with_bounded_intervals_and_shows_the_rest():
  """``plots.beyond``: the weighted slope of d_50 = a ln L + b is recovered from points whose
  interval is bounded; an unbounded or unreached point, or one whose interval starts at the
  grid's bottom d (a bound), is shown in the table but not fitted."""
  from jaxattn_plots import beyond

  def entry(length, d, low, high, trials=6):
    return {
      "length": length,
      "trials": trials,
      "d_grid": list(range(4, 80, 2)),
      "top": 78,
      "d_median": d,
      "d_median_low": low,
      "d_median_high": high,
      "d_min": None,
      "logit_range": None,
      "optimize": None,
    }

  rows = [entry(int(n), 4 * np.log(n) + 2, 4 * np.log(n), 4 * np.log(n) + 4) for n in LENGTHS]
  rows += [
    entry(4096, 40.0, 36.0, None, trials=4),
    entry(8192, None, None, None),
    entry(16384, 4.0, 4.0, 6.0),
    entry(32768, 8.0, 4.0, 10.0),
  ]
  data = {"main": {"lstsq": rows}}
  fit = beyond.fit_slopes(data)["lstsq"]
  assert abs(fit["slope"] - 4.0) < 0.05 and fit["n"] == len(LENGTHS)
  assert fit["preferred"] == "undecided" and abs(fit["delta_aic"]) < 10  # too short a range
  assert fit["lengths"] == [32, 2048]
  methods = {"jl": [], "lstsq": rows, "optimize": []}
  table = beyond.tables(
    {
      "main": methods,
      "fit": {"lstsq": fit},
      "curve": {},
      "dtype_length": 256,
      "dtype": {m: {"float32": 30.0} for m in methods},
    }
  )
  assert "| 4096 | 4 | n/a | 40 [36, inf] |" in table and "| 8192 | 6 | n/a | > 78 |" in table
  assert "preferred undecided, ΔAIC " in table
  assert "| 16384 | 6 | n/a | ≤4 [≤4, 6] |" in table and "| 32768 | 6 | n/a | 8 [≤4, 10] |" in table


@pytest.mark.parametrize(
  "law, want", [(lambda n: 40 * np.log(n), "log"), (lambda n: 4 * n**0.5, "power")]
)
def test_beyond_slopes_say_which_law_is_preferred(law, want):
  """Over L = 2^5 … 2^16 with tight intervals, d_50 exactly on one law picks that law."""
  from jaxattn_plots import beyond

  lengths = 2.0 ** np.arange(5, 17)
  rows = [
    {
      "length": int(n),
      "trials": 8,
      "d_grid": list(range(1, 4000)),
      "top": 3999,
      "d_median": float(round(law(n))),
      "d_median_low": float(round(law(n))) - 1,
      "d_median_high": float(round(law(n))) + 1,
    }
    for n in lengths
  ]
  fit = beyond.fit_slopes({"main": {"m": rows}})["m"]
  assert fit["preferred"] == want and abs(fit["delta_aic"]) >= 10
