"""The base of a pattern family (``published``): its ``Bounds`` at a length, the ``Family``
dataclass that draws candidates, takes their ``union`` and adds weights, and its text spec.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int, PRNGKeyArray

from jaxattn._src.pattern import SparsePattern, from_rows, log_uniform

Candidates = tuple[Int[Array, "L M"], Bool[Array, "L M"]]


class Bounds(NamedTuple):
  """A family's bounds at length L (upper bounds, attained at large enough L).

  ``row``: most nonzeros in a row that is not dense; ``column``: most nonzeros
  in a column; ``dense_rows``: rows that attend every key they may see;
  ``grows_with_length``: whether N = max(row, column) grows with L at fixed
  parameters (dense rows and global columns do).
  """

  row: int
  column: int
  dense_rows: int
  grows_with_length: bool

  @property
  def inside_theorem(self) -> bool:
    """Whether the theorem applies: at most N nonzeros per row and column, N fixed as L grows."""
    return not self.grows_with_length


def check_positive(name: str, value: int, minimum: int = 1) -> None:
  """ValueError unless ``value`` is an integer ≥ ``minimum`` (a family's field ``name``)."""
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Family:
  """Base of the published families: draws ``candidates``, takes their union, adds weights."""

  name: ClassVar[str]

  def candidates(self, key: PRNGKeyArray, length: int) -> Candidates:
    """Per row, candidate columns [L, M] and whether each is in the support (with repeats)."""
    raise NotImplementedError

  def bounds(self, length: int) -> Bounds:
    """The family's ``Bounds`` at L."""
    raise NotImplementedError

  def check_length(self, length: int) -> None:
    """ValueError unless the family is defined at ``length``."""
    check_positive("length", length)

  def dense_mask(self, length: int) -> Bool[Array, " L"] | None:
    """The rows that attend every key (held apart as dense rows), or None if there are none."""
    del length
    return None

  def width(self, length: int) -> int:
    """N of the drawn patterns: min(candidates per row, row bound), dense rows apart."""
    self.check_length(length)
    shape = jax.eval_shape(lambda key: self.candidates(key, length), jax.random.PRNGKey(0))[0].shape
    return min(shape[-1], self.bounds(length).row)

  @property
  def spec(self) -> str:
    """The family as ``name(field=value, ...)``, fields that differ from their defaults only."""
    changed = [
      f"{f.name}={_spec_text(getattr(self, f.name))}"
      for f in dataclasses.fields(self)
      if getattr(self, f.name) != f.default
    ]
    return self.name + (f"({','.join(changed)})" if changed else "")

  def __call__(self, key: PRNGKeyArray, length: int, a_min: float = 1.0) -> SparsePattern:
    """A pattern of the family at length L: binary if a_min = 1, else log-uniform in [a_min, 1]."""
    self.check_length(length)
    if not 0 < a_min <= 1:
      raise ValueError(f"a_min must be in (0, 1], got {a_min}")
    return _generate(self, key, length, float(a_min))


@functools.partial(jax.jit, static_argnames=("family", "length", "a_min"))
def _generate(family: Family, key: PRNGKeyArray, length: int, a_min: float) -> SparsePattern:
  k_mask, k_weights = jax.random.split(key)
  cols, valid = union(*family.candidates(k_mask, length), family.width(length))
  weights = (
    jnp.ones(cols.shape, jnp.float32) if a_min == 1.0 else log_uniform(k_weights, cols.shape, a_min)
  )
  return from_rows(cols, weights, valid, family.dense_mask(length))


def union(cols: Int[Array, "L M"], valid: Bool[Array, "L M"], width: int) -> Candidates:
  """Each row's distinct valid columns, sorted, in ``width`` slots (invalid slots last).

  ``width`` must be at least the number of distinct valid columns of every row.
  """
  length = cols.shape[0]
  ordered = jnp.sort(jnp.where(valid, cols, length), axis=-1)
  repeat = jnp.concatenate(
    [jnp.zeros_like(ordered[:, :1], bool), ordered[:, 1:] == ordered[:, :-1]], axis=-1
  )
  keep = (ordered < length) & ~repeat
  order = jnp.argsort(~keep, axis=-1, stable=True)[:, :width]  # kept slots first, in order
  return (
    jnp.take_along_axis(jnp.minimum(ordered, length - 1), order, axis=-1),
    jnp.take_along_axis(keep, order, axis=-1),
  )


def _spec_text(value) -> str:
  """A field's value as a spec writes it: integers of a tuple joined by x, booleans lower-case."""
  return "x".join(map(str, value)) if isinstance(value, tuple) else str(value).lower()
