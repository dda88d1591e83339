"""Autoencoders over rating rows: I-AutoRec, U-AutoRec and the deep autoencoder.

A batch is a set of whole rating rows (items for I-AutoRec, users for U-AutoRec) gathered from
the training ratings as padded-sparse arrays and sharded over the `data` axis; the loss is the
masked squared error over observed entries, with L2 on weights through optimizer.l2.
Predictions for a (user, item) pair encode the row's training ratings and read the
reconstruction at the other side's column; rows with no training rating predict the training
mean (AutoRec's rule for unseen users/items).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from netrec_jax import sharding as sharding_lib
from netrec_jax.data import datasets
from netrec_jax.data.row_batches import RowBatching, epoch_batches
from netrec_jax.models.autorec import SparseAutoencoder, SparseRows, row_loss
from netrec_jax.recommenders.autoencoder import RowRecommender
from netrec_jax.train import optim
from netrec_jax.train.family import Family, Setup, SizedBatches, check_one_of

SIDES = ("item", "user")
ACTIVATIONS = ("relu", "selu", "sigmoid")


def _model(config, n_columns: int, global_mean: float) -> SparseAutoencoder:
  a = config.autoencoder
  if config.model.name == "autorec":
    return SparseAutoencoder(n_columns, hidden=(a.autorec_hidden,), activation="sigmoid",
                             global_mean=global_mean)
  return SparseAutoencoder(n_columns, hidden=tuple(a.layers), activation=a.activation,
                           dropout=a.dropout, input_dropout=a.input_dropout,
                           global_mean=global_mean)


# ------------------------------------------------------------------------------ the family
@dataclasses.dataclass
class AutoencoderSetup(Setup):
  side: str = "item"
  global_mean: float = 0.0
  train_index: SparseRows = None
  model: SparseAutoencoder = None
  batching: RowBatching = None
  tx: Any = None
  entities: np.ndarray = None  # rows with training ratings (the epoch's examples)


class AutoencoderFamily(Family):
  name = "autoencoder"
  models = ("autorec", "deep_ae")
  reads = ("autoencoder",)
  architecture_keys = ("autoencoder.side", "autoencoder.autorec_hidden", "autoencoder.layers",
                       "autoencoder.activation")
  DEFAULTS = dict.fromkeys(models, {"train.batch_size": 256, "optimizer.l2": 1e-4})
  SEARCH_SPACE = {"autorec": {"autoencoder.autorec_hidden": ("int_log", 100, 1000),
                              "optimizer.lr": ("log", 1e-4, 1e-2),
                              "optimizer.l2": ("log", 1e-5, 1e-1)},
                  "deep_ae": {"autoencoder.dropout": ("float", 0.0, 0.8),
                              "optimizer.lr": ("log", 1e-4, 1e-2),
                              "optimizer.l2": ("log", 1e-6, 1e-2)}}

  def check(self, config) -> None:
    a = config.autoencoder
    check_one_of(config, "autoencoder.side", SIDES)
    check_one_of(config, "autoencoder.activation", ACTIVATIONS)
    for field in ("dropout", "input_dropout"):
      if not 0 <= a[field] < 1:
        raise ValueError(f"autoencoder.{field} must be in [0, 1), got {a[field]}")

  def setup(self, config, meta: dict[str, Any] | None = None) -> AutoencoderSetup:
    store = datasets.open_or_build(config.data)
    split = datasets.make_split(store, config.split)
    train_rows = split.rows("train")
    if len(train_rows) == 0:
      raise ValueError(f"split {split.name} has no training ratings")
    side = config.autoencoder.side
    global_mean = (float(meta["global_mean"]) if meta and "global_mean" in meta
                   else float(store.stars(train_rows).astype(np.float64).mean()))
    n_columns = store.n_users if side == "item" else store.n_items
    model = _model(config, n_columns, global_mean)
    mesh = sharding_lib.make_mesh(config.mesh)
    data_devices = mesh.shape[sharding_lib.DATA]
    batch_rows = -(-config.train.batch_size // data_devices) * data_devices
    batching = RowBatching(batch_rows, max(config.autoencoder.batch_entries, batch_rows),
                           data_devices)
    train_index = SparseRows(store, train_rows, side)
    entities = np.flatnonzero(train_index.lengths(np.arange(train_index.n_entities)) > 0)
    steps_per_epoch = len(batching.spans(np.sort(train_index.lengths(entities))))
    tx = optim.dense_optimizer(config.optimizer, steps_per_epoch * config.train.epochs)
    return AutoencoderSetup(
        config=config, store=store, split=split, mesh=mesh, valid_metric="rmse",
        lower_is_better=True, n_examples=len(entities), unit="rows",
        steps_per_epoch=steps_per_epoch, extra_meta={"global_mean": global_mean}, side=side,
        global_mean=global_mean, train_index=train_index, model=model, batching=batching,
        tx=tx, entities=entities)

  def init(self, setup: AutoencoderSetup):
    dummy = setup.train_index.batch(np.arange(1))
    seed = setup.config.seed

    def init():
      params = setup.model.init({"params": jax.random.PRNGKey(seed),
                                 "dropout": jax.random.PRNGKey(seed + 1)},
                                dummy["index"], dummy["value"], dummy["mask"], dummy["index"])
      return optim.init_tree(params, setup.tx)

    return jax.jit(init, out_shardings=NamedSharding(setup.mesh, P()))()

  def make_step(self, setup: AutoencoderSetup):
    model, tx = setup.model, setup.tx
    refeed = setup.config.autoencoder.refeed

    # Squared errors are weighted by 1 / (the epoch's mean ratings per batch), not divided by
    # this batch's count: batches are length-sorted (epoch_batches), and a per-batch mean
    # would give a batch of rarely rated rows as much weight as one of popular rows. This way
    # every training rating weighs the same over an epoch, as in AutoRec's summed objective.
    def update(tree, index, value, mask, scale, key):
      def loss_fn(p):
        pred = model.apply(p, index, value, mask, index, train=True, rngs={"dropout": key})
        return row_loss(pred, value, mask, scale)
      loss, grads = jax.value_and_grad(loss_fn)(tree["params"])
      tree, norm = optim.apply_gradients(tree, grads, tx)
      return tree, loss, norm

    def step(tree, batch, key):
      tree, loss, norm = update(tree, batch["index"], batch["value"], batch["mask"],
                                batch["scale"], key)
      if refeed:
        # Kuchaiev & Ginsburg 2017: the dense reconstruction f(x) is a fixed point to aim
        # for, so f(f(x)) is trained towards f(x) over every column, in a second update.
        every = jnp.broadcast_to(jnp.arange(model.n_columns, dtype=jnp.int32),
                                 (batch["index"].shape[0], model.n_columns))
        dense = jax.lax.stop_gradient(model.apply(tree["params"], batch["index"],
                                                  batch["value"], batch["mask"], every))
        has_row = (batch["mask"].sum(1) > 0).astype(dense.dtype)
        scale = has_row / jnp.maximum(has_row.sum() * model.n_columns, 1.0)
        tree, _, _ = update(tree, every, dense, jnp.broadcast_to(has_row[:, None], dense.shape),
                            scale, jax.random.fold_in(key, 1))
      return tree, {"loss": loss, "grad_norm": norm}

    replicated = NamedSharding(setup.mesh, P())
    return jax.jit(step, in_shardings=(replicated, sharding_lib.batch_sharding(setup.mesh),
                                       replicated),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))

  def batches(self, setup: AutoencoderSetup, epoch: int):
    """Rows shuffled per epoch (seeded by epoch: a resumed run sees the same order)."""
    lengths = setup.train_index.lengths(setup.entities)
    groups = epoch_batches(setup.entities, lengths, setup.batching,
                           np.random.default_rng([setup.config.seed, epoch]))
    scale = np.float32(len(groups) / len(setup.split.rows("train")))

    def make():
      for entities in groups:
        batch = setup.batching.pad(setup.train_index.batch(entities))
        batch["scale"] = np.full(batch["index"].shape[0], scale, np.float32)
        yield batch

    return SizedBatches(make, len(groups))

  def recommender(self, setup: AutoencoderSetup, tree, which: str, meta: dict[str, Any]):
    return RowRecommender(setup.model, tree["params"], setup.store, setup.split,
                          setup.train_index, setup.batching, setup.config, which,
                          {**setup.extra_meta, **meta})


FAMILY = AutoencoderFamily()
