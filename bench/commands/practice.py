"""``python -m bench practice``: the head dimension a fixed layer needs for published masks.

Runs the ``practice`` preset (or ``--preset``, a TOML file of the same form;
``--causal``: the ``practice_causal`` preset, the causal families judged in
both layers) through the grid runner (resumable results store,
``results/<preset>.sqlite``), then writes, in ``--out`` (``results/<preset>``):
``practice.json`` (the series of ``jaxattn_bench.practice.collect`` and the
fits), ``table.md`` (family × L × layer → d_50 per method [95% interval], with the
theorem label, each series' log-law slope and preferred law, and the cost of
a global token) and the figures ``d_vs_length.png``, ``d_vs_window.png``,
``d_vs_globals.png`` (``jaxattn_plots.practice``). ``--plan`` prints the points
and the expected time, and stops.
"""

from __future__ import annotations

import json
import pathlib
import time

from jaxattn_bench import grid, practice, runner
from jaxattn_bench.errors import CommandError


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser(
    "practice",
    help="published masks (Longformer, BigBird, Sparse "
    "Transformer, Reformer): d_50 against L, window and global "
    "tokens (preset practice + table)",
    description=__doc__.splitlines()[0],
  )
  parser.add_argument(
    "--preset",
    metavar="NAME|PATH.toml",
    help=f"the preset to run (default: {practice.PRESET}, with --causal {practice.CAUSAL_PRESET})",
  )
  parser.add_argument(
    "--causal",
    action="store_true",
    help=f"the causal families (Sparse Transformer, causal Longformer and LSH) "
    f"judged in both layers: preset {practice.CAUSAL_PRESET} "
    "(docs/causal.md)",
  )
  parser.add_argument(
    "--results",
    type=pathlib.Path,
    help="SQLite results store of the preset (resumable; default: results/<preset>.sqlite)",
  )
  parser.add_argument(
    "--out",
    type=pathlib.Path,
    help="folder for the table, the figures and practice.json (default: results/<preset>)",
  )
  parser.add_argument("--seed", type=int, help="seed (default: the preset's)")
  parser.add_argument(
    "--plan",
    action="store_true",
    help="print the points and the expected seconds of each, then stop",
  )
  parser.set_defaults(func=main)


def plan(points) -> str:
  """One line per point with its expected seconds (``runner.point_seconds``), and the total."""
  names = runner.varying_axes(points)
  lines = [
    f"{runner.describe(p, names)} G={len(p.d_grid)} d_max={p.d_grid[-1]} T={p.trials}: "
    f"about {runner.point_seconds(p):.0f} s"
    for p in points
  ]
  total = sum(map(runner.point_seconds, points))
  lines.append(
    f"{len(points)} points, expected about {total / 60:.0f} min on this project's "
    "2-core CPU (runner.point_seconds)"
  )
  return "\n".join(lines)


def main(args) -> int:
  from jaxattn_plots import practice as practice_plots  # matplotlib only when it runs

  if args.causal and args.preset is not None:
    raise CommandError(
      f"give --causal or --preset, not both (--causal runs the preset {practice.CAUSAL_PRESET})"
    )
  preset = grid.load_preset(
    args.preset or (practice.CAUSAL_PRESET if args.causal else practice.PRESET)
  )
  if args.plan:
    print(plan(preset.points))
    return 0
  results = args.results or pathlib.Path("results") / f"{preset.name}.sqlite"
  out = args.out or pathlib.Path("results") / preset.name
  start = time.perf_counter()
  seed = runner.checked_seed(preset, args.seed, out)
  with runner.open_store(results, {seed: preset.points}) as store:
    print(f"preset {preset.name}: {len(preset.points)} points in {results}", flush=True)
    records, _, fresh = runner.run_in_process(preset, seed, store)
  print(runner.summary_table(preset.points, records, fresh))
  data = practice.collect(records)
  data["fit"] = practice_plots.fit_rows(data)
  data["global_slope"] = {k: practice_plots.global_slope(v) for k, v in data["globals"].items()}
  data.update(
    seed=seed, seconds=time.perf_counter() - start, stored_seconds=sum(r.wall_s for r in records)
  )
  out.mkdir(parents=True, exist_ok=True)
  text = practice_plots.table(data, data["fit"])
  if data["global_slope"]:
    text += "\n\n" + practice_plots.slope_lines(data["global_slope"])
  (out / "table.md").write_text(text + "\n", encoding="utf-8")
  (out / "practice.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
  written = practice_plots.figures(data, out)
  print(
    f"\nPatterns of practice: preset {preset.name}, seed {seed}, "
    f"{data['stored_seconds']:.0f} s of point time\n\n{text}"
  )
  print(f"\nwrote {', '.join(map(str, written + [out / 'table.md', out / 'practice.json']))}")
  return 0
