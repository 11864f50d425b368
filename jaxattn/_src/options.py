"""The options of the 1.0 API (docs/api.md, "Options").

Public entry points take a few positional parameters (the solution or key,
the pattern, d or its grid) and every other one by keyword:

- the question: ``eps1``, ``eps2``, ``max_outside_mass`` (the criterion),
  ``causal`` (the layer's mask), ``dtype`` (the precision the layer stores
  and computes in) and ``layer_dtype`` (the dtype its Q and K are rounded
  to), the same names on every entry point and command;
- the verifier's arithmetic: ``matmul``, the products' format of the
  certified pass, which never changes a certified verdict;
- how the work is cut and ordered: one ``Compute`` value.

``keyword_eps`` turns an old positional call into a TypeError that names the
keyword; ``legacy_options`` maps the names 1.0 replaced to the new ones with a
DeprecationWarning.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any, Callable, NamedTuple, TypeVar

from jaxtyping import Array, Float

F = TypeVar("F", bound=Callable[..., Any])


class Compute(NamedTuple):
  """How a verification or a search is cut and ordered: its tiles, batches and schedule.

  None of these is part of the question asked (ε1, ε2, the criterion, the
  layer and its precision); none changes a verdict, except that the adaptive
  schedule imputes the levels it leaves out by monotonicity.

  Attributes:
    block_size: keys per streamed tile (None: ``ja.default_tiles()[1]``).
    row_block: query rows per tile (None: ``ja.default_tiles()[0]``).
    max_trial_batch: at most this many trials per vmapped batch (``min_d``: a
      memory budget); None: as many as the tile budget allows.
    schedule: the search over d (``min_d``, ``verify_grid``): "full" (every grid
      d), "adaptive" (``ja.schedule``: only the levels ``next_level`` asks for,
      for methods built per d) or None: the cheaper by the cost model
      (``ja.schedule.choose_schedule``; always "full" for nested methods).
    check_above: levels the adaptive schedule checks above a trial's first verifying d
      (its top) before it scans down; a failure there resumes the bracket.
  """

  block_size: int | None = None
  row_block: int | None = None
  max_trial_batch: int | None = None
  schedule: str | None = None
  check_above: int = 1


class SearchSpec(NamedTuple):
  """A search's static settings as they travel inside (``grid_kernel``, ``host_stage``): what is
  built at each level and how its pass is cut and computed. Hashable: one compile per spec.

  ``dtype``: the evaluation dtype's name (``base.resolve_dtype``); ``layer_dtype``: the dtype the
  layer's Q, K are rounded to (None: none; uncertified otherwise); the rest as on ``ja.min_d``.
  """

  method: str
  d_grid: tuple[int, ...]
  dtype: str = "float32"
  causal: bool = False
  matmul: str = "float32"
  layer_dtype: Any = None
  block_size: int | None = None
  row_block: int | None = None


class Criterion(NamedTuple):
  """A search's tolerances as they travel inside: traced, so a new ε does not recompile."""

  eps1: Float[Array, ""] | float
  eps2: Float[Array, ""] | float
  max_outside_mass: Float[Array, ""] | float | None
  limits: Any  # ``certify.Thresholds`` of (ε1, ε2) in the evaluation dtype


def check_compute(compute: Compute) -> Compute:
  """ValueError naming the first bad field of ``compute``; TypeError if it is not a
  ``Compute``."""
  if not isinstance(compute, Compute):
    raise TypeError(f"compute must be a ja.Compute, got {type(compute).__name__}")
  for name in ("block_size", "row_block", "max_trial_batch"):
    value = getattr(compute, name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
      raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
  if compute.schedule not in (None, "full", "adaptive"):
    raise ValueError(f"schedule must be 'full', 'adaptive' or None, got {compute.schedule!r}")
  above = compute.check_above
  if isinstance(above, bool) or not isinstance(above, int) or above < 0:
    raise ValueError(f"check_above must be a non-negative integer, got {above!r}")
  return compute


# Flat keywords of before 1.0 and where they went.
COMPUTE_FIELDS = ("block_size", "row_block", "max_trial_batch", "schedule", "check_above")
RENAMED = {"matmul_dtype": "layer_dtype"}


def keyword_eps(function: F) -> F:
  """``function`` with a TypeError naming ``eps1``/``eps2`` for a positional call of before 1.0.

  ``verify(sol, p, 0.5, 0.5)`` raises "verify() takes eps1 and eps2 by keyword:
  verify(..., eps1=0.5, eps2=0.5)" instead of Python's count of arguments.
  """
  positional = sum(
    p.kind is p.POSITIONAL_OR_KEYWORD for p in inspect.signature(function).parameters.values()
  )

  @functools.wraps(function)
  def wrapper(*args, **kwargs):
    if len(args) > positional:
      given = ", ".join(
        f"{name}={value!r}" for name, value in zip(("eps1", "eps2"), args[positional:])
      )
      raise TypeError(
        f"{function.__name__}() takes eps1 and eps2 by keyword since 1.0: "
        f"{function.__name__}(..., {given})"
      )
    return function(*args, **kwargs)

  return wrapper  # type: ignore[return-value]


def legacy_options(function: F) -> F:
  """``function`` accepting the flat keywords 1.0 replaced, with a DeprecationWarning each.

  ``block_size=…``, ``row_block=…``, ``max_trial_batch=…``, ``schedule=…`` and
  ``check_above=…`` become fields of ``compute``;
  ``matmul_dtype=…`` becomes ``layer_dtype=…``.
  """
  accepted = inspect.signature(function).parameters

  @functools.wraps(function)
  def wrapper(*args, **kwargs):
    moved = {
      name: kwargs.pop(name) for name in COMPUTE_FIELDS if name in kwargs and name not in accepted
    }
    for old, new in RENAMED.items():
      if old in kwargs and old not in accepted:
        _warn(f"{function.__name__}({old}=...) is {function.__name__}({new}=...) since 1.0")
        if new in kwargs:
          raise TypeError(f"{function.__name__}() got both {old} and {new}")
        kwargs[new] = kwargs.pop(old)
    if moved:
      _warn(
        f"{function.__name__}({', '.join(moved)}=...) is "
        f"{function.__name__}(compute=ja.Compute({', '.join(moved)}=...)) since 1.0"
      )
      kwargs["compute"] = (kwargs.get("compute") or Compute())._replace(**moved)
    return function(*args, **kwargs)

  return wrapper  # type: ignore[return-value]


def _warn(message: str) -> None:
  warnings.warn(message, DeprecationWarning, stacklevel=3)
