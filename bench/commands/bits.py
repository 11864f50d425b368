"""``python -m bench bits``: the bits per token each method spends, beside the counting bound.

Runs the ``bits`` preset through the grid runner (resumable results store),
then rebuilds every trial at its point's d_min and measures the bits b its
queries and keys need in fixed point (``ja.precision_bits``;
``jaxattn_bench.bits``), and writes ``bits_per_token.png``, ``bits.json``
and the docs/bits-and-mass.md table (``jaxattn_plots.bits``), with the counting bound
``ja.theory.pattern_bits``.
"""

from __future__ import annotations

import json
import pathlib
import time

from jaxattn_bench import bits, grid, runner


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser(
    "bits",
    help="bits per token of every method at its d_min, "
    "against the counting bound (preset bits + table)",
    description=__doc__.splitlines()[0],
  )
  parser.add_argument(
    "--results",
    type=pathlib.Path,
    default=pathlib.Path("results/bits.sqlite"),
    help="SQLite results store of the preset (resumable)",
  )
  parser.add_argument(
    "--out",
    type=pathlib.Path,
    default=pathlib.Path("results/bits"),
    help="folder for bits_per_token.png and bits.json",
  )
  parser.add_argument(
    "--preset",
    default=bits.PRESET,
    metavar="NAME|PATH.toml",
    help=f"the grid of points (default: {bits.PRESET})",
  )
  parser.add_argument("--seed", type=int, help="seed (default: the preset's)")
  parser.set_defaults(func=main)


def main(args) -> int:
  # matplotlib here, not at import: every command's parser imports this module.
  from jaxattn_plots import bits as bits_plots

  start = time.perf_counter()
  preset = grid.load_preset(args.preset)
  seed = runner.checked_seed(preset, args.seed, args.out)
  with runner.open_store(args.results, {seed: preset.points}) as store:
    print(f"preset {preset.name}: {len(preset.points)} points in {args.results}", flush=True)
    records, _, fresh = runner.run_in_process(preset, seed, store)
  print(runner.summary_table(preset.points, records, fresh))
  data = bits.collect(records, seed)
  data["seconds"] = time.perf_counter() - start
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "bits.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
  written = bits_plots.figure(data, args.out)
  print(
    f"\nBits per token at d_min: {preset.name} preset, seed {seed}, {data['device']}, "
    f"{data['seconds']:.0f} s. Cells: 2d·b per token, median over the trials "
    "(d_min, median b); bounds: ja.theory.pattern_bits, bits per token\n"
  )
  print(bits_plots.table(data))
  print(f"\nwrote {written}, {args.out / 'bits.json'}")
  return 0
