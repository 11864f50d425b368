"""The resource plan of a job: its peak memory and file size from its shapes, against the machine.

Every estimate is a formula of the job's shapes (L, N, width, grid levels,
trials per batch, dtype), computed before anything is compiled or allocated,
so that a job which cannot fit is refused within seconds (``CommandError``,
exit status 2) with one line: what it needs, what is available, what to change.
The formulas count the arrays the compiled programs hold at their peak
(coefficients read off XLA's buffer assignment, ``memory_analysis()``, at
L = 256 … 65536) and were checked against the peak resident memory (VmHWM) of
child processes (``tests/test_edges.py::test_the_search_estimate_bounds_the_measured_peak``);
a job must fit ``SAFETY`` times its estimate plus ``RUNTIME_BYTES``, the JAX runtime and
compiled programs.

What is available: on an accelerator, its free memory (``memory_stats()``:
bytes_limit − bytes_in_use); on a CPU, the least of /proc/meminfo's
MemAvailable, the cgroup's limit minus its usage (v2 memory.max −
memory.current, v1 memory.limit_in_bytes − memory.usage_in_bytes) and the
address-space limit (RLIMIT_AS) minus what the process has mapped. No JAX
import here: the device, if any, is passed in.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import resource
import shutil
from typing import Iterable, NamedTuple

from jaxattn_bench.errors import CommandError

SAFETY = 1.5  # a job must fit SAFETY × its estimate (+ RUNTIME_BYTES)
RUNTIME_BYTES = 512 << 20  # JAX/XLA runtime, compiled programs, NumPy copies of small arrays
PATTERN_BYTES = 9  # per slot of a row-padded pattern: int32 column, float32 weight, bool
REPORT_ROW_BYTES = 9  # per row of a saved Report: bool row_ok, float32 spread and gap
_CGROUP_FILES = (
  ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
  ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


class Available(NamedTuple):
  """Bytes a job may use, and where the figure comes from (for the refusal line)."""

  bytes: int
  source: str


def _read_int(path: str) -> int | None:
  try:
    with open(path) as file:
      text = file.read().strip()
  except OSError:
    return None
  return int(text) if text.isdigit() else None  # "max": no limit


def _proc_bytes(path: str, field: str) -> int | None:
  """The ``field:`` line of a /proc file (a size in kB) in bytes; None if unreadable."""
  try:
    with open(path) as file:
      for line in file:
        if line.startswith(f"{field}:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def _meminfo_available() -> int | None:
  return _proc_bytes("/proc/meminfo", "MemAvailable")


def _mapped_bytes() -> int:
  """The process's mapped address space (VmSize), 0 if unknown."""
  return _proc_bytes("/proc/self/status", "VmSize") or 0


def peak_resident_bytes() -> int | None:
  """The process's peak resident memory (VmHWM of its own address space); None without /proc."""
  return _proc_bytes("/proc/self/status", "VmHWM")


def host_memory() -> Available:
  """Memory this process may still use on the host: the least of MemAvailable, cgroup, RLIMIT_AS."""
  candidates = []
  if (meminfo := _meminfo_available()) is not None:
    candidates.append(Available(meminfo, "MemAvailable in /proc/meminfo"))
  for limit_file, usage_file in _CGROUP_FILES:
    limit, usage = _read_int(limit_file), _read_int(usage_file)
    if limit is not None and usage is not None and limit < 1 << 60:
      candidates.append(Available(max(limit - usage, 0), f"cgroup limit {limit_file}"))
      break
  limit = resource.getrlimit(resource.RLIMIT_AS)[0]
  if limit != resource.RLIM_INFINITY:
    candidates.append(Available(max(limit - _mapped_bytes(), 0), "address-space limit (ulimit -v)"))
  if not candidates:  # no /proc (not Linux): trust the machine
    return Available(1 << 62, "no limit known")
  return min(candidates)


def available_memory(device=None) -> Available:
  """Free memory of ``device`` (a JAX device) if it reports it, else the host's (host_memory)."""
  stats = None
  if device is not None and getattr(device, "platform", "cpu") != "cpu":
    try:
      stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - a backend without memory statistics
      stats = None
  if stats and "bytes_limit" in stats:
    free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return Available(free, f"free memory of {getattr(device, 'device_kind', 'the device')}")
  return host_memory()


def gigabytes(size: float) -> str:
  """``size`` bytes as a short human figure: 1.5 GB, 12 MB, 3e+09 GB."""
  if size >= 1e15:
    return f"{size / 1e9:.3g} GB"
  return f"{size / 1e9:.3g} GB" if size >= 1e9 else f"{size / 1e6:.3g} MB"


# ---- estimates -------------------------------------------------------------------------------


def library_tiles() -> dict[str, tuple[int, int]]:
  """jaxattn's default (rows, keys) per backend (``jaxattn._src.tiles.TILES``), read from its
  data file ``tiles.json`` without importing jaxattn (hence JAX)."""
  spec = importlib.util.find_spec("jaxattn")
  if spec is None or not spec.submodule_search_locations:
    raise CommandError("jaxattn is not installed: python -m pip install -e .")
  package = pathlib.Path(spec.submodule_search_locations[0])
  table = json.loads((package / "_src" / "tiles.json").read_text())
  return {backend: tuple(tile) for backend, tile in table.items()}


# The estimates' default tile: the largest rows and keys of any backend's default (an upper bound).
TILE = tuple(map(max, zip(*library_tiles().values())))
ROW_BLOCK, KEY_BLOCK = TILE


def _rows(length: int, row_block: int = ROW_BLOCK) -> int:
  """Query rows after padding to whole row blocks."""
  return math.ceil(length / row_block) * row_block if length > row_block else length


def search_trial_bytes(
  length: int,
  nnz: int,
  width: int,
  levels: int,
  method: str,
  itemsize: int = 4,
  tile: tuple[int, int] = TILE,
) -> int:
  """Peak bytes of one trial of a compiled search (``ja.min_d``, ``ja.verify_grid``) at width d_max.

  (6 + N)·L·w for the factors, the padded key copies and the gathered support
  rows, (levels + 2) tiles of rows × keys logits (``tile``, default ROW_BLOCK ×
  KEY_BLOCK), and for ``optimize`` its hard negatives (K = ``OPTIMIZE_NEGATIVES``):
  the gathered keys and their gradient, Adam's state, the excess tensors and one
  row block's candidate keys, L·w·(3K + 8) + 3·L·K·N + rows·K·CHUNK·w.
  ``levels``: the grid's size for nested methods (one pass), 1 otherwise.
  """
  rows, block = _rows(length, tile[0]), min(tile[1], length)
  elements = (6 + nnz) * rows * width + (levels + 2) * min(tile[0], length) * block
  if method == "optimize":
    negatives = OPTIMIZE_NEGATIVES
    elements += (
      length * width * (3 * negatives + 8)
      + 3 * length * negatives * nnz
      + min(tile[0], length) * negatives * OPTIMIZE_CHUNK * width
    )
  return itemsize * elements


def _depth(d: int, params: str) -> int:
  """Columns D of X for ``params``: 4d for "random", else 2d."""
  return (4 if params == "random" else 2) * d


def _param_elements(depth: int, d: int, params: str) -> int:
  """Elements of W_Q, W_K: none for identity parameters (``IdentityBlock``s), else 2·D·d."""
  return 0 if params == "identity" else 2 * depth * d


def verify_bytes(
  length: int,
  nnz: int,
  depth: int,
  d: int,
  itemsize: int = 4,
  params: str = "identity",
  tile: tuple[int, int] = TILE,
) -> int:
  """Peak bytes of ``ja.verify`` of X [L, D] and W_Q, W_K [D, d] (``params``): inputs, X W_Q,
  X W_K, tiles of ``tile`` (rows, keys)."""
  rows, block = min(tile[0], length), min(tile[1], length)
  return itemsize * (
    length * depth
    + _param_elements(depth, d, params)
    + 4 * length * d
    + rows * nnz * d
    + 4 * rows * block
  )


def solution_file_bytes(
  length: int, nnz: int, d: int, params: str = "identity", itemsize: int = 4
) -> int:
  """Bytes of a solution file: X [L, D], W_Q, W_K [D, d] unless identity (no W stored), the pattern.

  O(L·(d + N)) for identity parameters: at float32 4·L·2d for X, 9·L·N for the
  pattern, 9·L for the report's row_ok, spread, gap, and 64 KiB of scalars and
  headers (``jaxattn_bench.solution_file``).
  """
  depth = _depth(d, params)
  return (
    itemsize * (length * depth + _param_elements(depth, d, params))
    + PATTERN_BYTES * length * nnz
    + REPORT_ROW_BYTES * length
    + (64 << 10)
  )


def solve_bytes(
  length: int, nnz: int, d: int, method: str, params: str = "identity", itemsize: int = 4
) -> int:
  """Peak bytes of ``bench solve --d d``: the construction at width d, then ``verify`` of it.

  O(L·(N + d)) for identity parameters; dense ones (``random``) add 2·D·d.
  """
  depth = _depth(d, params)
  return search_trial_bytes(length, nnz, d, 1, method, itemsize) + verify_bytes(
    length, nnz, depth, d, itemsize, params
  )


# Bytes per entry of the L×L logits of ``bench perf``'s dense checks, rounded up from the
# growth of the peak resident memory (VmHWM) of one check at L = 4096 on a CPU:
NUMPY_DENSE = 9  # NumPy float32 (8.8): the logits, one masked copy at a time, the support
JAX_DENSE = 10  # jitted dense JAX (9.1): the logits, the support and masked copies
REFERENCE_DENSE = 34  # float64 reference (29.8, and 4 for the float32 dense pattern it reads)


def optimize_dense_bytes(length: int, nnz: int) -> int:
  """Peak bytes of ``optimize`` with the dense loss (``Training(negatives=None)``): the L×L
  logits and support mask, and the L×L×N zeros excess with its gradient and hinge, (5 + 12·N)·L²."""
  return (5 + 12 * nnz) * length**2


def perf_bytes(
  length: int,
  nnz: int,
  d: int,
  levels: int,
  *,
  dense: int = 0,
  tiles: Iterable[tuple[int, int]] = (TILE,),
) -> int:
  """Peak bytes of ``bench perf`` at L, N, d: the ``jl`` solution and its check (``solve_bytes``),
  the search over ``levels`` grid d, both at the most demanding of ``tiles``, and the dense
  checks at ``dense`` bytes per entry of the L×L logits (0: none; NUMPY_DENSE, JAX_DENSE,
  REFERENCE_DENSE: the largest that runs), all held at once.
  """
  tiled = max(
    search_trial_bytes(length, nnz, d, 1, "jl", tile=tile)
    + verify_bytes(length, nnz, 2 * d, d, tile=tile)
    + search_trial_bytes(length, nnz, d, levels, "jl", tile=tile)
    for tile in tiles
  )
  return tiled + dense * length * length


class Plan(NamedTuple):
  """A job that fits: its estimate, what is available and the trials per batch it may use."""

  need: int
  available: Available
  max_trial_batch: int


def _refuse(what: str, need: int, available: Available, change: str) -> CommandError:
  return CommandError(
    f"{what} needs about {gigabytes(need)} of memory ({SAFETY:g} x the "
    f"estimate + {gigabytes(RUNTIME_BYTES)} for the runtime) but only "
    f"{gigabytes(available.bytes)} is available ({available.source}); {change}"
  )


def plan_search(
  what: str,
  *,
  length: int,
  nnz: int,
  width: int,
  levels: int,
  method: str,
  trials: int,
  itemsize: int = 4,
  available: Available | None = None,
  change: str = "use a smaller --length, --nnz or --d-max",
) -> Plan:
  """The trials per batch that fit (≤ ``trials``), or CommandError if one trial does not fit."""
  available = available or host_memory()
  per_trial = search_trial_bytes(length, nnz, width, levels, method, itemsize)
  room = available.bytes - RUNTIME_BYTES
  fitting = int(room // (SAFETY * per_trial)) if room > 0 else 0
  if fitting < 1:
    raise _refuse(f"{what} (one trial)", int(SAFETY * per_trial) + RUNTIME_BYTES, available, change)
  batch = min(trials, fitting)
  return Plan(int(SAFETY * per_trial * batch) + RUNTIME_BYTES, available, batch)


def check_fits(what: str, need: int, *, available: Available | None = None, change: str) -> Plan:
  """CommandError unless SAFETY·``need`` + RUNTIME_BYTES fits in the available memory."""
  available = available or host_memory()
  total = int(SAFETY * need) + RUNTIME_BYTES
  if total > available.bytes:
    raise _refuse(what, total, available, change)
  return Plan(total, available, 1)


def check_disk(path: str, size: int, change: str) -> None:
  """CommandError unless ``size`` bytes fit in the free space of ``path``'s folder."""
  folder = os.path.dirname(os.path.abspath(path))
  try:
    free = shutil.disk_usage(folder).free
  except OSError:
    return  # the write itself will say what is wrong
  if size > free:
    raise CommandError(
      f"{path}: the solution file would take about {gigabytes(size)} but "
      f"{folder} has {gigabytes(free)} free; {change}"
    )


# Bounds of jaxattn's optimize (``jaxattn._src.optimize``) the memory plan needs: NEGATIVES hard
# negatives per row, gathered CHUNK keys at a time.
OPTIMIZE_NEGATIVES, OPTIMIZE_CHUNK = 16, 32
MENTION_S = 5.0  # searches expected to take longer print their plan (bench min_d, bench solve)


def duration(seconds: float) -> str:
  """ "40 s", "12 min", "3.1 h"."""
  return (
    f"{seconds:.0f} s"
    if seconds < 120
    else f"{seconds / 60:.0f} min"
    if seconds < 7200
    else f"{seconds / 3600:.1f} h"
  )


def cost_line(what: str, plan: Plan, seconds: float) -> str | None:
  """One line on what a long job does, its memory and its expected duration on this project's
  2-core CPU (``runner.search_seconds``, the one cost model); None below ``MENTION_S``."""
  if seconds < MENTION_S:
    return None
  return (
    f"{what}: at most {gigabytes(plan.need)} of {gigabytes(plan.available.bytes)} available; "
    f"about {duration(seconds)} on this project's 2-core CPU (runner.search_seconds), "
    "compilation included"
  )


ITEMSIZE = {"bfloat16": 2, "float32": 4, "float64": 8}


def check_points_fit(points: Iterable, *, available: Available | None = None) -> None:
  """CommandError for the first grid point whose search cannot fit (``bench run``, ``--plan``).

  Each point needs ``length``, ``nnz``, ``method``, ``dtype``, ``d_grid``
  (increasing) and ``trials`` (``jaxattn_bench.grid.Point``); one trial of
  it must fit (the search then batches as many as fit).
  """
  available = available or host_memory()
  for point in points:
    plan_search(
      f"point L={point.length} N={point.nnz} {point.method} d_max={point.d_grid[-1]}",
      length=point.length,
      nnz=point.nnz,
      width=point.d_grid[-1],
      levels=len(point.d_grid),
      method=point.method,
      trials=point.trials,
      itemsize=ITEMSIZE.get(point.dtype, 4),
      available=available,
      change="remove the point or lower its length or d grid",
    )
