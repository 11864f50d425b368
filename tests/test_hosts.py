"""Several processes on one grid: the work split, and two processes on 127.0.0.1."""

import contextlib
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxattn_bench.hosts import split_work
from tests.test_bench_run import TINY, table

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_split_is_a_balanced_deterministic_partition(count):
  costs = np.random.default_rng(count).pareto(1.5, size=23).tolist()
  shares = split_work(costs, count)
  assert len(shares) == count and shares == split_work(costs, count)
  items = sorted(i for share in shares for i in share)
  assert items == list(range(len(costs)))  # every point once: nothing twice, nothing skipped
  loads = [sum(costs[i] for i in share) for share in shares]
  assert max(loads) <= sum(costs) / count + max(costs) + 1e-9
  for share in shares:  # dealt in decreasing cost: round r holds comparable points
    assert [costs[i] for i in share] == sorted((costs[i] for i in share), reverse=True)


def test_split_of_equal_costs_deals_round_robin():
  assert split_work([1.0] * 5, 2) == ((0, 2, 4), (1, 3))
  assert split_work([], 3) == ((), (), ())
  with pytest.raises(ValueError, match="count"):
    split_work([1.0], 0)


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def test_two_processes_on_loopback_match_one_process(tmp_path):
  preset = tmp_path / "tiny.toml"
  preset.write_text(TINY)
  common = [
    sys.executable,
    "-m",
    "bench",
    "run",
    "--preset",
    str(preset),
    "--seed",
    "3",
    "--no-figures",
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  port = _free_port()
  runs = [common + ["--results", str(tmp_path / "one.sqlite")]] + [
    common
    + [
      "--results",
      str(tmp_path / f"two_{i}.sqlite"),
      "--coordinator",
      f"127.0.0.1:{port}",
      "--num-processes",
      "2",
      "--process-id",
      str(i),
    ]
    for i in range(2)
  ]  # the one-process reference runs at the same time as the pair
  logs = [(tmp_path / f"run{i}.out", tmp_path / f"run{i}.err") for i in range(len(runs))]
  with contextlib.ExitStack() as files:
    procs = [
      subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=files.enter_context(out.open("w")),
        stderr=files.enter_context(err.open("w")),
      )
      for argv, (out, err) in zip(runs, logs)
    ]
    codes = [proc.wait(timeout=300) for proc in procs]
  for code, (_, err) in zip(codes, logs):
    assert code == 0, err.read_text()
  outputs = [(out.read_text(), err.read_text()) for out, err in logs[1:]]
  assert "2 processes" in outputs[0][0] and "preset" not in outputs[1][0]  # process 0 alone reports
  assert not (tmp_path / "two_1.sqlite").exists()  # ... and alone touches the store
  assert table(tmp_path / "two_0.sqlite") == table(tmp_path / "one.sqlite")


@pytest.mark.parametrize("failing", [0, 1])
def test_a_process_that_fails_early_stops_the_other_in_one_line(tmp_path, failing):
  """Process ``failing`` stops with exit status 2 before the first broadcast (process 0: an
  --export-csv it cannot write, checked by process 0 alone; process 1: a negative --seed);
  the other exits 3 within seconds, with one line naming it, instead of waiting forever in the
  broadcast (before: JAX's gloo timeout after 30 s on a CPU, an internal error; on other
  backends, no bound at all)."""
  preset = tmp_path / "tiny.toml"
  preset.write_text(TINY)
  port = _free_port()
  bad = ["--export-csv", "/dev/null/x.csv"] if failing == 0 else ["--seed", "-1"]
  runs = [
    [
      sys.executable,
      "-m",
      "bench",
      "run",
      "--preset",
      str(preset),
      "--no-figures",
      "--results",
      str(tmp_path / f"r{i}.sqlite"),
      "--coordinator",
      f"127.0.0.1:{port}",
      "--num-processes",
      "2",
      "--process-id",
      str(i),
      *(bad if i == failing else []),
    ]
    for i in range(2)
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  procs = [
    subprocess.Popen(
      argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    for argv in runs
  ]
  try:
    errs = [proc.communicate(timeout=120)[1] for proc in procs]
  finally:
    for proc in procs:
      proc.kill()
  other = 1 - failing
  assert procs[failing].returncode == 2, errs[failing]
  assert procs[other].returncode == 3, errs[other]
  last = errs[other].strip().splitlines()[-1]
  assert last == (
    f"python -m bench run: error: process {other}: process {failing} exited before "
    "a broadcast from process 0; stopping (its own output says why)"
  ), errs[other]
