"""One grid over several processes (hosts): JAX's multi-process runtime and the work split.

Every process runs the same command with the same preset; JAX's distributed
runtime (``jax.distributed.initialize``) connects them. Each process takes
its share of the pending grid points (``split_work``: the same deterministic
split on every process, so no point is computed twice or skipped), runs it
on its own local devices, and the results are all-gathered to process 0,
the only one that reads or writes the results store.

Two processes on two hosts (or on one, with 127.0.0.1)::

  python -m bench run --preset scale --coordinator HOST0:8476 --num-processes 2 --process-id 0
  python -m bench run --preset scale --coordinator HOST0:8476 --num-processes 2 --process-id 1

Under a cluster launcher that sets its own environment (SLURM, Open MPI,
Cloud TPU pods), ``--distributed`` lets JAX read it instead.

No process waits forever for one that has stopped: before every collective
(``broadcast``, ``gather_sum``) the processes meet in JAX's key-value store
(``rendezvous``), and a process that exits, for whatever reason, says so
there first (an ``atexit`` hook). A process waiting for a peer that has
exited, or that has not arrived within ``--peer-timeout`` seconds, stops
with one line and exit status 3 instead of entering a collective that
would never complete.
"""

from __future__ import annotations

import argparse
import atexit
import heapq
import itertools
import time
from typing import NamedTuple, Sequence

import jax
import numpy as np

from jaxattn_bench.errors import CommandError


PEER_TIMEOUT_S = 6 * 3600.0  # the longest a process waits for a peer at a collective
POLL_MS = 1000  # how often a waiting process looks for peers that exited
_COLLECTIVES = itertools.count()


class Processes(NamedTuple):
  """This process's index (rank), the number of processes in the run (size) and the longest wait
  for a peer."""

  rank: int
  size: int
  peer_timeout: float = PEER_TIMEOUT_S


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """The multi-process options of a command (all off: one process)."""
  group = parser.add_argument_group("several processes (hosts); see jaxattn_bench.hosts")
  group.add_argument(
    "--coordinator", metavar="HOST:PORT", help="address of process 0, the same for every process"
  )
  group.add_argument("--num-processes", type=int, metavar="P", help="number of processes")
  group.add_argument("--process-id", type=int, metavar="I", help="this process, 0 .. P-1")
  group.add_argument(
    "--distributed",
    action="store_true",
    help="start JAX's multi-process runtime from the cluster launcher's "
    "environment (SLURM, Open MPI, TPU pods)",
  )
  group.add_argument(
    "--peer-timeout",
    type=float,
    default=PEER_TIMEOUT_S,
    metavar="S",
    help="stop (exit status 3) when another process has not reached the next "
    "exchange of results within S seconds (default %(default)g)",
  )


def initialize(args: argparse.Namespace) -> Processes:
  """Starts ``jax.distributed`` as the options say (before any JAX computation)."""
  explicit = (args.coordinator, args.num_processes, args.process_id)
  if any(value is not None for value in explicit):
    if any(value is None for value in explicit):
      raise CommandError("--coordinator, --num-processes and --process-id go together")
    if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
      raise CommandError(
        f"need 0 <= --process-id < --num-processes, got {args.process_id} and {args.num_processes}"
      )
    jax.distributed.initialize(
      coordinator_address=args.coordinator,
      num_processes=args.num_processes,
      process_id=args.process_id,
    )
  elif args.distributed:
    jax.distributed.initialize()
  processes = Processes(jax.process_index(), jax.process_count(), args.peer_timeout)
  if processes.size > 1:
    atexit.register(_say_exited, processes.rank)  # runs before JAX's own shutdown
  return processes


def _client():
  from jax._src import distributed

  return distributed.global_state.client


def _say_exited(index: int) -> None:
  """Tells the other processes that this one is exiting (best effort: the store may be gone)."""
  try:
    _client().key_value_set(f"jaxattn/exited/{index}", "1")
  except Exception:  # noqa: BLE001  (exiting anyway; nothing to report it to)
    pass


def rendezvous(what: str, processes: Processes) -> None:
  """Returns once every process has reached this point (the next collective, ``what``).

  CommandError (exit status 3, one line) if a peer exited before reaching it, if the
  coordinator (process 0, which holds the key-value store) is gone, or if a peer has not
  arrived within ``processes.peer_timeout`` seconds.
  """
  step = next(_COLLECTIVES)
  client = _client()
  try:
    client.key_value_set(f"jaxattn/ready/{step}/{processes.rank}", "1")
  except Exception as error:
    raise CommandError(
      f"process {processes.rank}: the coordinator (process 0) is gone before {what}: {error}",
      status=3,
    ) from error
  deadline = time.monotonic() + processes.peer_timeout
  for other in range(processes.size):
    while other != processes.rank and not _arrived(client, step, other, what, processes):
      if time.monotonic() > deadline:
        raise CommandError(
          f"process {processes.rank}: process {other} has not reached {what} "
          f"within {processes.peer_timeout:g} s (--peer-timeout); stopping",
          status=3,
        )


def _arrived(client, step: int, other: int, what: str, processes: Processes) -> bool:
  """Whether process ``other`` reached collective ``step`` within POLL_MS; CommandError if it
  exited instead, or if the store is gone."""
  try:
    client.blocking_key_value_get(f"jaxattn/ready/{step}/{other}", POLL_MS)
    return True
  except Exception as waited:  # a timeout, or the store is gone
    try:
      exited = client.key_value_try_get(f"jaxattn/exited/{other}") is not None
    except Exception:  # noqa: BLE001  (not found: the peer is still running)
      exited = False
    if exited:
      raise CommandError(
        f"process {processes.rank}: process {other} exited before {what}; "
        "stopping (its own output says why)",
        status=3,
      ) from waited
    if "DEADLINE_EXCEEDED" not in str(waited) and "timed out" not in str(waited).lower():
      raise CommandError(
        f"process {processes.rank}: the coordinator (process 0) is gone "
        f"before {what}: {' '.join(str(waited).split())[:200]}",
        status=3,
      ) from waited
    return False


def split_work(costs: Sequence[float], count: int) -> tuple[tuple[int, ...], ...]:
  """Item indices for each of ``count`` processes: a partition balanced by cost.

  Longest processing time first: items by decreasing cost (ties: lower
  index first) each go to the process with the least cost so far (ties:
  lower process). Every item lands on exactly one process, and the largest
  share costs at most the average share plus the largest item. Shares list
  items in the order they were dealt, so the r-th items of all shares cost
  alike (``bench run`` runs them as one round). Pure and deterministic:
  every process computes the same split.
  """
  if count < 1:
    raise ValueError(f"count must be >= 1, got {count}")
  loads = [(0.0, process) for process in range(count)]
  shares: list[list[int]] = [[] for _ in range(count)]
  for item in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
    load, process = heapq.heappop(loads)
    shares[process].append(item)
    heapq.heappush(loads, (load + costs[item], process))
  return tuple(tuple(share) for share in shares)


def broadcast(value: np.ndarray, processes: Processes) -> np.ndarray:
  """Process 0's ``value`` on every process (once every process has arrived: ``rendezvous``)."""
  if processes.size == 1:
    return value
  rendezvous("a broadcast from process 0", processes)
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.broadcast_one_to_all(value))


def gather_sum(local: np.ndarray, processes: Processes) -> np.ndarray:
  """Σ over processes of ``local`` (an all-gather): each process's results, zero elsewhere."""
  if processes.size == 1:
    return local
  rendezvous("an exchange of results", processes)
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(local)).sum(axis=0)
