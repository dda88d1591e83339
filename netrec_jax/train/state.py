"""The pair models' train state and its shardings (the mesh itself: netrec_jax/sharding.py).

Embedding tables and their optimizer slots are row-sharded over the mesh's `model` axis;
dense params are replicated. Tables are padded to a multiple of the model-axis size so every
shard has the same number of rows.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from netrec_jax.models.base import USER, TableSpec, init_table
from netrec_jax.sharding import MODEL
from netrec_jax.train import sparse



@flax.struct.dataclass
class TrainState:
  step: jax.Array
  tables: dict[str, jax.Array]  # name -> [padded rows, dim]
  slots: dict[str, dict[str, jax.Array]]  # sparse optimizer state per table
  params: Any  # Flax params of the module (towers, output layers)
  opt_state: Any  # optax state of params
  batch_stats: Any  # BatchNorm statistics ({} when the model has none)
  lr_scale: jax.Array  # multiplier set by reduce-on-plateau
  rng: jax.Array  # dropout / negative sampling key, folded with the step


def padded_rows(n: int, mesh: Mesh) -> int:
  m = mesh.shape[MODEL]
  return -(-n // m) * m


def table_sizes(specs: dict[str, TableSpec], n_users: int, n_items: int,
                mesh: Mesh) -> dict[str, int]:
  return {name: padded_rows(n_users if spec.entity == USER else n_items, mesh)
          for name, spec in specs.items()}


def state_shardings(state: TrainState, mesh: Mesh) -> TrainState:
  """Tables and their slots row-sharded over `model`; everything else replicated."""
  replicated = NamedSharding(mesh, P())
  rows = NamedSharding(mesh, P(MODEL))
  return TrainState(
      step=replicated,
      tables={k: rows for k in state.tables},
      slots={k: {s: rows for s in v} for k, v in state.slots.items()},
      params=jax.tree.map(lambda _: replicated, state.params),
      opt_state=jax.tree.map(lambda _: replicated, state.opt_state),
      batch_stats=jax.tree.map(lambda _: replicated, state.batch_stats),
      lr_scale=replicated,
      rng=replicated,
  )


def state_initializer(model, specs: dict[str, TableSpec], sizes: dict[str, int],
                      dense_tx: optax.GradientTransformation, sparse_kind: str, seed: int,
                      n_features: int):
  """A function of no arguments that builds the initial TrainState."""

  def init() -> TrainState:
    key = jax.random.PRNGKey(seed)
    key_tables, key_params, key_dropout, key_state = jax.random.split(key, 4)
    tables = {name: init_table(jax.random.fold_in(key_tables, k), sizes[name], spec)
              for k, (name, spec) in enumerate(sorted(specs.items()))}
    dummy_rows = {name: jnp.zeros((2, spec.dim)) for name, spec in specs.items()}
    dummy_features = jnp.zeros((2, n_features)) if n_features else None
    variables = model.init({"params": key_params, "dropout": key_dropout}, dummy_rows,
                           dummy_features, train=False)
    params = variables.get("params", {})
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        tables=tables,
        slots={name: sparse.init_slots(sparse_kind, t) for name, t in tables.items()},
        params=params,
        opt_state=dense_tx.init(params),
        batch_stats=variables.get("batch_stats", {}),
        lr_scale=jnp.ones((), jnp.float32),
        rng=key_state,
    )

  return init


def create_state(init, mesh: Mesh) -> tuple[TrainState, TrainState]:
  """The initial state, created already sharded (jit with out_shardings), and its shardings.

  We jit the initializer so each device builds its own shard: a 480k x 64 table is never
  materialized on one device and then split.
  """
  shardings = state_shardings(jax.eval_shape(init), mesh)
  return jax.jit(init, out_shardings=shardings)(), shardings


def abstract_state(init, mesh: Mesh) -> TrainState:
  """Shapes, dtypes and shardings of the state: the target a checkpoint is restored into."""
  abstract = jax.eval_shape(init)
  shardings = state_shardings(abstract, mesh)
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings)
