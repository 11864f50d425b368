"""Results store: one SQLite file per grid run, resumable and safe to kill. No JAX.

Tables::

  runs    one row per invocation that computed something: the environment
          (jax and jaxlib versions, backend, device kind and count, git commit,
          Python, platform), the preset's name and TOML source, seed, argv.
  points  one row per finished grid point: ``params`` (canonical JSON of all
          its fields), ``seed``, ``d_min`` (NULL when no grid d reached
          1 − δ), ``jl_dim`` (the provable d, NULL when δ = 0), ``wall_s``,
          ``run_id``. Unique on (params, seed). Since schema 2, per trial
          (NULL for points stored by schema 1): ``thresholds`` and
          ``first_success`` (T little-endian int32 each, 0 = not reached),
          ``verdicts`` (the [T, G] bools, row-major, ``np.packbits``), and
          the estimators ``d_median``, ``d_quantile`` with their interval
          ends ``*_low``, ``*_high`` (REAL, ±inf = unbounded or not reached;
          see ``ja.MinDResult``).
  rates   one row per (point, d): successes out of trials, the success rate
          and its Clopper–Pearson interval.

A point and its rates are written in one transaction, so a killed run loses at
most the point in progress and the file stays consistent. Opening a schema-1
file migrates it in place (one transaction adding the schema-2 columns); its
old points keep NULL per-trial data.
"""

from __future__ import annotations

import csv
import json
import pathlib
import sqlite3
from typing import Any, NamedTuple, Sequence

import numpy as np

from jaxattn_bench.errors import CommandError

SCHEMA_VERSION = 2
# The fields of a stored point's ``params``: those that describe the problem
# (they derive the point's PRNG key) ...
AXES = ("family", "method", "length", "nnz", "a_min", "eps1", "eps2", "dtype")
# ... and those that describe how d_min is searched.
SETTINGS = ("d_grid", "trials", "delta")
# Per-point estimators over the trials' thresholds (``ja.MinDResult``), schema 2.
ESTIMATORS = ("d_median", "d_median_low", "d_median_high", "d_quantile", "d_quantile_low",
              "d_quantile_high")
_TRIAL_COLUMNS = ("thresholds BLOB", "first_success BLOB", "verdicts BLOB",
                  *(f"{name} REAL" for name in ESTIMATORS))
RUN_FIELDS = ("started_at", "preset", "preset_source", "seed", "argv", "jax_version",
              "jaxlib_version", "backend", "device_kind", "device_count", "git_commit",
              "python", "platform")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, {", ".join(RUN_FIELDS)});
CREATE TABLE IF NOT EXISTS points (
  id INTEGER PRIMARY KEY, params TEXT NOT NULL, seed INTEGER NOT NULL,
  d_min INTEGER, jl_dim INTEGER, wall_s REAL NOT NULL, finished_at TEXT NOT NULL,
  run_id INTEGER NOT NULL REFERENCES runs(id), {", ".join(_TRIAL_COLUMNS)},
  UNIQUE (params, seed));
CREATE TABLE IF NOT EXISTS rates (
  point_id INTEGER NOT NULL REFERENCES points(id), d INTEGER NOT NULL,
  successes INTEGER NOT NULL, trials INTEGER NOT NULL, rate REAL NOT NULL,
  ci_low REAL NOT NULL, ci_high REAL NOT NULL, PRIMARY KEY (point_id, d));
"""


class Record(NamedTuple):
  """A stored grid point with its success rates over the d grid."""

  params: dict[str, Any]   # every field of the point, as stored
  seed: int
  d_min: int | None        # None: no grid d reached a success rate of 1 − δ
  jl_dim: int | None
  wall_s: float
  d: np.ndarray            # int [G]
  successes: np.ndarray    # int [G]
  trials: int
  rate: np.ndarray         # float [G]
  ci_low: np.ndarray       # float [G]
  ci_high: np.ndarray      # float [G]
  run: dict[str, Any]      # metadata of the run that computed it (RUN_FIELDS)
  # Per trial and the estimators (``ja.MinDResult``); None for points stored by schema 1.
  verdicts: np.ndarray | None = None       # bool [T, G]
  thresholds: np.ndarray | None = None     # float [T]: grid d, inf = not reached
  first_success: np.ndarray | None = None  # float [T]: grid d, inf = never verified
  d_median: float | None = None            # ±inf: unbounded, or above the grid
  d_median_low: float | None = None
  d_median_high: float | None = None
  d_quantile: float | None = None          # the (1 − δ)-quantile
  d_quantile_low: float | None = None
  d_quantile_high: float | None = None


def canonical(params: dict[str, Any]) -> str:
  """The JSON text that identifies a point: sorted keys, no spaces."""
  return json.dumps(params, sort_keys=True, separators=(",", ":"))


class ResultsStore:
  """An open results file; use as a context manager.

  ``create=False`` opens an existing file only (for reading).
  """

  def __init__(self, path: str | pathlib.Path, create: bool = True):
    self.path = pathlib.Path(path)
    if not create and not self.path.is_file():
      raise CommandError(f"no results file {str(self.path)!r}")
    if create:
      self.path.parent.mkdir(parents=True, exist_ok=True)
    try:
      self._db = sqlite3.connect(self.path)
      version = self._db.execute("PRAGMA user_version").fetchone()[0]
      tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as error:
      raise CommandError(f"{str(self.path)!r} is not a results file: {error}") from None
    if tables and version not in (1, SCHEMA_VERSION):
      self._db.close()
      raise CommandError(f"{str(self.path)!r} is not a results file of schema 1 or "
                         f"{SCHEMA_VERSION} (found user_version {version})")
    with self._db:
      if tables and version == 1:  # schema 1 -> 2: per-trial columns, NULL for old points
        for column in _TRIAL_COLUMNS:
          self._db.execute(f"ALTER TABLE points ADD COLUMN {column}")
      self._db.executescript(_SCHEMA)
      self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

  def __enter__(self) -> ResultsStore:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def close(self) -> None:
    self._db.close()

  def start_run(self, metadata: dict[str, Any]) -> int:
    """Records a run's metadata (keys of RUN_FIELDS) and returns its id."""
    unknown = set(metadata) - set(RUN_FIELDS)
    if unknown:
      raise ValueError(f"unknown run metadata {sorted(unknown)}")
    with self._db:
      cursor = self._db.execute(
          f"INSERT INTO runs ({', '.join(metadata)}) VALUES ({', '.join('?' * len(metadata))})",
          tuple(metadata.values()))
    return cursor.lastrowid

  def finished(self) -> set[tuple[str, int]]:
    """(canonical params, seed) of every stored point."""
    return set(self._db.execute("SELECT params, seed FROM points"))

  def add(self, run_id: int, params: dict[str, Any], seed: int, result, jl_dim: int | None,
          wall_s: float) -> None:
    """Stores a finished point, its rates and per-trial data (a ``ja.MinDResult``) in one
    transaction; per-trial columns stay NULL for a result without verdicts."""
    trial = (None,) * len(_TRIAL_COLUMNS)
    if result.verdicts is not None:
      trial = (_pack_d(result.thresholds), _pack_d(result.first_success),
               np.packbits(np.asarray(result.verdicts, bool)).tobytes(),
               *(float(getattr(result, name)) for name in ESTIMATORS))
    names = [column.split()[0] for column in _TRIAL_COLUMNS]
    with self._db:
      cursor = self._db.execute(
          f"INSERT INTO points (params, seed, d_min, jl_dim, wall_s, finished_at, run_id, "
          f"{', '.join(names)}) VALUES (?, ?, ?, ?, ?, datetime('now'), ?"
          f"{', ?' * len(names)})",
          (canonical(params), seed, result.d_min, jl_dim, wall_s, run_id, *trial))
      self._db.executemany(
          "INSERT INTO rates VALUES (?, ?, ?, ?, ?, ?, ?)",
          [(cursor.lastrowid, int(d), int(k), result.trials, float(r), float(lo), float(hi))
           for d, k, r, lo, hi in zip(result.d_grid, result.successes, result.success_rate,
                                      result.ci_low, result.ci_high)])

  def records(self) -> list[Record]:
    """Every stored point, in the order they were finished."""
    runs = {row[0]: dict(zip(RUN_FIELDS, row[1:]))
            for row in self._db.execute(f"SELECT id, {', '.join(RUN_FIELDS)} FROM runs")}
    rates: dict[int, list[tuple]] = {}
    for row in self._db.execute("SELECT * FROM rates ORDER BY point_id, d"):
      rates.setdefault(row[0], []).append(row[1:])
    records = []
    for (point_id, params, seed, d_min, jl_dim, wall_s, run_id, thresholds, first, verdicts,
         *estimators) in self._db.execute(
             "SELECT id, params, seed, d_min, jl_dim, wall_s, run_id, thresholds, first_success, "
             f"verdicts, {', '.join(ESTIMATORS)} FROM points ORDER BY id"):
      d, successes, trials, rate, low, high = (np.asarray(c) for c in zip(*rates[point_id]))
      trial = {}
      if verdicts is not None:
        unpacked = np.unpackbits(np.frombuffer(verdicts, np.uint8), count=int(trials[0]) * d.size)
        trial = dict(verdicts=unpacked.reshape(int(trials[0]), d.size).astype(bool),
                     thresholds=_unpack_d(thresholds), first_success=_unpack_d(first),
                     **dict(zip(ESTIMATORS, estimators)))
      records.append(Record(params=json.loads(params), seed=seed, d_min=d_min, jl_dim=jl_dim,
                            wall_s=wall_s, d=d, successes=successes, trials=int(trials[0]),
                            rate=rate, ci_low=low, ci_high=high, run=runs[run_id], **trial))
    return records


def _pack_d(values: np.ndarray) -> bytes:
  """Grid d per trial as little-endian int32, inf (not reached) as 0."""
  values = np.asarray(values, float)
  return np.where(np.isfinite(values), values, 0).astype("<i4").tobytes()


def _unpack_d(blob: bytes) -> np.ndarray:
  """Inverse of ``_pack_d``: float [T], 0 back to inf."""
  values = np.frombuffer(blob, "<i4").astype(float)
  return np.where(values > 0, values, np.inf)


def _draws(record: Record) -> tuple:
  """What decides a point's trials: every field but the search settings, and the seed."""
  return tuple(sorted((k, v) for k, v in record.params.items() if k not in SETTINGS)), record.seed


def distinct(records: Sequence[Record]) -> list[Record]:
  """One record per set of draws: of points that differ only in their settings (d grid,
  trials, δ), the one with the most trials, then searched on the most d.

  Such points share their PRNG key (``jaxattn_bench.grid.point_key``), and trial t's
  keys do not depend on T (``ja.trial_keys``), so their patterns and projections are
  the first trials of the largest one: one measurement, not two.
  """
  best: dict[tuple, Record] = {}
  size = lambda r: (r.trials, len(r.d))
  for record in records:
    kept = best.setdefault(_draws(record), record)
    if size(record) > size(kept):
      best[_draws(record)] = record
  return list(best.values())


def record_key(record: Record) -> tuple[str, int]:
  """(canonical params, seed): a record's identity, as in ``ResultsStore.finished``."""
  return canonical(record.params), record.seed


def export_csv(records: list[Record], path: str | pathlib.Path) -> None:
  """Tidy CSV: one row per (point, d) with the point's fields, d_min, the quantile estimators
  (empty for schema-1 points; inf where unbounded or not reached) and run environment."""
  param_names = sorted({name for r in records for name in r.params} - {"d_grid"})
  columns = (["seed", *param_names, "d_min", *ESTIMATORS, "jl_dim", "wall_s", "d", "successes",
              "success_rate", "ci_low", "ci_high", "backend", "device_kind", "git_commit"])
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("w", newline="", encoding="utf-8") as handle:
    writer = csv.writer(handle)
    writer.writerow(columns)
    for r in records:
      head = [r.seed, *(r.params.get(name, "") for name in param_names),
              "" if r.d_min is None else r.d_min,
              *("" if getattr(r, name) is None else f"{getattr(r, name):g}" for name in ESTIMATORS),
              "" if r.jl_dim is None else r.jl_dim,
              f"{r.wall_s:.3f}"]
      tail = [r.run.get("backend"), r.run.get("device_kind"), r.run.get("git_commit")]
      for row in zip(r.d, r.successes, r.rate, r.ci_low, r.ci_high):
        d, k, rate, low, high = row
        writer.writerow(head + [int(d), int(k), f"{rate:.6g}", f"{low:.6g}",
                                f"{high:.6g}"] + tail)
