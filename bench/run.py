"""``python -m bench run``: minimal d of the paper's construction over a small grid of L."""

from __future__ import annotations

import time

import jax

import jaxattn as ja
from bench._cli import CommandError

PRESETS = {"quick": dict(lengths=(32, 64, 128, 256), nnz=1, eps1=0.5, eps2=0.5, a_min=0.2,
                         d_grid=(8, 16, 32, 64, 128, 256, 512, 1024), trials=8, delta=0.1)}


def add_parser(subparsers) -> None:
  parser = subparsers.add_parser("run", help="search the minimal d over a preset grid")
  parser.add_argument("--preset", default="quick", help=f"one of {sorted(PRESETS)}")
  parser.add_argument("--seed", type=int, default=0)
  parser.set_defaults(func=main)


def main(args) -> int:
  if args.preset not in PRESETS:
    raise CommandError(f"unknown preset {args.preset!r}; choose from {sorted(PRESETS)}")
  grid = PRESETS[args.preset]
  key = jax.random.PRNGKey(args.seed)
  print(f"{'L':>6} {'d_min':>6} {'jl_dim':>7} {'seconds':>8}")
  for length in grid["lengths"]:
    start = time.perf_counter()
    sampler = ja.patterns.Sampler("random_regular", length=length, nnz=grid["nnz"],
                                  a_min=grid["a_min"])
    result = ja.min_d(jax.random.fold_in(key, length), sampler, grid["d_grid"],
                      eps1=grid["eps1"], eps2=grid["eps2"], trials=grid["trials"],
                      delta=grid["delta"])
    bound = ja.theory.jl_dim(length, grid["nnz"], grid["eps1"], grid["eps2"], grid["a_min"],
                             grid["delta"])
    print(f"{length:>6} {str(result.d_min):>6} {bound:>7} {time.perf_counter() - start:>8.1f}")
  return 0
