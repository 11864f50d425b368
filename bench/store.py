"""Results store: one SQLite file per grid run, resumable, safe to kill, shareable. No JAX.

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
          see ``ja.MinDResult``). Since schema 3, ``evaluated`` (packed like
          ``verdicts``; NULL: every verdict was computed): which (trial, d) an
          adaptive search evaluated; the others' verdicts are imputed.
  rates   one row per (point, d): successes out of trials, the success rate
          and its Clopper–Pearson interval.
  claims  one row per point a run is computing: ``params``, ``seed``, the
          claimant's ``owner`` (a random token per open store), ``host``,
          ``pid`` and ``expires_at`` (Unix seconds). Added to any schema-2
          file opened for writing; readers ignore it.

Several processes may write one file at once (``bench run`` twice on one
store): every write is one ``BEGIN IMMEDIATE`` transaction, which waits up to
``BUSY_S`` for another's. A run claims a point (``claim``) before computing
it and renews its claims while it computes (``heartbeat``); storing the
point removes its claim. A claim held by another owner is respected until it
expires (``lease_s`` after its last renewal) or, on the same host, its
process no longer exists; then it may be taken over. So no point is computed
twice while its claimant lives, and one whose claimant was killed is not
lost. Should two results of a point meet anyway, the first stored stands.

That sharing relies on SQLite's file locks, which its documentation does not
trust on network filesystems (``jaxattn_bench.filesystems``: NFS, SMB/CIFS,
Lustre without ``flock``). There a store opened for writing has one writer (its
rollback journal as everywhere; never WAL): the writer holds a claim on the
whole store, renewed like a point's, and a second writer is refused in one
line that points to shards (``bench run --shard``), unless
``allow_network_fs``. Readers are not refused. A requeued shard on another node
finds its store and takes it over once the claim of the run that ended lapses
(``lease_s``).

A point and its rates are written in one transaction (SQLite's rollback
journal), so a killed run loses at most the point in progress and the file
stays consistent. Opening a schema-1 or 2 file for writing migrates it in place
(one transaction adding the later schemas' columns); its old points keep NULL
there (schema 1: no per-trial data; schema 2: every verdict computed).

Opening for reading (``create=False``: plots, ``bench run --plan``, a run
with nothing left to compute) uses SQLite's read-only mode (``mode=ro``):
the file is never changed, may itself be read-only, and a schema-1 file is
read as it is. A file with other tables (not a results file) is refused
unchanged in both modes; a database without tables reads as holding no points.
A file a killed writer left mid-transaction cannot be read read-only
(``InterruptedWrite``) until a writer opens it, which rolls that write back.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pathlib
import secrets
import socket
import sqlite3
import threading
import time
import warnings
from typing import Any, Iterator, NamedTuple, Sequence, cast

import numpy as np

from jaxattn_bench import filesystems
from jaxattn_bench.errors import CommandError

SCHEMA_VERSION = 3
# The fields of a stored point's ``params``: those that describe the problem
# (they derive the point's PRNG key, but for dtype, the criterion and the layer) ...
AXES = (
  "family",
  "method",
  "length",
  "nnz",
  "a_min",
  "eps1",
  "eps2",
  "dtype",
  "criterion",
  "max_outside_mass",
  "causal",
)
# ... of which these two are left out of ``params`` under the ratio criterion (the
# default), so points stored before the mass criterion existed keep their identity ...
CRITERION_FIELDS = ("criterion", "max_outside_mass")
# ... and those that describe how d_min is searched.
SETTINGS = ("d_grid", "trials", "delta", "matmul")
# Per-point estimators over the trials' thresholds (``ja.MinDResult``), schema 2.
ESTIMATORS = (
  "d_median",
  "d_median_low",
  "d_median_high",
  "d_quantile",
  "d_quantile_low",
  "d_quantile_high",
)
_TRIAL_COLUMNS = (
  "thresholds BLOB",
  "first_success BLOB",
  "verdicts BLOB",
  *(f"{name} REAL" for name in ESTIMATORS),
  "evaluated BLOB",
)
# The columns each schema added to ``points`` (a migration adds those of later schemas).
_ADDED = {2: _TRIAL_COLUMNS[:-1], 3: _TRIAL_COLUMNS[-1:]}
_TRIAL_NAMES = tuple(column.split()[0] for column in _TRIAL_COLUMNS)
RUN_FIELDS = (
  "started_at",
  "preset",
  "preset_source",
  "seed",
  "argv",
  "jax_version",
  "jaxlib_version",
  "backend",
  "device_kind",
  "device_count",
  "git_commit",
  "python",
  "platform",
)
_TABLES = ("runs", "points", "rates")  # what makes a file a results file; plus claims
_SCHEMA = (
  f"CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, {', '.join(RUN_FIELDS)})",
  f"""CREATE TABLE IF NOT EXISTS points (
  id INTEGER PRIMARY KEY, params TEXT NOT NULL, seed INTEGER NOT NULL,
  d_min INTEGER, jl_dim INTEGER, wall_s REAL NOT NULL, finished_at TEXT NOT NULL,
  run_id INTEGER NOT NULL REFERENCES runs(id), {", ".join(_TRIAL_COLUMNS)},
  UNIQUE (params, seed))""",
  """CREATE TABLE IF NOT EXISTS rates (
  point_id INTEGER NOT NULL REFERENCES points(id), d INTEGER NOT NULL,
  successes INTEGER NOT NULL, trials INTEGER NOT NULL, rate REAL NOT NULL,
  ci_low REAL NOT NULL, ci_high REAL NOT NULL, PRIMARY KEY (point_id, d))""",
  """CREATE TABLE IF NOT EXISTS claims (
  params TEXT NOT NULL, seed INTEGER NOT NULL, owner TEXT NOT NULL, host TEXT NOT NULL,
  pid INTEGER NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (params, seed))""",
)
LEASE_S = 60.0  # a claim's life after its last renewal
BUSY_S = 60.0  # how long a statement waits for another process's write to finish
WRITER = ("*", -1)  # the claim key of a store's single writer (network filesystems)


class Record(NamedTuple):
  """A stored grid point with its success rates over the d grid."""

  params: dict[str, Any]  # every field of the point, as stored
  seed: int
  d_min: int | None  # None: no grid d reached a success rate of 1 − δ
  jl_dim: int | None
  wall_s: float
  d: np.ndarray  # int [G]
  successes: np.ndarray  # int [G]
  trials: int
  rate: np.ndarray  # float [G]
  ci_low: np.ndarray  # float [G]
  ci_high: np.ndarray  # float [G]
  run: dict[str, Any]  # metadata of the run that computed it (RUN_FIELDS)
  # Per trial and the estimators (``ja.MinDResult``); None for points stored by schema 1.
  verdicts: np.ndarray | None = None  # bool [T, G] (imputed where not evaluated)
  thresholds: np.ndarray | None = None  # float [T]: grid d, inf = not reached
  first_success: np.ndarray | None = None  # float [T]: grid d, inf = never verified
  d_median: float | None = None  # ±inf: unbounded, or above the grid
  d_median_low: float | None = None
  d_median_high: float | None = None
  d_quantile: float | None = None  # the (1 − δ)-quantile
  d_quantile_low: float | None = None
  d_quantile_high: float | None = None
  evaluated: np.ndarray | None = None  # bool [T, G]; None: every verdict was computed
  finished_at: str | None = None  # when it was stored (UTC, SQLite's datetime)


def canonical(params: dict[str, Any]) -> str:
  """The JSON text that identifies a point: sorted keys, no spaces."""
  return json.dumps(params, sort_keys=True, separators=(",", ":"))


def unwritable(path: str | pathlib.Path, folder: bool = False) -> str | None:
  """Why ``path`` cannot be written as a folder (``folder``) or a file; None when it can.

  An existing path must be of that kind and writable; a new one needs its
  nearest existing ancestor to be a writable folder (folders in between are
  created). Nothing is created or changed.
  """
  path = pathlib.Path(path).absolute()
  if path.exists():
    if path.is_dir() != folder:
      return "is a folder" if path.is_dir() else "is not a folder"
    return None if os.access(path, os.W_OK | (os.X_OK if folder else 0)) else "is read-only"
  above = next(parent for parent in path.parents if parent.exists())
  if not above.is_dir():
    return f"{str(above)!r} is not a folder"
  return None if os.access(above, os.W_OK | os.X_OK) else f"folder {str(above)!r} is read-only"


def check_output(path: str | pathlib.Path, what: str, folder: bool = False) -> None:
  """CommandError naming ``what`` unless ``path`` can be written (``unwritable``)."""
  reason = unwritable(path, folder)
  if reason:
    raise CommandError(f"cannot write {what} {str(path)!r}: {reason}")


def results_unwritable(path: str | pathlib.Path) -> str | None:
  """Why the results file ``path`` cannot be written (SQLite also writes its journal in
  the file's folder); None when it can."""
  path = pathlib.Path(path)
  folder = path.absolute().parent
  return unwritable(path) or (unwritable(folder, folder=True) if folder.exists() else None)


def _connect(path: pathlib.Path, write: bool) -> sqlite3.Connection:
  """A connection without implicit transactions (see ``_transaction``); ``write=False``
  opens the file in SQLite's read-only mode, which never changes it."""
  target, uri = (path, False) if write else (f"{path.resolve().as_uri()}?mode=ro", True)
  return sqlite3.connect(target, timeout=BUSY_S, isolation_level=None, uri=uri)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
  """One ``BEGIN IMMEDIATE`` transaction: committed at the end, rolled back on any exception."""
  db.execute("BEGIN IMMEDIATE")
  try:
    yield
  except BaseException:
    db.execute("ROLLBACK")
    raise
  db.execute("COMMIT")


def _may_run(host: str, pid: int) -> bool:
  """False only when ``host`` is this host (POSIX) and it has no process ``pid``."""
  if host != socket.gethostname() or os.name != "posix":
    return True
  try:
    os.kill(pid, 0)  # signal 0: sends nothing, only checks that the process exists
  except ProcessLookupError:
    return False
  except PermissionError:  # it exists, as another user's
    pass
  return True


class InterruptedWrite(CommandError):
  """A results file that a killed writer left mid-transaction (a hot journal beside it): a
  read-only connection cannot read it, and opening it for writing rolls the write back."""


class ResultsStore:
  """An open results file; use as a context manager.

  ``create=True`` opens it for writing (creating it and its folder if need
  be; CommandError if it cannot be written). ``create=False`` opens an
  existing file read-only (``mode=ro``): it is never changed. ``lease_s``:
  the life of this store's claims after their last renewal.
  """

  def __init__(
    self,
    path: str | pathlib.Path,
    create: bool = True,
    lease_s: float = LEASE_S,
    allow_network_fs: bool = False,
  ):
    self.path = pathlib.Path(path)
    self.writable, self.lease_s = create, lease_s
    self.owner = secrets.token_hex(8)  # this store's claims
    self.single_writer = False
    if not create and not self.path.is_file():
      raise CommandError(f"no results file {str(self.path)!r}")
    if create:
      reason = results_unwritable(self.path)
      if reason:
        raise CommandError(f"cannot write results file {str(self.path)!r}: {reason}")
      self.path.parent.mkdir(parents=True, exist_ok=True)
      found = filesystems.filesystem(self.path)
      if not found.known:
        warnings.warn(
          f"results file {str(self.path)!r} is on a filesystem of unknown type "
          f"({found.name}): assumed to lock as a local one",
          stacklevel=2,
        )
      self.single_writer = not (found.trusted or allow_network_fs)
    self._db = _connect(self.path, create)
    try:
      self.version = self._check_version()
      if create:
        self._initialize()
    except BaseException as error:
      self._db.close()
      journal = self.path.with_name(self.path.name + "-journal")
      if not create and isinstance(error, sqlite3.OperationalError) and journal.is_file():
        raise InterruptedWrite(
          f"{str(self.path)!r} was left in the middle of a write (by a "
          f"killed run: {str(journal)!r}), which only a writer can roll "
          "back: run bench run on it first"
        ) from None
      if isinstance(error, sqlite3.DatabaseError):
        raise CommandError(f"{str(self.path)!r} is not a results file: {error}") from None
      raise

  def _check_version(self) -> int:
    """The file's schema version (0: no tables yet); CommandError for any other kind of file."""
    version = self._db.execute("PRAGMA user_version").fetchone()[0]
    tables = {
      name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    if not tables:
      return 0
    if version not in range(1, SCHEMA_VERSION + 1) or not set(_TABLES) <= tables:
      raise CommandError(
        f"{str(self.path)!r} is not a results file of schema 1 to "
        f"{SCHEMA_VERSION} (found user_version {version}, tables "
        f"{sorted(tables)})"
      )
    return version

  def _initialize(self) -> None:
    """Creates the tables, or adds the columns of later schemas (``_ADDED``: NULL for old
    points)."""
    try:
      with _transaction(self._db):
        version = self._check_version()  # again: another process may have migrated it
        for column in (c for v, added in _ADDED.items() if 0 < version < v for c in added):
          self._db.execute(f"ALTER TABLE points ADD COLUMN {column}")
        for statement in _SCHEMA:
          self._db.execute(statement)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.OperationalError as error:  # read-only, or locked for BUSY_S
      raise CommandError(f"cannot write results file {str(self.path)!r}: {error}") from None
    self.version = SCHEMA_VERSION
    if self.single_writer:
      self._become_the_writer()

  def _become_the_writer(self) -> None:
    """One writer on a network filesystem, kept without trusting its file locks: the writer
    holds a claim on the whole store (``WRITER``, renewed by ``heartbeat`` like a point's
    claim). Another owner's live one refuses this store in one line; else its claims and
    the points' claims of runs that ended are taken over."""
    with _transaction(self._db):
      held = self._db.execute(
        "SELECT host, pid, expires_at FROM claims WHERE params = ? AND owner != ?",
        (WRITER[0], self.owner),
      ).fetchone()
      if held and held[2] > time.time() and _may_run(held[0], held[1]):
        name = filesystems.filesystem(self.path).name
        raise CommandError(
          f"results file {str(self.path)!r} is on {name}, a network filesystem whose locks "
          f"SQLite's documentation does not trust, and a run on {held[0]} (pid {held[1]}) is "
          "writing it: there a store has one writer; run shards into stores of their own "
          "(bench run --shard I/N, docs/clusters.md), or pass --allow-network-fs to share it"
        )
      self._db.execute("DELETE FROM claims")
      self._db.execute(
        "INSERT INTO claims VALUES (?, ?, ?, ?, ?, ?)",
        (*WRITER, self.owner, socket.gethostname(), os.getpid(), time.time() + self.lease_s),
      )

  def __enter__(self) -> ResultsStore:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def close(self) -> None:
    """Releases this store's claims (writing) and closes the file; again: nothing."""
    try:
      if self.writable:
        self.writable = False
        with _transaction(self._db):
          self._db.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))
    finally:
      self._db.close()

  def start_run(self, metadata: dict[str, Any]) -> int:
    """Records a run's metadata (keys of RUN_FIELDS) and returns its id."""
    unknown = set(metadata) - set(RUN_FIELDS)
    if unknown:
      raise ValueError(f"unknown run metadata {sorted(unknown)}")
    with _transaction(self._db):
      cursor = self._db.execute(
        f"INSERT INTO runs ({', '.join(metadata)}) VALUES ({', '.join('?' * len(metadata))})",
        tuple(metadata.values()),
      )
    return cast(int, cursor.lastrowid)  # an INSERT's row id, never None

  def finished(self) -> set[tuple[str, int]]:
    """(canonical params, seed) of every stored point."""
    if not self.version:
      return set()
    return set(self._db.execute("SELECT params, seed FROM points"))

  def claim(self, key: tuple[str, int]) -> bool:
    """Claims the point ``key`` = (canonical params, seed) for this store, for ``lease_s``.

    False when the point is stored, or claimed by another owner whose claim
    has not expired and whose process may still run (``_may_run``); else the
    claim is taken (or renewed, or taken over) and True.
    """
    now = time.time()
    with _transaction(self._db):
      if self._db.execute("SELECT 1 FROM points WHERE params = ? AND seed = ?", key).fetchone():
        return False
      held = self._db.execute(
        "SELECT owner, host, pid, expires_at FROM claims WHERE params = ? AND seed = ?", key
      ).fetchone()
      if held and held[0] != self.owner and held[3] > now and _may_run(held[1], held[2]):
        return False
      self._db.execute(
        "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?)",
        (*key, self.owner, socket.gethostname(), os.getpid(), now + self.lease_s),
      )
    return True

  @contextlib.contextmanager
  def heartbeat(self) -> Iterator[None]:
    """Extends this store's claims to ``lease_s`` from now, every ``lease_s / 4`` seconds
    while the block runs (a thread with its own connection: a computation of any length
    keeps its claims while its process lives), the single writer's ``WRITER`` claim too."""
    stop = threading.Event()

    def beat():
      db = _connect(self.path, write=True)
      try:
        while not stop.wait(self.lease_s / 4):
          with contextlib.suppress(sqlite3.OperationalError), _transaction(db):  # busy: next beat
            db.execute(
              "UPDATE claims SET expires_at = ? WHERE owner = ?",
              (time.time() + self.lease_s, self.owner),
            )
      finally:
        db.close()

    thread = threading.Thread(target=beat, name="results-store-heartbeat", daemon=True)
    thread.start()
    try:
      yield
    finally:
      stop.set()
      thread.join()

  def add(
    self, run_id: int, params: dict[str, Any], seed: int, result, jl_dim: int | None, wall_s: float
  ) -> bool:
    """Stores a finished point, its rates and per-trial data (a ``ja.MinDResult``) in one
    transaction that also removes the point's claim; per-trial columns stay NULL for a
    result without verdicts. False (nothing written) when the point is already stored."""
    trial = None
    if result.verdicts is not None:
      trial = (
        result.thresholds,
        result.first_success,
        result.verdicts,
        *(float(getattr(result, name)) for name in ESTIMATORS),
        getattr(result, "evaluated", None),
      )
    key = (canonical(params), seed)
    rates = zip(result.d_grid, result.successes, result.success_rate, result.ci_low, result.ci_high)
    with _transaction(self._db):
      written = self._insert_point(
        key, (result.d_min, jl_dim, wall_s, None, run_id), trial, result.trials, rates
      )
      self._db.execute("DELETE FROM claims WHERE params = ? AND seed = ?", key)
    return written

  def _insert_point(
    self, key: tuple[str, int], fields: tuple, trial: tuple | None, trials: int, rates
  ) -> bool:
    """Inside a transaction: one point, ``fields`` = (d_min, jl_dim, wall_s, finished_at or
    None for now, run_id), ``trial`` = (thresholds, first_success, verdicts, *ESTIMATORS,
    evaluated or None) or None, and its ``rates`` (d, successes, rate, ci_low, ci_high); False
    (nothing written) when the point is already stored."""
    d_min, jl_dim, wall_s, finished_at, run_id = fields
    packed = (
      (None,) * len(_TRIAL_COLUMNS)
      if trial is None
      else (
        _pack_d(trial[0]),
        _pack_d(trial[1]),
        _pack_bits(trial[2]),
        *trial[3:-1],
        None if trial[-1] is None else _pack_bits(trial[-1]),
      )
    )
    cursor = self._db.execute(
      f"INSERT INTO points (params, seed, d_min, jl_dim, wall_s, finished_at, run_id, "
      f"{', '.join(_TRIAL_NAMES)}) VALUES (?, ?, ?, ?, ?, COALESCE(?, datetime('now')), ?"
      f"{', ?' * len(_TRIAL_NAMES)}) ON CONFLICT (params, seed) DO NOTHING",
      (*key, d_min, jl_dim, wall_s, finished_at, run_id, *packed),
    )
    if cursor.rowcount:
      self._db.executemany(
        "INSERT INTO rates VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
          (cursor.lastrowid, int(d), int(k), trials, float(r), float(lo), float(hi))
          for d, k, r, lo, hi in rates
        ],
      )
    return bool(cursor.rowcount)

  def records(self) -> list[Record]:
    """Every stored point, in the order they were finished."""
    if not self.version:
      return []
    runs = {
      row[0]: dict(zip(RUN_FIELDS, row[1:]))
      for row in self._db.execute(f"SELECT id, {', '.join(RUN_FIELDS)} FROM runs")
    }
    rates: dict[int, list[tuple]] = {}
    for row in self._db.execute("SELECT * FROM rates ORDER BY point_id, d"):
      rates.setdefault(row[0], []).append(row[1:])
    # an older file read as it is: NULL for the columns of later schemas
    trial_columns = [
      c.split()[0]
      if all(c not in added for v, added in _ADDED.items() if v > self.version)
      else "NULL"
      for c in _TRIAL_COLUMNS
    ]
    rows = self._db.execute(
      "SELECT id, params, seed, d_min, jl_dim, wall_s, finished_at, run_id, "
      f"{', '.join(trial_columns)} FROM points ORDER BY id"
    )
    return [_record(row, rates[row[0]], runs) for row in rows]

  def insert(self, records: Sequence[Record]) -> int:
    """Copies ``records`` (of other stores: ``bench merge``) into this one in one transaction:
    each distinct run's metadata once (a run already here with the same metadata is reused;
    ids are remapped), each point with its rates, per-trial data and ``finished_at``. A point
    already stored here is left as it is. Returns the number of points written."""
    written, run_ids = 0, {}
    with _transaction(self._db):
      for record in records:
        run = tuple(record.run.get(name) for name in RUN_FIELDS)
        if run not in run_ids:
          found = self._db.execute(
            "SELECT id FROM runs WHERE " + " AND ".join(f"{n} IS ?" for n in RUN_FIELDS), run
          ).fetchone()
          run_ids[run] = (
            found[0]
            if found
            else self._db.execute(
              f"INSERT INTO runs ({', '.join(RUN_FIELDS)}) VALUES "
              f"({', '.join('?' * len(RUN_FIELDS))})",
              run,
            ).lastrowid
          )
        trial = (
          None
          if record.verdicts is None
          else (
            record.thresholds,
            record.first_success,
            record.verdicts,
            *(getattr(record, name) for name in ESTIMATORS),
            record.evaluated,
          )
        )
        written += self._insert_point(
          record_key(record),
          (record.d_min, record.jl_dim, record.wall_s, record.finished_at, run_ids[run]),
          trial,
          record.trials,
          zip(record.d, record.successes, record.rate, record.ci_low, record.ci_high),
        )
    return written


def _record(row: tuple, rates: list[tuple], runs: dict[int, dict]) -> Record:
  """The ``Record`` of a row of ``points`` (``ResultsStore.records``'s columns), its rows of
  ``rates`` (d, successes, trials, rate, interval) and the runs by id."""
  (
    _,
    params,
    seed,
    d_min,
    jl_dim,
    wall_s,
    finished_at,
    run_id,
    thresholds,
    first,
    verdicts,
    *estimators,
    evaluated,
  ) = row
  d, successes, trials, rate, low, high = (np.asarray(c) for c in zip(*rates))
  trial = {}
  if verdicts is not None:
    shape = (int(trials[0]), d.size)
    trial = dict(
      verdicts=_unpack_bits(verdicts, shape),
      thresholds=_unpack_d(thresholds),
      first_success=_unpack_d(first),
      **dict(zip(ESTIMATORS, estimators)),
      evaluated=None if evaluated is None else _unpack_bits(evaluated, shape),
    )
  return Record(
    params=json.loads(params),
    seed=seed,
    d_min=d_min,
    jl_dim=jl_dim,
    wall_s=wall_s,
    d=d,
    successes=successes,
    trials=int(trials[0]),
    rate=rate,
    ci_low=low,
    ci_high=high,
    run=runs[run_id],
    finished_at=finished_at,
    **trial,
  )


def _pack_bits(values: np.ndarray) -> bytes:
  """Bools [T, G], row-major, ``np.packbits``."""
  return np.packbits(np.asarray(values, bool)).tobytes()


def _unpack_bits(blob: bytes, shape: tuple[int, int]) -> np.ndarray:
  """Inverse of ``_pack_bits``: bool ``shape``."""
  return (
    np.unpackbits(np.frombuffer(blob, np.uint8), count=shape[0] * shape[1])
    .reshape(shape)
    .astype(bool)
  )


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
  (empty for schema-1 points; inf where unbounded or not reached), how many trials were
  evaluated at d (the others' verdicts imputed: ``ja.MinDResult``) and run environment."""
  param_names = sorted({name for r in records for name in r.params} - {"d_grid"})
  columns = [
    "seed",
    *param_names,
    "d_min",
    *ESTIMATORS,
    "jl_dim",
    "wall_s",
    "d",
    "successes",
    "evaluated",
    "success_rate",
    "ci_low",
    "ci_high",
    "backend",
    "device_kind",
    "git_commit",
  ]
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("w", newline="", encoding="utf-8") as handle:
    writer = csv.writer(handle)
    writer.writerow(columns)
    for r in records:
      head = [
        r.seed,
        *(r.params.get(name, "") for name in param_names),
        "" if r.d_min is None else r.d_min,
        *("" if getattr(r, name) is None else f"{getattr(r, name):g}" for name in ESTIMATORS),
        "" if r.jl_dim is None else r.jl_dim,
        f"{r.wall_s:.3f}",
      ]
      tail = [r.run.get("backend"), r.run.get("device_kind"), r.run.get("git_commit")]
      evaluated = np.full(len(r.d), r.trials) if r.evaluated is None else r.evaluated.sum(0)
      for row in zip(r.d, r.successes, evaluated, r.rate, r.ci_low, r.ci_high):
        d, k, n, rate, low, high = row
        writer.writerow(
          head + [int(d), int(k), int(n), f"{rate:.6g}", f"{low:.6g}", f"{high:.6g}"] + tail
        )
