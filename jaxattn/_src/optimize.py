"""Gradient-based construction: start from ``lstsq``, optimise Q (and K) with optax.

W_Q, W_K stay fixed; only the factors Q = X W_Q and K = X W_K (hence X) move.
The loss is a squared hinge on both conditions' violations with a margin
κ·ln(1 + ε1) (κ = ``SLACK``), over the dense logits ℓ = Q Kᵀ:

  loss = (1/L) Σ_i [ Σ_{s,s'∈S_i} relu(r_is − r_is' − (1 − κ) ln(1 + ε1))²
                   + Σ_{j∉S_i, s∈S_i} relu(ℓ_ij − ℓ_is − ln ε2 + κ ln(1 + ε1))² ],

r_is = ℓ_is − ln A_is. It is zero exactly when every row meets both
conditions with the margin; each pair term is C¹. The loop stops as soon as
the logits, rounded to the evaluation dtype, meet both conditions with half
that margin (so the streamed ``verify`` agrees despite different summation
orders), or after ``MAX_STEPS``.

Dense, not streamed: every step needs all L² logits and their gradients, and
for the moderate L this method is meant for (it estimates the lower envelope
of d; L ≤ 2048 on CPU) one L×L matmul is far cheaper than a streamed loss
with rematerialised key blocks. Memory is O(L²·N) per trial.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from jaxattn._src.base import HIGHEST, Factors
from jaxattn._src.lstsq import SHIFT_FACTOR, lstsq_shifted
from jaxattn._src.pattern import SparsePattern

MAX_STEPS = 200
LEARNING_RATE = 0.05
SLACK = 0.25


class OptimizeResult(NamedTuple):
  """Factors after optimisation, the steps taken, and whether they met the stopping test."""

  queries: Float[Array, "L w"]
  keys: Float[Array, "L w"]
  steps: Int[Array, ""]
  passed: Bool[Array, ""]


def excess(queries: Float[Array, "L w"], keys: Float[Array, "L w"], pattern: SparsePattern,
           eps1, eps2, slack) -> tuple[Float[Array, "L N N"], Float[Array, "L L N"]]:
  """By how much each pair exceeds its threshold with margin slack·ln(1 + ε1); −inf where no pair.

  Ratios: r_is − r_is' − (1 − slack) ln(1 + ε1) for s, s' ∈ S_i.
  Zeros:  ℓ_ij − ℓ_is − ln ε2 + slack ln(1 + ε1) for j ∉ S_i, s ∈ S_i.
  Both conditions hold with that margin iff every entry is ≤ 0.
  """
  length = pattern.length
  dtype = queries.dtype
  logits = jnp.matmul(queries, keys.T, precision=HIGHEST)
  support = jnp.take_along_axis(logits, pattern.cols, axis=1)
  valid = pattern.valid
  rows = jnp.broadcast_to(jnp.arange(length)[:, None], pattern.cols.shape)
  in_support = jnp.zeros((length, length), bool).at[rows, pattern.cols].max(valid)
  margin = jnp.asarray(slack * jnp.log1p(eps1), dtype)
  shifted = support - pattern.log_weights.astype(dtype)
  ratio = shifted[:, :, None] - shifted[:, None, :] - (jnp.log1p(eps1).astype(dtype) - margin)
  ratio = jnp.where(valid[:, :, None] & valid[:, None, :], ratio, -jnp.inf)
  zeros = logits[:, :, None] - support[:, None, :] - (jnp.log(eps2).astype(dtype) - margin)
  zeros = jnp.where(~in_support[:, :, None] & valid[:, None, :], zeros, -jnp.inf)
  return ratio, zeros


def loss(queries, keys, pattern: SparsePattern, eps1, eps2) -> Float[Array, ""]:
  """Squared hinge of ``excess`` at margin ``SLACK``·ln(1 + ε1), summed, divided by L."""
  hinge = lambda x: jnp.sum(jnp.square(jax.nn.relu(x)))
  ratio, zeros = excess(queries, keys, pattern, eps1, eps2, SLACK)
  return (hinge(ratio) + hinge(zeros)) / pattern.length


def _passes(params, pattern, eps1, eps2, slack, dtype) -> Bool[Array, ""]:
  """Whether the factors, rounded to ``dtype``, meet both conditions with margin slack·ln(1 + ε1)."""
  queries, keys = (x.astype(dtype) for x in params)
  ratio, zeros = excess(queries, keys, pattern, eps1, eps2, slack)
  return (jnp.max(ratio) <= 0) & (jnp.max(zeros) <= 0)


def optimize_run(key: PRNGKeyArray, pattern: SparsePattern, d: Int[Array, ""] | int, width: int,
                 eps1, eps2, *, dtype=None, train_keys: bool = True, max_steps: int = MAX_STEPS,
                 learning_rate: float = LEARNING_RATE) -> OptimizeResult:
  """Adam on ``loss`` from the ``lstsq`` factors, in one ``lax.while_loop`` (jit- and vmap-able).

  The start is ``lstsq`` if it already passes (0 steps), and otherwise
  ``lstsq`` at the shift c_i = c_jl,i (``shift_factor=1``): logits of order
  ln(1/(ε2 a_min)), the scale Adam's fixed step size suits (from lstsq's 32×
  larger logits it needs more steps and stalls).

  Only the first d columns move (the rest stay zero); keys move only if
  ``train_keys``. Stops at the first step whose factors, rounded to ``dtype``,
  pass ``excess`` at margin SLACK/2, or after ``max_steps``.
  """
  import optax  # here, not at the top: importing jaxattn or the verifier does not load optax

  evaluate = pattern.weights.dtype if dtype is None else dtype
  passes = lambda params, slack=SLACK / 2: _passes(params, pattern, eps1, eps2, slack, evaluate)
  # Both starts from one factorisation: two independent LAPACK solves could run
  # at once and deadlock XLA's CPU thread pool (``min_norm_solve``).
  (start, moderate), keys = lstsq_shifted(key, pattern, d, width, eps1, eps2,
                                          (SHIFT_FACTOR, 1.0), dtype=dtype)
  start_passes = passes((start, keys))
  queries = jnp.where(start_passes, start, moderate)
  columns = (jnp.arange(width) < d).astype(queries.dtype)
  mask = (columns, columns if train_keys else jnp.zeros_like(columns))
  optimizer = optax.adam(learning_rate)

  def cond(state):
    step, _, _, passed = state
    return (step < max_steps) & ~passed

  def body(state):
    step, params, opt_state, _ = state
    grads = jax.grad(lambda p: loss(*p, pattern, eps1, eps2))(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    updates = jax.tree.map(lambda u, m: u * m, updates, mask)
    params = optax.apply_updates(params, updates)
    return step + 1, params, opt_state, passes(params)

  params = (queries, keys)
  init = (jnp.zeros((), jnp.int32), params, optimizer.init(params), start_passes)
  steps, (queries, keys), _, passed = jax.lax.while_loop(cond, body, init)
  return OptimizeResult(queries, keys, steps, passed)


def optimize_factors(key: PRNGKeyArray, pattern: SparsePattern, d: Int[Array, ""] | int,
                     width: int, eps1, eps2, *, dtype=None) -> Factors:
  """Factors of ``optimize`` (queries and keys trained, ``MAX_STEPS``): ``optimize_run``'s Q, K."""
  result = optimize_run(key, pattern, d, width, eps1, eps2, dtype=dtype)
  return result.queries, result.keys
