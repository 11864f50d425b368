"""The rounding probe of certified verdicts: the bound against exact rationals on adversarial tiles.

``python -m jaxattn_bench.rounding_probe`` runs every tile of ``CASES`` at
every d of ``DIMS``, with float32 and bfloat16 products, through
``ja.row_stats`` on this backend, and compares each computed gap with the
exact rational one: the largest |ĝ − g| / τ must stay below 1, or the
backend's rounding model (``ja.certify.ROUNDING_MODELS``) is wrong there.
It prints one line per format and exits 1 on a violation.
``bench/device_check.sh`` runs it on the GPU; ``tests/test_certify.py``
uses the same tiles on the CPU (docs/certified.md).
"""

from __future__ import annotations

import argparse
import fractions
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxattn as ja

DIMS = (1, 2, 16, 17, 700, 4096)
EYE3 = ja.SparsePattern.from_dense(np.eye(3, dtype=np.float32))


def tile(query, outside_key, support_key=None):
  """Row 0 of a 3×3 identity pattern: support key ``support_key`` (default −``outside_key``,
  so that the errors of the two logits add in the gap), outside key ``outside_key``."""
  support_key = -outside_key if support_key is None else support_key
  zeros = np.zeros_like(query)
  return (
    np.stack([query, zeros, zeros]).astype(np.float32),
    np.stack([support_key, outside_key, zeros]).astype(np.float32),
  )


def gap_errors(queries, keys, splits, matmul_dtype=None, full=False) -> list[tuple[float, float]]:
  """(|ĝ − g|, τ) of row 0 at every level, g the exact rational gap of the nested level."""
  width = keys.shape[1]
  scales = [width / d for d in splits]
  stats = ja.row_stats(
    jnp.asarray(queries),
    jnp.asarray(keys),
    EYE3,
    tuple(splits),
    jnp.asarray(scales, jnp.float32),
    full=full,
    matmul_dtype=matmul_dtype,
  )
  errors = []
  for g, d in enumerate(splits):
    scale = fractions.Fraction(width, d)
    logits = [scale * ja.certify.exact_dot(queries[0, :d], key[:d]) for key in keys]
    gap = max(logits[1:]) - logits[0]  # column 2's key is zero: logit 0
    errors.append(
      (float(abs(fractions.Fraction(float(stats.gap[g, 0])) - gap)), float(stats.gap_bound[g, 0]))
    )
  return errors


def worst_violation(queries, keys, splits, matmul_dtype=None, full=False) -> float:
  """max over levels of |ĝ − g| − τ (exactly); > 0: the bound fails."""
  return max(
    error - bound for error, bound in gap_errors(queries, keys, splits, matmul_dtype, full)
  )


def sequential_case(d):
  """q = k = (1, t, …, t), t² just above half an ulp of 1: every addition after the first rounds
  up in a sequential order, the worst case of the float32 accumulation."""
  t = np.float32(2.0**-12 * (1 + 2.0**-10))
  q = np.full(d, t, np.float32)
  q[0] = 1
  return tile(q, q)


def bfloat16_case(d):
  """Constant rows whose every entry rounds up to bfloat16 by almost u = 2⁻⁸: the input
  rounding's error is the same in every product, in any summation order."""
  a = np.float32(1 + 2.0**-8 + 2.0**-20)
  return tile(np.full(d, a), np.full(d, a))


def random_case(d, seed, magnitudes=False, subnormal=False):
  """Gaussian rows; ``magnitudes``: queries scaled over 60 binades; ``subnormal``: every other
  key entry subnormal."""
  rng = np.random.default_rng(seed)
  q, k = rng.standard_normal((2, d)).astype(np.float32)
  if magnitudes:
    q *= np.exp2(rng.integers(-30, 30, d)).astype(np.float32)
  if subnormal:
    k[::2] = np.float32(2.0**-140) * rng.standard_normal(k[::2].shape).astype(np.float32)
  return tile(q, k, support_key=rng.standard_normal(d).astype(np.float32))


def unbalanced_case(d):
  """The sequential case with q scaled by 2⁻⁶⁴ and k by 2⁴⁰: every entry and product is normal,
  every square of q underflows (a norm summed from raw squares would be 0)."""
  queries, keys = sequential_case(d)
  return queries * np.float32(2.0**-64), keys * np.float32(2.0**40)


CASES = {
  "sequential": sequential_case,
  "unbalanced": unbalanced_case,
  "bfloat16": bfloat16_case,
  "random": lambda d: random_case(d, d),
  "magnitudes": lambda d: random_case(d, d, magnitudes=True),
  "subnormal": lambda d: random_case(d, d, subnormal=True),
}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m jaxattn_bench.rounding_probe", description=__doc__.splitlines()[0]
  )
  parser.add_argument("--max-d", type=int, default=DIMS[-1], help="largest d of DIMS to probe")
  dims = tuple(d for d in DIMS if d <= parser.parse_args(argv).max_d)
  print(
    f"rounding probe on {jax.devices()[0].device_kind} ({jax.default_backend()}), model "
    f"{ja.certify.rounding_model()}: largest |gap error| / bound over {sorted(CASES)}, "
    f"d in {dims}, nested levels and the full pass"
  )
  violated = False
  for name, form in (("float32", None), ("bfloat16", jnp.bfloat16)):
    ratios = []
    for case in CASES.values():
      for d in dims:
        queries, keys = case(d)
        splits = sorted({1, max(1, d // 3), d})
        for full in (False, True):
          ratios += [
            error / bound
            for error, bound in gap_errors(queries, keys, splits if not full else (d,), form, full)
          ]
    worst = max(ratios)
    violated |= worst >= 1
    print(
      f"{name:<9} products: worst error / bound = {worst:.3g} over {len(ratios)} logits "
      f"({'VIOLATED' if worst >= 1 else 'within the bound'})"
    )
  return 1 if violated else 0


if __name__ == "__main__":
  sys.exit(main())
