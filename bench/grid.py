"""Presets: TOML grids of points (pattern family, method, L, N, a_min, ε1, ε2, dtype, criterion).

A preset is a TOML file (``bench/presets/*.toml``, or any path)::

  description = "what the grid is for"   # optional
  seed = 0                               # optional (default 0); --seed overrides
  trials = 16                            # any field below may be set here as a
  delta = 0.1                            # default for every [[grid]] block
  family = "random_regular"               # or a published family (``ja.patterns.FAMILIES``),
  method = "jl"                          # e.g. "longformer(window=4,globals=2)", whose nnz is
                                         # derived (its width at each length) and is omitted

  [[grid]]                               # one or more blocks
  length = [32, 64, 128]                 # axes: a value or a list of values
  nnz = 1
  a_min = 0.2
  eps1 = [0.5, 1.0]
  eps2 = 0.5
  dtype = "float32"                      # optional: bfloat16, float32 (default), float64
  criterion = "ratio"                    # optional: "ratio" (default) or "mass", which
  max_outside_mass = 0.1                 # needs η = max_outside_mass in (0, 1)
  d_grid = { start = 64, stop = 1024, per_octave = 4 }   # or a list of d
  matmul = "float32"                     # optional: products of the certified pass,
                                         # float32 (default) or bfloat16 (same verdicts)
  causal = [false, true]                 # optional: a causal layer (docs/causal.md);
                                         # default false, bidirectional

Each block is the Cartesian product of its axes; the preset is the union of
its blocks in order (repeated points run once). Every point carries the
settings ``d_grid`` (increasing dimensions to search), ``trials`` (T),
``delta`` (δ) and ``matmul`` (the products' format of the certified pass,
docs/certified.md: the verdicts are exact either way, so it is a setting, not
an axis; recorded in a point's params unless float32). Unknown fields, values
of the wrong type or out of range, and unknown families or methods raise
``CommandError`` naming the field before any work starts.

Under ``criterion = "mass"`` a point succeeds only if every row's outside
softmax mass is ≤ η as well (``ja.min_d(..., max_outside_mass=η)``); η
belongs to mass points only (ratio points carry None, and a block giving η
without a "mass" criterion is an error).

A causal point (``causal = true``; the family must be causal, e.g.
``random_causal``) records ``causal`` in its params; a bidirectional one does
not, so stores written before the option keep their points. Both layers draw
with the same key: the same patterns and constructions, judged twice.

To add an axis, add a field to ``Point`` and a parser to ``_FIELDS``; it
becomes part of each point's identity and key (``dtype``, the criterion and
``causal`` are left out of the key: every precision, criterion and layer draws
with the same key).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import itertools
import math
import pathlib
from typing import Any, Callable, NamedTuple, NoReturn

import jax
import numpy as np

try:
  import tomllib
except ModuleNotFoundError:  # Python 3.10
  import tomli as tomllib  # type: ignore[no-redef]

import jaxattn as ja
from jaxattn_bench.errors import CommandError
from jaxattn_bench.store import AXES, CRITERION_FIELDS, canonical


class Point(NamedTuple):
  """One grid point: minimal d of ``method`` on patterns of ``family``."""

  family: str
  method: str
  length: int
  nnz: int
  a_min: float
  eps1: float
  eps2: float
  dtype: str  # precision of solutions and verification (``ja.min_d``); default float32
  d_grid: tuple[int, ...]
  trials: int
  delta: float
  criterion: str = "ratio"  # "ratio": (ε1, ε2) alone; "mass": also outside mass ≤ η
  max_outside_mass: float | None = None  # η, for criterion "mass" only
  matmul: str = "float32"  # products of the certified pass (``ja.min_d``)
  causal: bool = False  # a causal layer (``ja.min_d(..., causal=True)``)

  def params(self) -> dict[str, Any]:
    """All fields as a JSON-ready dict (the point's identity in a results store); under the
    ratio criterion without ``CRITERION_FIELDS``, with float32 products without ``matmul``,
    and in a bidirectional layer without ``causal``, as stored before they existed."""
    params = {**self._asdict(), "d_grid": list(self.d_grid)}
    if self.criterion == "ratio":
      for name in CRITERION_FIELDS:
        del params[name]
    if self.matmul == "float32":
      del params["matmul"]
    if not self.causal:
      del params["causal"]
    return params

  def sampler(self) -> ja.patterns.Sampler:
    """key -> pattern of this point's family, L, N and a_min (hashable by value)."""
    return ja.patterns.Sampler(self.family, self.length, self.nnz, self.a_min)


class Preset(NamedTuple):
  """A parsed preset: its name, source text, default seed and points in order."""

  name: str
  source: str
  seed: int
  description: str
  points: tuple[Point, ...]


def point_key(seed: int, point: Point) -> jax.Array:
  """PRNG key of a point: fold_in(PRNGKey(seed), sha256 of its axes), two 32-bit words.

  The key depends on the seed and the problem (``AXES``) only, not on the
  point's position in the grid or on its search settings, so resuming or
  reordering a grid gives the same draws, and a finer d grid reuses them.
  Nor does it depend on ``dtype``, the criterion or the layer (``causal``): every
  precision, criterion and layer gets the same key, so their trials share patterns and draws.
  """
  axes = {name: getattr(point, name) for name in AXES if name not in _UNKEYED}
  digest = hashlib.sha256(canonical(axes).encode()).digest()
  key = jax.random.PRNGKey(seed)
  for word in np.frombuffer(digest[:8], "<u4"):
    key = jax.random.fold_in(key, int(word))
  return key


_UNKEYED = ("dtype", "causal") + CRITERION_FIELDS
CRITERIA = {"ratio": "the (ε1, ε2) conditions", "mass": "(ε1, ε2) and outside mass ≤ η"}


def _as_list(value) -> list:
  return value if isinstance(value, list) else [value]


# --- field parsers: value -> normalised value, or CommandError ---------------------------


def _fail(where: str, message: str) -> NoReturn:
  raise CommandError(f"{where}: {message}")


def _integer(minimum: int):
  def parse(value, where):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
      _fail(where, f"expected an integer >= {minimum}, got {value!r}")
    return value

  return parse


def _real(low: float, high: float, *, closed_low: bool = False, closed_high: bool = False):
  interval = f"{'[' if closed_low else '('}{low}, {high}{']' if closed_high else ')'}"

  def parse(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      _fail(where, f"expected a number in {interval}, got {value!r}")
    value = float(value)
    above = value >= low if closed_low else value > low
    below = value <= high if closed_high else value < high
    if not (above and below):
      _fail(where, f"expected a number in {interval}, got {value!r}")
    return value

  return parse


def _name(registry: Callable[[], dict]):
  def parse(value, where):
    choices = sorted(registry())
    if value not in choices:
      _fail(where, f"unknown value {value!r}; choose from {choices}")
    return value

  return parse


def _boolean(value, where):
  if not isinstance(value, bool):
    _fail(where, f"expected true or false, got {value!r}")
  return value


def _family(value, where):
  """A key of ``ja.patterns.GENERATORS``, or a published family spec in its canonical form."""
  if value in ja.patterns.GENERATORS:
    return value
  try:
    return ja.patterns.family_from_spec(value).spec
  except ValueError as error:
    _fail(
      where,
      f"unknown family {value!r}: not one of {sorted(ja.patterns.GENERATORS)}, and "
      f"not a published family ({error})",
    )


def published_width(family: str, length: int) -> int | None:
  """N of a published family at ``length`` (``Family.width``); None for ``GENERATORS`` families."""
  if family in ja.patterns.GENERATORS:
    return None
  return ja.patterns.family_from_spec(family).width(length)


def _d_grid(value, where):
  if isinstance(value, dict):
    unknown = sorted(set(value) - {"start", "stop", "per_octave"})
    if unknown or len(value) != 3:
      _fail(
        where,
        f"expected a list of d or a table {{start, stop, per_octave}}, got keys {sorted(value)}",
      )
    start = _integer(1)(value["start"], f"{where}.start")
    stop = _integer(start)(value["stop"], f"{where}.stop")
    per_octave = _integer(1)(value["per_octave"], f"{where}.per_octave")
    return ja.geometric_grid(stop, per_octave, start)
  if not isinstance(value, list) or not value:
    _fail(where, f"expected a list of d or a table {{start, stop, per_octave}}, got {value!r}")
  for d in value:
    _integer(1)(d, where)
  try:
    return ja.check_d_grid(value)
  except ValueError as error:
    _fail(where, str(error))


# name -> (parser, whether a list sweeps it)
_FIELDS: dict[str, tuple[Callable, bool]] = {
  "family": (_family, True),
  "method": (_name(lambda: ja.construct.METHODS), True),
  "length": (_integer(1), True),
  "nnz": (_integer(1), True),
  "a_min": (_real(0.0, 1.0, closed_high=True), True),
  "eps1": (_real(0.0, math.inf), True),
  "eps2": (_real(0.0, 1.0), True),
  "dtype": (_name(lambda: ja.construct.DTYPES), True),
  "d_grid": (_d_grid, False),
  "trials": (_integer(1), False),
  "delta": (_real(0.0, 1.0, closed_low=True), False),
  "criterion": (_name(lambda: CRITERIA), True),
  "max_outside_mass": (_real(0.0, 1.0), True),
  "matmul": (_name(lambda: ja.certify.MATMUL_FORMATS), False),
  "causal": (_boolean, True),
}
_TOP_LEVEL = {"description", "seed", "grid"}


def _block_points(block: dict, where: str) -> list[Point]:
  optional = ("max_outside_mass", "nnz")  # nnz: derived for published families
  missing = [name for name in Point._fields if name not in block and name not in optional]
  if missing:
    _fail(where, f"missing {', '.join(missing)}")
  if "mass" in _as_list(block["criterion"]) and "max_outside_mass" not in block:
    _fail(where, 'criterion "mass" needs max_outside_mass = η')
  values: dict[str, list[Any]] = {"max_outside_mass": [None], "nnz": [None]}
  for name, (parse, sweeps) in _FIELDS.items():
    if name not in block:
      continue
    raw = block[name]
    if sweeps:
      raw = _as_list(raw)
      if not raw:
        _fail(f"{where}.{name}", "empty list")
      values[name] = [parse(v, f"{where}.{name}") for v in raw]
    else:
      values[name] = [parse(raw, f"{where}.{name}")]
  points = [
    Point(**dict(zip(Point._fields, combo)))
    for combo in itertools.product(*(values[name] for name in Point._fields))
  ]
  points = list(
    dict.fromkeys(  # η belongs to mass points only
      p if p.criterion == "mass" else p._replace(max_outside_mass=None) for p in points
    )
  )
  for index, point in enumerate(points):
    if point.nnz is None:
      try:
        width = published_width(point.family, point.length)
      except ValueError as error:
        _fail(where, f"{point.family}(length={point.length}): {error}")
      if width is None:
        _fail(where, f"missing nnz (family {point.family})")
      points[index] = point._replace(nnz=width)
  for point in points:
    _check_layer(point, where)
  for point in points:  # generator errors (nnz > L, bad stride) before any work
    try:
      jax.eval_shape(point.sampler(), jax.random.PRNGKey(0))
    except ValueError as error:
      _fail(where, f"{point.family}(length={point.length}, nnz={point.nnz}): {error}")
  return points


def _check_layer(point: Point, where: str) -> None:
  """CommandError unless a causal point's family is causal by construction
  (``ja.patterns.is_causal``): a causal layer is defined for causal patterns only."""
  if point.causal and not ja.patterns.is_causal(point.family):
    _fail(
      where,
      f"family {point.family} is not causal, so it has no causal layer: choose "
      f"{sorted(ja.patterns.CAUSAL_GENERATORS)} or a published family with causal=true "
      "(docs/causal.md)",
    )


def in_causal_layer(preset: Preset) -> Preset:
  """The preset with every point judged in a causal layer (``bench run --causal``); CommandError
  naming the first family that is not causal."""
  points = tuple(dict.fromkeys(p._replace(causal=True) for p in preset.points))
  for point in points:
    _check_layer(point, f"--causal on preset {preset.name}")
  return preset._replace(points=points)


def parse_preset(text: str, name: str) -> Preset:
  """Parses and validates preset TOML ``text``; CommandError on any problem."""
  try:
    data = tomllib.loads(text)
  except tomllib.TOMLDecodeError as error:
    _fail(f"preset {name}", f"invalid TOML: {error}")
  unknown = sorted(set(data) - _TOP_LEVEL - set(_FIELDS))
  if unknown:
    _fail(
      f"preset {name}", f"unknown field(s) {unknown}; allowed: {sorted(_TOP_LEVEL | set(_FIELDS))}"
    )
  blocks = data.get("grid")
  if not isinstance(blocks, list) or not blocks or not all(isinstance(b, dict) for b in blocks):
    _fail(f"preset {name}", "needs at least one [[grid]] block")
  defaults = {
    "dtype": "float32",
    "criterion": "ratio",
    "matmul": "float32",
    "causal": False,
    **{k: v for k, v in data.items() if k in _FIELDS},
  }
  points: dict[Point, None] = {}
  for index, block in enumerate(blocks, 1):
    where = f"preset {name}, grid block {index}"
    unknown = sorted(set(block) - set(_FIELDS))
    if unknown:
      _fail(where, f"unknown field(s) {unknown}; allowed: {sorted(_FIELDS)}")
    merged = {**defaults, **block}
    if "max_outside_mass" in block and "mass" not in _as_list(merged["criterion"]):
      _fail(where, 'max_outside_mass (η) needs criterion "mass"')
    points.update(dict.fromkeys(_block_points(merged, where)))
  seed = _integer(0)(data.get("seed", 0), f"preset {name}.seed")
  description = data.get("description", "")
  if not isinstance(description, str):
    _fail(f"preset {name}.description", f"expected a string, got {description!r}")
  return Preset(name=name, source=text, seed=seed, description=description, points=tuple(points))


def preset_names() -> list[str]:
  """Names of the presets shipped in ``bench/presets``."""
  folder = importlib.resources.files("jaxattn_bench") / "presets"
  return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_preset(spec: str) -> Preset:
  """A shipped preset by name (``quick``) or a TOML file by path."""
  if spec in preset_names():
    resource = importlib.resources.files("jaxattn_bench") / "presets" / f"{spec}.toml"
    return parse_preset(resource.read_text(encoding="utf-8"), spec)
  path = pathlib.Path(spec)
  if path.suffix != ".toml" or not path.is_file():
    raise CommandError(
      f"unknown preset {spec!r}: not one of {preset_names()} and not an existing .toml file"
    )
  return parse_preset(path.read_text(encoding="utf-8"), path.stem)
