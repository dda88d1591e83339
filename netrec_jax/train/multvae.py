"""The Mult-VAE / Mult-DAE family (netrec_jax/models/multvae.py): whole user rows, top-N only.

An example is a user: their training ratings as a binary row over the catalog (every training
rating counts as an interaction; the strong-generalization split keeps only ratings >= 4, as
Liang et al. do). Batches of rows [B, n_items] are built on the host from the training CSR and
sharded over the mesh's `data` axis; parameters are replicated. beta is annealed linearly
from 0 to vae.beta_cap over vae.anneal_epochs epochs' updates: a count of the data, not of
the run, so a run extended by more epochs (or resumed) anneals as an uninterrupted one.
The paper anneals over 200k updates (about 860 ML-20M epochs at batch 500, so its beta is
still rising at its 200th epoch) and reports the best beta seen on validation. `best` is picked
by validation NDCG@100 over the full catalog, the paper's criterion.

Scores are the decoder's logits for the user's training row (the code's mean, no dropout), so
a new user is folded in by encoding their row: no optimisation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import scipy.sparse as sp
from jax.sharding import NamedSharding, PartitionSpec as P

from netrec_jax import sharding as sharding_lib
from netrec_jax.data import datasets
from netrec_jax.data.row_batches import dense_rows, interaction_matrix
from netrec_jax.models.multvae import MultVAE, annealed_beta, multinomial_loss
from netrec_jax.recommenders.multvae import MultVAERecommender
from netrec_jax.train import input_pipeline, optim
from netrec_jax.train.family import Family, Setup, SizedBatches

VALID_METRIC = "ndcg@100"


@dataclasses.dataclass
class MultVAESetup(Setup):
  model: MultVAE = None
  tx: Any = None
  matrix: sp.csr_matrix = None  # training interactions, users x items
  users: np.ndarray = None  # users with a training interaction (the epoch's examples)
  batch_rows: int = 0
  anneal_steps: int = 0  # updates until beta reaches its cap


class MultVAEFamily(Family):
  name = "multvae"
  models = ("mult_vae", "mult_dae")
  reads = ("vae",)
  architecture_keys = ("vae.hidden", "vae.latent")
  # The paper's settings (dawenl/vae_cf): Adam 1e-3, batch 500, 200 epochs; the DAE's weight
  # penalty lam = 0.01 on sum(w^2) / 2, doubled in its loss, is coupled L2 of 0.02 here.
  DEFAULTS = {
      "mult_vae": {"optimizer.lr": 1e-3, "optimizer.l2": 0.0, "optimizer.weight_decay": 0.0,
                   "train.batch_size": 500, "train.epochs": 200, "train.eval_every": 5,
                   "train.early_stopping_patience": 8, "eval.relevance_threshold": 0.0},
      "mult_dae": {"optimizer.lr": 1e-3, "optimizer.l2": 0.02, "optimizer.weight_decay": 0.0,
                   "train.batch_size": 500, "train.epochs": 200, "train.eval_every": 5,
                   "train.early_stopping_patience": 8, "eval.relevance_threshold": 0.0},
  }
  SEARCH_SPACE = {"mult_vae": {"vae.beta_cap": ("float", 0.05, 1.0),
                               "vae.dropout": ("float", 0.2, 0.7),
                               "optimizer.lr": ("log", 3e-4, 3e-3)},
                  "mult_dae": {"optimizer.l2": ("log", 1e-3, 1e-1),
                               "vae.dropout": ("float", 0.2, 0.7),
                               "optimizer.lr": ("log", 3e-4, 3e-3)}}

  def check(self, config) -> None:
    if not config.vae.hidden or min(config.vae.hidden) <= 0 or config.vae.latent <= 0:
      raise ValueError(f"vae.hidden {tuple(config.vae.hidden)} and vae.latent "
                       f"{config.vae.latent} must be positive widths")

  def setup(self, config, meta: dict[str, Any] | None = None) -> MultVAESetup:
    del meta
    store = datasets.open_or_build(config.data)
    split = datasets.make_split(store, config.split)
    if split is None:
      raise ValueError(f"{config.model.name} needs a split (split.kind must not be 'none')")
    train_rows = split.rows("train")
    if len(train_rows) == 0:
      raise ValueError(f"split {split.name} has no training ratings")
    v = config.vae
    model = MultVAE(store.n_items, hidden=tuple(v.hidden), latent=v.latent, dropout=v.dropout,
                    variational=config.model.name == "mult_vae")
    mesh = sharding_lib.make_mesh(config.mesh)
    data_devices = mesh.shape[sharding_lib.DATA]
    batch_rows = -(-config.train.batch_size // data_devices) * data_devices
    matrix = interaction_matrix(store, train_rows)
    users = np.flatnonzero(np.diff(matrix.indptr) > 0)
    steps_per_epoch = -(-len(users) // batch_rows)
    tx = optim.dense_optimizer(config.optimizer, steps_per_epoch * config.train.epochs)
    return MultVAESetup(
        config=config, store=store, split=split, mesh=mesh, valid_metric=VALID_METRIC,
        lower_is_better=False, n_examples=len(users), unit="users",
        steps_per_epoch=steps_per_epoch, model=model, tx=tx, matrix=matrix, users=users,
        batch_rows=batch_rows, anneal_steps=int(v.anneal_epochs) * steps_per_epoch)

  def init(self, setup: MultVAESetup):
    seed, n_items = setup.config.seed, setup.store.n_items

    def init():
      params = setup.model.init({"params": jax.random.PRNGKey(seed)},
                                jax.numpy.zeros((1, n_items)))
      return optim.init_tree(params, setup.tx)

    return jax.jit(init, out_shardings=NamedSharding(setup.mesh, P()))()

  def make_step(self, setup: MultVAESetup):
    model, tx = setup.model, setup.tx
    cap, anneal = float(setup.config.vae.beta_cap), setup.anneal_steps

    def step(tree, batch, key):
      beta = annealed_beta(tree["step"], cap, anneal)
      drop_key, sample_key = jax.random.split(key)

      def loss_fn(p):
        logits, kl = model.apply(p, batch["rows"], train=True,
                                 rngs={"dropout": drop_key, "sample": sample_key})
        return multinomial_loss(logits, batch["rows"], kl, beta, batch["weight"])

      (loss, nll), grads = jax.value_and_grad(loss_fn, has_aux=True)(tree["params"])
      tree, norm = optim.apply_gradients(tree, grads, tx)
      return tree, {"loss": loss, "nll": nll, "beta": beta, "grad_norm": norm}

    replicated = NamedSharding(setup.mesh, P())
    return jax.jit(step, in_shardings=(replicated, sharding_lib.batch_sharding(setup.mesh),
                                       replicated),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))

  def batches(self, setup: MultVAESetup, epoch: int):
    """Users shuffled per epoch (seeded by epoch: a resumed run sees the same order)."""
    order = setup.users[input_pipeline.epoch_permutation(len(setup.users), setup.config.seed,
                                                         epoch)]
    size = setup.batch_rows

    def make():
      for lo in range(0, len(order), size):
        yield dense_rows(setup.matrix, order[lo:lo + size], size)

    return SizedBatches(make, -(-len(order) // size))

  def recommender(self, setup: MultVAESetup, tree, which: str, meta: dict[str, Any]):
    return MultVAERecommender(setup, tree["params"], which, meta)


FAMILY = MultVAEFamily()
