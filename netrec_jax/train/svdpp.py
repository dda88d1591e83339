"""The SVD++ family (netrec_jax/models/svdpp.py): batches of whole users, row-sparse updates.

An example is a rating, but a batch holds whole users: all the training ratings of each user
in it, flat (netrec_jax/data/row_batches.py, flat_user_batch), so the implicit term of a user
is one segment sum per batch and each of the user's ratings is predicted from it. Users are
shuffled per epoch and packed greedily into batches of at most train.batch_size ratings (a
longer user fills a batch alone; the batch shape grows to fit the longest user, so one shape
compiles) and a quarter as many users. The flat arrays are sharded over the mesh's `data` axis;
tables are replicated (mesh.model must be 1).

The loss is the summed objective of the batch's ratings (Surprise's, every L2 term per rating;
optimizer.l2 is its lambda). Gradients are taken by autodiff with respect to the gathered
rows, and only those rows are updated, by svdpp.optimizer (train/sparse.py) at optimizer.lr
on optimizer.schedule. With sgd (the default, Surprise's settings) each row's summed gradient
is scaled by svdpp.step_factor: one step on a user's whole gradient at Surprise's per-rating
rate diverges for heavy users (b_u's curvature is |N(u)|), the factor makes it take what
per-rating SGD takes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from netrec_jax import sharding as sharding_lib
from netrec_jax.data import datasets
from netrec_jax.data.row_batches import UserCSR, flat_user_batch, user_csr, user_spans
from netrec_jax.models import svdpp
from netrec_jax.recommenders.svdpp import SVDppRecommender
from netrec_jax.train import input_pipeline, optim, sparse
from netrec_jax.train.family import Family, Setup, SizedBatches, check_one_of

USERS_PER_RATING = 4  # batch slots: at most one user per this many ratings of the batch


@dataclasses.dataclass
class SVDppSetup(Setup):
  csr: UserCSR = None  # training ratings by user (N(u) = a user's items)
  users: np.ndarray = None  # users with a training rating
  global_mean: float = 0.0
  max_ratings: int = 0  # packing budgets (independent of the device count) ...
  max_users: int = 0
  batch_ratings: int = 0  # ... and the padded batch shape (multiples of the data devices)
  batch_users: int = 0
  schedule: optax.Schedule = None


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


class SVDppFamily(Family):
  name = "svdpp"
  models = ("svdpp",)
  reads = ("svdpp",)
  architecture_keys = ("svdpp.embed_dim", "svdpp.optimizer")
  # Surprise's SVDpp defaults (lr 0.007, reg 0.02, 20 epochs; 20 factors and init std 0.1
  # are svdpp.*'s): on ml100k_u1 validation they beat every Adagrad / lazy Adam setting tried
  # (BUILD_NOTES.md). Batches of 4,096 ratings train as well as 1,024, 4x faster per epoch.
  DEFAULTS = {"svdpp": {"optimizer.lr": 0.007, "optimizer.l2": 0.02, "train.epochs": 20,
                        "train.batch_size": 4096, "train.early_stopping_patience": 3,
                        "optimizer.weight_decay": 0.0}}
  SEARCH_SPACE = {"svdpp": {"optimizer.lr": ("log", 2e-3, 2e-2),
                            "optimizer.l2": ("log", 5e-3, 0.2),
                            "svdpp.embed_dim": ("int_log", 8, 128)}}

  def check(self, config) -> None:
    check_one_of(config, "svdpp.optimizer", sparse.SPARSE_OPTIMIZERS)
    if config.mesh.model != 1:
      raise ValueError(f"svdpp keeps its tables replicated: mesh.model must be 1, got "
                       f"{config.mesh.model}")
    o = config.optimizer
    for field in ("weight_decay", "clip_norm", "momentum"):
      if o[field]:  # the loop's dense-optimizer fields: SVD++ has no dense params
        raise ValueError(f"optimizer.{field} is not used by svdpp (its tables are updated "
                         f"by svdpp.optimizer); leave it at 0, got {o[field]}")

  def setup(self, config, meta: dict[str, Any] | None = None) -> SVDppSetup:
    store = datasets.open_or_build(config.data)
    split = datasets.make_split(store, config.split)
    if split is None:
      raise ValueError("svdpp needs a split (split.kind must not be 'none')")
    train_rows = split.rows("train")
    if len(train_rows) == 0:
      raise ValueError(f"split {split.name} has no training ratings")
    global_mean = (float(meta["global_mean"]) if meta and "global_mean" in meta
                   else float(store.stars(train_rows).astype(np.float64).mean()))
    csr = user_csr(store, train_rows)
    del train_rows
    users = np.flatnonzero(csr.lengths() > 0)
    mesh = sharding_lib.make_mesh(config.mesh)
    devices = mesh.shape[sharding_lib.DATA]
    max_ratings = max(int(config.train.batch_size), int(csr.lengths().max()))
    max_users = max(1, config.train.batch_size // USERS_PER_RATING)
    steps_per_epoch = len(user_spans(csr.lengths(users), max_ratings, max_users))
    schedule = optim.learning_rate_schedule(config.optimizer.lr, config.optimizer,
                                            steps_per_epoch * config.train.epochs)
    return SVDppSetup(
        config=config, store=store, split=split, mesh=mesh, valid_metric="rmse",
        lower_is_better=True, n_examples=len(csr.items), unit="ratings",
        steps_per_epoch=steps_per_epoch, extra_meta={"global_mean": global_mean}, csr=csr,
        users=users, global_mean=global_mean, max_ratings=max_ratings, max_users=max_users,
        batch_ratings=_round_up(max_ratings, devices),
        batch_users=_round_up(max_users, devices), schedule=schedule)

  # ------------------------------------------- what a subclass (timesvdpp) changes or adds
  def init_tables(self, setup: SVDppSetup) -> dict[str, jax.Array]:
    c = setup.config
    return svdpp.init_tables(jax.random.PRNGKey(c.seed), setup.store.n_users,
                             setup.store.n_items, c.svdpp.embed_dim, c.svdpp.init_std)

  def model_fns(self, setup: SVDppSetup):
    """The model's part of a step: loss(rows, batch) -> (objective, sse), bounds(rows,
    batch) -> each table's curvature bounds, index(batch) -> each table's rows of the batch
    (padding: one past the table, read as 0 and never written)."""
    l2, mu = setup.config.optimizer.l2, setup.global_mean
    n_users, n_items = setup.store.n_users, setup.store.n_items

    def index(batch):
      counts = jax.ops.segment_sum(batch["weight"], batch["segment"],
                                   num_segments=batch["user"].shape[0])
      return {**dict.fromkeys(svdpp.USER_TABLES,
                              jax.numpy.where(counts > 0, batch["user"], n_users)),
              **dict.fromkeys(svdpp.ITEM_TABLES,
                              jax.numpy.where(batch["weight"] > 0, batch["item"], n_items))}

    loss = lambda rows, batch: svdpp.batch_loss(rows, batch, mu, l2)
    bounds = lambda rows, batch: svdpp.curvature_bounds(rows, batch, l2, n_items)
    return loss, bounds, index

  def user_batch(self, setup: SVDppSetup, users: np.ndarray) -> dict[str, np.ndarray]:
    """The host batch of these users (all their training ratings, flat)."""
    return flat_user_batch(setup.csr, users, setup.batch_ratings, setup.batch_users)

  # ------------------------------------------------------------------------ the contract
  def init(self, setup: SVDppSetup):
    kind = setup.config.svdpp.optimizer

    def init():
      tables = self.init_tables(setup)
      return {"tables": tables,
              "slots": {k: sparse.init_slots(kind, t) for k, t in tables.items()},
              "step": jax.numpy.zeros((), jax.numpy.int32),
              "lr_scale": jax.numpy.ones((), jax.numpy.float32)}

    return jax.jit(init, out_shardings=NamedSharding(setup.mesh, P()))()

  def make_step(self, setup: SVDppSetup):
    kind, schedule = setup.config.svdpp.optimizer, setup.schedule
    loss_fn, bounds_fn, index_fn = self.model_fns(setup)

    def step(tree, batch, key):
      del key  # nothing is random in a step
      tables = tree["tables"]
      # Padding (a weight-0 rating, a slot without ratings) indexes one row past the table:
      # read as 0, never written.
      index = index_fn(batch)
      rows = {k: tables[k].at[index[k]].get(mode="fill", fill_value=0) for k in tables}
      (objective, sse), grads = jax.value_and_grad(loss_fn, has_aux=True)(rows, batch)
      lr = schedule(tree["step"]) * tree["lr_scale"]
      if kind == "sgd":
        # Each touched row's summed gradient scaled by svdpp.step_factor of its curvature
        # bound: a heavy user's (or movie's) one step takes what per-rating SGD would.
        bounds = bounds_fn(rows, batch)
        grads = {k: g * svdpp.step_factor(lr, bounds[k])[:, None] for k, g in grads.items()}
      new_tables, new_slots = {}, {}
      for k in tables:
        new_tables[k], new_slots[k] = sparse.apply(
            kind, tables[k], tree["slots"][k], index[k], grads[k], lr=lr, l2=0.0,
            step=tree["step"], hyper={})
      n = jax.numpy.maximum(batch["weight"].sum(), 1.0)
      new = dict(tree, tables=new_tables, slots=new_slots, step=tree["step"] + 1)
      return new, {"loss": objective / n, "mse": sse / n, "grad_norm": optax.tree.norm(grads)}

    replicated = NamedSharding(setup.mesh, P())
    return jax.jit(step, in_shardings=(replicated, sharding_lib.batch_sharding(setup.mesh),
                                       replicated),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))

  def batches(self, setup: SVDppSetup, epoch: int):
    """Users shuffled per epoch (seeded by epoch: a resumed run sees the same order)."""
    order = setup.users[input_pipeline.epoch_permutation(len(setup.users), setup.config.seed,
                                                         epoch)]
    spans = user_spans(setup.csr.lengths(order), setup.max_ratings, setup.max_users)

    def make():
      for lo, hi in spans:
        yield self.user_batch(setup, order[lo:hi])

    return SizedBatches(make, len(spans))

  RECOMMENDER = SVDppRecommender

  def recommender_fields(self, setup: SVDppSetup) -> dict[str, Any]:
    """What RECOMMENDER takes besides SVD++'s arguments (timesvdpp: the time terms)."""
    del setup
    return {}

  def recommender(self, setup: SVDppSetup, tree, which: str, meta: dict[str, Any]):
    return self.RECOMMENDER(
        config=setup.config, store=setup.store, split=setup.split, csr=setup.csr,
        tables=jax.device_get(tree["tables"]), global_mean=setup.global_mean,
        l2=setup.config.optimizer.l2, fold_in_lr=setup.config.optimizer.lr,
        fold_in_steps=setup.config.train.epochs, batch_ratings=setup.batch_ratings,
        batch_users=setup.batch_users, which=which, meta={**setup.extra_meta, **meta},
        **self.recommender_fields(setup))


FAMILY = SVDppFamily()
