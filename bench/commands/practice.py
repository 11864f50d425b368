"""``python -m bench practice``: what head dimension a fixed layer needs for published attention masks.

Runs the ``practice`` preset (or ``--preset``, a TOML file of the same form)
through the grid runner (resumable results store), then writes, in ``--out``:
``practice.json`` (the series of ``jaxattn_bench.practice.collect`` and the
fits), ``table.md`` (family × L → d_50 per method [95% interval], with the
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


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser("practice", help="published masks (Longformer, BigBird, Sparse "
                                 "Transformer, Reformer): d_50 against L, window and global "
                                 "tokens (preset practice + table)",
                                 description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default=practice.PRESET, metavar="NAME|PATH.toml",
                      help="the preset to run (default: practice)")
  parser.add_argument("--results", type=pathlib.Path,
                      default=pathlib.Path("results/practice.sqlite"),
                      help="SQLite results store of the preset (resumable)")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results/practice"),
                      help="folder for the table, the figures and practice.json")
  parser.add_argument("--seed", type=int, help="seed (default: the preset's)")
  parser.add_argument("--plan", action="store_true",
                      help="print the points and the expected seconds of each, then stop")
  parser.set_defaults(func=main)


def plan(points) -> str:
  """One line per point with its expected seconds (``practice.plan_seconds``), and the total."""
  names = runner.varying_axes(points)
  lines = [f"{runner.describe(p, names)} G={len(p.d_grid)} d_max={p.d_grid[-1]} T={p.trials}: "
           f"about {practice.plan_seconds(p):.0f} s" for p in points]
  total = sum(map(practice.plan_seconds, points))
  lines.append(f"{len(points)} points, expected about {total / 60:.0f} min on this project's "
               "2-core CPU (cost model of jaxattn_bench.practice)")
  return "\n".join(lines)


def main(args) -> int:
  from jaxattn_plots import practice as practice_plots  # matplotlib only when it runs

  preset = grid.load_preset(args.preset)
  if args.plan:
    print(plan(preset.points))
    return 0
  start = time.perf_counter()
  seed = runner.checked_seed(preset, args.seed, args.out)
  with runner.open_store(args.results, preset.points, [seed]) as store:
    print(f"preset {preset.name}: {len(preset.points)} points in {args.results}", flush=True)
    records, _, fresh = runner.run_in_process(preset, seed, store)
  print(runner.summary_table(preset.points, records, fresh))
  data = practice.collect(records)
  data["fit"] = practice_plots.fit_rows(data)
  data["global_slope"] = {k: practice_plots.global_slope(v) for k, v in data["globals"].items()}
  data.update(seed=seed, seconds=time.perf_counter() - start,
              stored_seconds=sum(r.wall_s for r in records))
  args.out.mkdir(parents=True, exist_ok=True)
  text = practice_plots.table(data, data["fit"]) + "\n\n" + practice_plots.slope_lines(
      data["global_slope"])
  (args.out / "table.md").write_text(text + "\n", encoding="utf-8")
  (args.out / "practice.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
  written = practice_plots.figures(data, args.out)
  print(f"\nPatterns of practice: preset {preset.name}, seed {seed}, "
        f"{data['stored_seconds']:.0f} s of point time\n\n{text}")
  print(f"\nwrote {', '.join(map(str, written + [args.out / 'table.md', args.out / 'practice.json']))}")
  return 0
