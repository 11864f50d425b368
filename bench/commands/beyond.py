"""``python -m bench beyond``: the constructions beyond the paper, side by side.

Runs the ``beyond`` preset through the grid runner (resumable results store,
the runner's figures and fit table), then measures what the runner does not
(``jaxattn_bench.beyond``: logit ranges, optimize's Adam steps and passes,
moment_curve's largest L, d_50 per dtype) and writes ``d_vs_lnL.png``,
``logit_range.png``, ``beyond.json`` and the "Beyond the paper"
tables (``jaxattn_plots.beyond``).
"""

from __future__ import annotations

import json
import pathlib
import time

import jax

from jaxattn_bench import beyond, grid, runner


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser(
    "beyond",
    help="lstsq, optimize, moment_curve against jl: "
    "d_50 to L = 65536, logit range, precision (preset beyond + "
    "tables)",
    description=__doc__.splitlines()[0],
  )
  parser.add_argument(
    "--results",
    type=pathlib.Path,
    default=pathlib.Path("results/beyond.sqlite"),
    help="SQLite results store of the preset (resumable)",
  )
  parser.add_argument(
    "--out",
    type=pathlib.Path,
    default=pathlib.Path("results/beyond"),
    help="folder for the figures, fit files and beyond.json",
  )
  parser.add_argument("--seed", type=int, help="seed (default: the preset's)")
  parser.set_defaults(func=main)


def main(args) -> int:
  # matplotlib and scipy.stats here, not at import: every command's parser imports this module.
  from jaxattn_plots import beyond as beyond_plots, write_report

  start = time.perf_counter()
  preset = grid.load_preset(beyond.PRESET)
  seed = runner.checked_seed(preset, args.seed, args.out)
  with runner.open_store(args.results, {seed: preset.points}) as store:
    print(f"preset {preset.name}: {len(preset.points)} points in {args.results}", flush=True)
    records, all_records, fresh = runner.run_in_process(preset, seed, store)
  print(runner.summary_table(preset.points, records, fresh))
  print(write_report(records, args.out).text())
  data = beyond.collect([r for r in all_records if r.seed == seed], seed)
  data["fit"] = beyond_plots.fit_slopes(data)
  data["seconds"] = time.perf_counter() - start
  (args.out / "beyond.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
  written = beyond_plots.figures(data, args.out)
  print(
    f"\nBeyond the paper: random_regular, N = 2, eps1 = eps2 = 0.5, a_min = 0.2, T trials "
    f"per L (moment_curve limits T = {beyond.CURVE_TRIALS}), delta = 0.1, seed {seed}, "
    f"{jax.devices()[0].device_kind}, {data['seconds']:.0f} s; logit ranges and optimize's "
    f"cost at d_50 in the first {beyond.MEASURED_TRIALS} trial(s)\n"
  )
  print(beyond_plots.tables(data))
  print(f"\nwrote {', '.join(map(str, written))}, {args.out / 'beyond.json'}")
  return 0
