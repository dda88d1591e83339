"""What every trainable recommender in netrec_jax declares: its embedding tables and a forward.

Embedding tables live outside the Flax module. The trainer gathers the rows a batch touches,
passes them in, and updates only those rows (row-sparse SGD, row-wise Adagrad or lazy Adam),
because a dense optimizer step over a 480k x 64 table costs more than the model itself. The
module holds everything else (towers, output layers) as ordinary Flax params, trained by optax.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp

USER, ITEM = "user", "item"


@dataclasses.dataclass(frozen=True)
class TableSpec:
  """One embedding table: indexed by user or item, `dim` wide, normal(0, init_std) init."""

  entity: str
  dim: int
  init_std: float = 0.01

  def __post_init__(self):
    if self.entity not in (USER, ITEM):
      raise ValueError(f"table entity must be {USER!r} or {ITEM!r}, got {self.entity!r}")
    if self.dim <= 0:
      raise ValueError(f"table dim must be positive, got {self.dim}")


Rows = Mapping[str, jax.Array]  # table name -> gathered rows [batch, dim]


def init_table(key: jax.Array, n_rows: int, spec: TableSpec, dtype=jnp.float32) -> jax.Array:
  if spec.init_std == 0:
    return jnp.zeros((n_rows, spec.dim), dtype)
  return spec.init_std * jax.random.normal(key, (n_rows, spec.dim), dtype)


def gather_features(aux: dict[str, jax.Array], users: jax.Array, items: jax.Array):
  """[B, Fu + Fi] side features of each example, or None when the run uses none."""
  if not aux:
    return None
  return jnp.concatenate([aux["user_features"][users], aux["item_features"][items]], -1)
