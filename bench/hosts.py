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
"""

from __future__ import annotations

import argparse
import heapq
from typing import NamedTuple, Sequence

import jax
import numpy as np

from jaxattn_bench.errors import CommandError


class Processes(NamedTuple):
  """This process's index and the number of processes in the run."""

  index: int
  count: int


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """The multi-process options of a command (all off: one process)."""
  group = parser.add_argument_group("several processes (hosts); see jaxattn_bench.hosts")
  group.add_argument("--coordinator", metavar="HOST:PORT",
                     help="address of process 0, the same for every process")
  group.add_argument("--num-processes", type=int, metavar="P", help="number of processes")
  group.add_argument("--process-id", type=int, metavar="I", help="this process, 0 .. P-1")
  group.add_argument("--distributed", action="store_true",
                     help="start JAX's multi-process runtime from the cluster launcher's "
                          "environment (SLURM, Open MPI, TPU pods)")


def initialize(args: argparse.Namespace) -> Processes:
  """Starts ``jax.distributed`` as the options say (before any JAX computation)."""
  explicit = (args.coordinator, args.num_processes, args.process_id)
  if any(value is not None for value in explicit):
    if any(value is None for value in explicit):
      raise CommandError("--coordinator, --num-processes and --process-id go together")
    if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
      raise CommandError(f"need 0 <= --process-id < --num-processes, got {args.process_id} "
                         f"and {args.num_processes}")
    jax.distributed.initialize(coordinator_address=args.coordinator,
                               num_processes=args.num_processes, process_id=args.process_id)
  elif args.distributed:
    jax.distributed.initialize()
  return Processes(jax.process_index(), jax.process_count())


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
  """Process 0's ``value`` on every process."""
  if processes.count == 1:
    return value
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.broadcast_one_to_all(value))


def gather_sum(local: np.ndarray, processes: Processes) -> np.ndarray:
  """Σ over processes of ``local`` (an all-gather): each process's results, zero elsewhere."""
  if processes.count == 1:
    return local
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(local)).sum(axis=0)
