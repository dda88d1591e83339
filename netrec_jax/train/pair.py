"""Pair models (MF, GMF, MLP, NeuMF, the hybrid deep CF): (user, item) -> rating or logit.

Embedding tables are row-sparse (row-wise Adagrad, SGD or lazy Adam on the rows a batch
touches, netrec_jax/train/sparse.py) and row-sharded over the mesh's `model` axis; towers are
Flax params under optax. An epoch is host-fed (memmap gather + prefetch, the loop's default)
or, with train.input_pipeline = device, one compiled scan over device-resident columns.
Validation: RMSE (explicit) or Recall@20 over the full catalog (implicit).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from netrec_jax import sharding as sharding_lib
from netrec_jax import models
from netrec_jax.data import datasets, features
from netrec_jax.train import input_pipeline, optim, sparse, state as state_lib, steps
from netrec_jax.recommenders.pair import PairRecommender
from netrec_jax.train.family import Family, Setup, SizedBatches


@dataclasses.dataclass
class PairSetup(Setup):
  rows: dict[str, np.ndarray] = None
  global_mean: float = 0.0
  model: Any = None
  specs: dict[str, models.TableSpec] = None
  init_fn: Any = None
  shardings: Any = None
  aux: dict[str, jax.Array] = None
  predict: Any = None
  total_steps: int = 0
  dense_tx: optax.GradientTransformation = None
  batcher: Any = None


def _side_features(store, split, mesh) -> dict[str, jax.Array]:
  """Standardized [log count, mean rating] per user and item, from training rows only."""
  feats = features.split_features(store, split)
  out = {}
  for entity in ("user", "item"):
    x = np.stack([feats[entity]["log_n_ratings"], feats[entity]["mean_rating"]], 1)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
    out[f"{entity}_features"] = jax.device_put(x.astype(np.float32), NamedSharding(mesh, P()))
  return out


class PairFamily(Family):
  name = "pair"
  models = ("mf", "gmf", "mlp", "neumf", "hybrid")
  reads = ("task", "model", "optimizer.sparse", "optimizer.sparse_lr", "optimizer.embed_l2",
           "train.input_pipeline", "train.num_negatives")
  architecture_keys = ("task", "model.embed_dim", "model.use_bias", "model.gmf_dim",
                       "model.mlp_layers", "model.hidden", "model.batch_norm",
                       "model.use_features", "optimizer.sparse")
  DEFAULTS = dict.fromkeys(models, {"train.epochs": 10, "train.batch_size": 8192})
  _TABLES = {"model.embed_dim": ("int_log", 16, 256), "optimizer.sparse_lr": ("log", 0.005, 0.3),
             "optimizer.embed_l2": ("log", 1e-3, 1.0)}
  SEARCH_SPACE = {"mf": _TABLES,
                  **dict.fromkeys(("gmf", "mlp", "neumf", "hybrid"), {
                      **_TABLES, "optimizer.lr": ("log", 1e-4, 1e-2),
                      "model.dropout": ("float", 0.0, 0.5)})}

  def check(self, config) -> None:
    if config.optimizer.sparse not in sparse.SPARSE_OPTIMIZERS:
      raise ValueError(f"optimizer.sparse must be one of {sparse.SPARSE_OPTIMIZERS}, got "
                       f"{config.optimizer.sparse!r}")
    if config.task not in steps.TASKS:
      raise ValueError(f"task must be one of {steps.TASKS}, got {config.task!r}")
    if config.train.input_pipeline not in ("host", "device"):
      raise ValueError("train.input_pipeline must be host or device, got "
                       f"{config.train.input_pipeline!r}")
    if config.train.input_pipeline == "device" and jax.process_count() > 1:
      raise ValueError("train.input_pipeline=device is single-process; use host with several "
                       "processes (each reads its slice of every batch)")

  def setup(self, config, meta: dict[str, Any] | None = None) -> PairSetup:
    store = datasets.open_or_build(config.data)
    split = datasets.make_split(store, config.split)
    if split is None:
      raise ValueError("training needs a split (split.kind must not be 'none')")
    rows = {part: split.rows(part) for part in ("train", "valid", "test")}
    if len(rows["train"]) == 0:
      raise ValueError(f"split {split.name} has no training rows")
    global_mean = (float(meta["global_mean"]) if meta and "global_mean" in meta
                   else float(store.stars(rows["train"]).astype(np.float64).mean()))
    mesh = sharding_lib.make_mesh(config.mesh)
    model = models.build_model(config.model, global_mean if config.task == "explicit" else 0.0)
    specs = model.table_specs()
    sizes = state_lib.table_sizes(specs, store.n_users, store.n_items, mesh)
    cfg = config.train
    device = cfg.input_pipeline == "device"
    n_train = len(rows["train"])
    steps_per_epoch = n_train // cfg.batch_size if device else -(-n_train // cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    dense_tx = optim.dense_optimizer(config.optimizer, total_steps)
    aux = _side_features(store, split, mesh) if config.model.use_features else {}
    init_fn = state_lib.state_initializer(model, specs, sizes, dense_tx, config.optimizer.sparse,
                                          config.seed, 4 if config.model.use_features else 0)
    shardings = state_lib.state_shardings(jax.eval_shape(init_fn), mesh)
    replicated = NamedSharding(mesh, P())
    predict = jax.jit(steps.make_predict_step(model, specs),
                      in_shardings=(shardings, sharding_lib.batch_sharding(mesh), replicated),
                      out_shardings=sharding_lib.batch_sharding(mesh))
    explicit = config.task == "explicit"
    batcher = None if device else input_pipeline.HostBatches(
        store, rows["train"], cfg.batch_size, config.seed, mesh, prefetch=cfg.prefetch)
    return PairSetup(
        config=config, store=store, split=split, mesh=mesh,
        valid_metric="rmse" if explicit else "recall@20", lower_is_better=explicit,
        n_examples=n_train, unit="ratings", steps_per_epoch=max(steps_per_epoch, 1),
        extra_meta={"global_mean": global_mean}, rows=rows, global_mean=global_mean,
        model=model, specs=specs, init_fn=init_fn, shardings=shardings, aux=aux,
        predict=predict, total_steps=total_steps, dense_tx=dense_tx, batcher=batcher)

  def init(self, setup: PairSetup):
    return jax.jit(setup.init_fn, out_shardings=setup.shardings)()

  def abstract(self, setup: PairSetup):
    return state_lib.abstract_state(setup.init_fn, setup.mesh)

  def _train_step(self, setup: PairSetup):
    cfg = setup.config
    sparse_lr = optim.learning_rate_schedule(cfg.optimizer.sparse_lr, cfg.optimizer,
                                             setup.total_steps)
    return steps.make_train_step(
        setup.model, setup.specs, task=cfg.task, dense_tx=setup.dense_tx,
        sparse_kind=cfg.optimizer.sparse, sparse_lr=sparse_lr,
        sparse_l2=cfg.optimizer.embed_l2, sparse_hyper={}, n_items=setup.store.n_items,
        num_negatives=cfg.train.num_negatives)

  def make_step(self, setup: PairSetup):
    train_step, aux = self._train_step(setup), setup.aux
    replicated = NamedSharding(setup.mesh, P())
    # The state carries its own key (folded with its step): the loop's key is not needed.
    return jax.jit(lambda state, batch, key: train_step(state, batch, aux),
                   in_shardings=(setup.shardings, sharding_lib.batch_sharding(setup.mesh),
                                 replicated),
                   out_shardings=(setup.shardings, replicated), donate_argnums=0)

  def batches(self, setup: PairSetup, epoch: int):
    return SizedBatches(lambda: setup.batcher.host_batches(epoch), len(setup.batcher))

  def _device_epoch(self, setup: PairSetup, tree, epoch: int):
    """The device-resident epoch: one compiled scan over batches (no host round trips)."""
    if not hasattr(setup, "_device"):
      replicated = NamedSharding(setup.mesh, P())
      columns = input_pipeline.device_columns(setup.store, setup.rows["train"], setup.mesh)
      epoch_fn, _ = input_pipeline.make_device_epoch(
          self._train_step(setup), len(setup.rows["train"]), setup.config.train.batch_size,
          setup.mesh)
      epoch_fn = jax.jit(epoch_fn, in_shardings=(setup.shardings, replicated, replicated,
                                                 replicated),
                         out_shardings=(setup.shardings, replicated), donate_argnums=0)
      setup._device = (columns, epoch_fn)
    columns, epoch_fn = setup._device
    order = input_pipeline.epoch_order(len(setup.rows["train"]), setup.config.seed, epoch,
                                       setup.mesh)
    tree, metrics = epoch_fn(tree, columns, setup.aux, order)
    return tree, metrics["loss"], setup.steps_per_epoch * setup.config.train.batch_size

  def epoch_runner(self, setup: PairSetup):
    if setup.config.train.input_pipeline != "device":
      return None
    return lambda tree, epoch: self._device_epoch(setup, tree, epoch)

  def recommender(self, setup: PairSetup, tree, which: str, meta: dict[str, Any]):
    return PairRecommender(setup, tree, which=which, meta=meta)


FAMILY = PairFamily()
