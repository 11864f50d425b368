"""Figure and table of ``python -m bench bits`` (``jaxattn_bench.bits.collect``'s data).

``figure`` draws the bits per token 2d·b of every method at its d_min
against L, with the counting bound ``pattern_bits`` (left), and the bits b
per entry (right); ``table`` prints the table of docs/bits-and-mass.md (Markdown).
"""

from __future__ import annotations

import pathlib

import numpy as np

BOUND_NAMES = {
  "random_regular": "counting bound: random_regular supports (exact)",
  "regular": "counting bound: all N-regular 0-1 matrices",
}


def _series(data: dict) -> dict[str, list[dict]]:
  """method (with its dtype when not float32) -> its points sorted by L."""
  series: dict[str, list[dict]] = {}
  for entry in data["points"]:
    name = entry["method"] + ("" if entry["dtype"] == "float32" else f" ({entry['dtype']})")
    series.setdefault(name, []).append(entry)
  return {name: sorted(rows, key=lambda e: e["length"]) for name, rows in series.items()}


def figure(data: dict, out: pathlib.Path) -> pathlib.Path:
  """bits_per_token.png: 2d·b per token against L (median, bars min–max over trials) with the
  counting bounds; b per entry against L. Returns the path written."""
  from matplotlib.figure import Figure

  fig = Figure(figsize=(11, 4.6), layout="constrained")
  spent, per_entry = fig.subplots(1, 2)
  for name, rows in _series(data).items():
    measured = [e for e in rows if e["bits_per_token"] is not None]
    if not measured:
      continue
    lengths = np.array([e["length"] for e in measured])
    cost = [e["bits_per_token"] for e in measured]
    median = np.array([c["median"] for c in cost])
    bars = [median - [c["min"] for c in cost], [c["max"] for c in cost] - median]
    line = spent.errorbar(lengths, median, yerr=bars, fmt="o-", capsize=3, label=name)[0]
    bits = [np.median([b for b in e["bits"] if b is not None]) for e in measured]
    per_entry.plot(lengths, bits, "o-", color=line.get_color(), label=name)
    for length, b, entry in zip(lengths, bits, measured):  # each point's d_min beside it
      per_entry.annotate(
        f"d={entry['d']}",
        (length, b),
        textcoords="offset points",
        xytext=(4, 4),
        fontsize=6,
        color=line.get_color(),
      )
  for nnz, bounds in data["bounds"].items():
    bound_lengths = sorted(map(int, bounds))
    for family, style in (("random_regular", "k-"), ("regular", "k--")):
      spent.plot(
        bound_lengths,
        [bounds[str(n)][family] for n in bound_lengths],
        style,
        lw=1.2,
        label=f"{BOUND_NAMES[family]}, N = {nnz}",
      )
  for ax, ylabel in ((spent, "bits per token, 2d·b"), (per_entry, "bits per entry b")):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length L")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
  spent.set_yscale("log")
  spent.set_ylim(top=spent.get_ylim()[1] * 60)  # room for the legend above the lines
  spent.set_title(
    "information a token carries at each method's d_min, and the counting bound", fontsize=9
  )
  per_entry.set_title(
    "bits b per entry of Q = X W_Q, K = X W_K (median over trials), at d_min", fontsize=9
  )
  path = out / "bits_per_token.png"
  fig.savefig(path, dpi=130)
  return path


def table(data: dict) -> str:
  """The tables of docs/bits-and-mass.md: per L the counting bounds and, per method, 2d·b (d, b)
  at d_min; then 2d·b over the bound."""
  series = _series(data)
  lengths = sorted({e["length"] for e in data["points"]})
  nnz = sorted({e["nnz"] for e in data["points"]})
  if len(nnz) != 1:
    raise ValueError(f"the bits table needs one N, got {nnz}")
  bounds = data["bounds"][str(nnz[0])]

  def cell(entry: dict | None) -> str:
    if entry is None:
      return "n/a"
    if entry["d"] is None:
      return f"d > {entry['top']}"
    if entry["bits_per_token"] is None:
      return f"— (d {entry['d']}: no trial verifies)"
    bits = [b for b in entry["bits"] if b is not None]
    return f"{entry['bits_per_token']['median']:.0f} ({entry['d']}, {np.median(bits):g})"

  def ratio(entry: dict | None, bound: float) -> str:
    spent = None if entry is None else entry["bits_per_token"]
    return "—" if spent is None else f"{spent['median'] / bound:.0f}×"

  header = " | ".join(series)
  lines = [
    f"| L | bound: random_regular | bound: all {nnz[0]}-regular | {header} |",
    "|---:|---:|---:|" + "---:|" * len(series),
  ]
  ratios = [f"| L | {header} |", "|---:|" + "---:|" * len(series)]
  for length in lengths:
    at = {
      name: next((e for e in rows if e["length"] == length), None) for name, rows in series.items()
    }
    bound = bounds[str(length)]["random_regular"]
    lines.append(
      f"| {length} | {bound:.2f} | {bounds[str(length)]['regular']:.2f} | "
      + " | ".join(cell(at[name]) for name in series)
      + " |"
    )
    ratios.append(f"| {length} | " + " | ".join(ratio(at[name], bound) for name in series) + " |")
  return "\n".join(lines + ["", "2d·b over the random_regular bound:", ""] + ratios)
