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

from netrec_jax.data import datasets
from netrec_jax.eval import evaluator
from netrec_jax.models.multvae import MultVAE, annealed_beta, multinomial_loss
from netrec_jax.train import input_pipeline, optim, state as state_lib
from netrec_jax.train.family import Family, Setup, SizedBatches

VALID_METRIC = "ndcg@100"


def interaction_rows(store, train_rows: np.ndarray) -> sp.csr_matrix:
  """users x items float32 CSR, 1 for each training rating (duplicates cannot occur)."""
  users, items = np.take(store.user, train_rows), np.take(store.item, train_rows)
  return sp.csr_matrix((np.ones(len(train_rows), np.float32), (users, items)),
                       shape=(store.n_users, store.n_items))


def dense_rows(matrix: sp.csr_matrix, users: np.ndarray, size: int) -> dict[str, np.ndarray]:
  """The batch of `users`' rows, padded to `size` rows of weight 0."""
  rows = np.zeros((size, matrix.shape[1]), np.float32)
  rows[:len(users)] = matrix[users].toarray()
  weight = np.zeros(size, np.float32)
  weight[:len(users)] = 1.0
  return {"rows": rows, "weight": weight}


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
    mesh = state_lib.make_mesh(config.mesh)
    data_devices = mesh.shape[state_lib.DATA]
    batch_rows = -(-config.train.batch_size // data_devices) * data_devices
    matrix = interaction_rows(store, train_rows)
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
    return jax.jit(step, in_shardings=(replicated, input_pipeline.batch_sharding(setup.mesh),
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


class MultVAERecommender:
  """A Mult-VAE / DAE behind the evaluator interface: ranks, predicts no ratings."""

  rating_note = "not applicable: a multinomial over the catalog ranks items, rates none"
  cold_rule = "a user with no training interaction gets the decoder's output for an empty row"
  prediction_note = "logits of the multinomial over the catalog (ranking only)"
  fold_in_method = "one encoder pass over the new user's binary row (the code's mean)"

  def __init__(self, setup: MultVAESetup, params, which: str, meta: dict[str, Any]):
    self.setup, self.params, self.which, self.meta = setup, params, which, meta
    self.store, self.split, self.config = setup.store, setup.split, setup.config
    self.name = setup.config.model.name
    self.extra_ks = (100,)
    model = setup.model
    self._logits = jax.jit(lambda p, rows: model.apply(p, rows)[0])

  def predict(self, users: np.ndarray, items: np.ndarray) -> None:
    del users, items
    return None

  def _score(self, rows: sp.csr_matrix) -> np.ndarray:
    """[n, n_items] logits of CSR rows, a padded chunk at a time: one compiled shape per run."""
    chunk = max(1, self.setup.batch_rows)
    out = np.empty(rows.shape, np.float32)
    for lo in range(0, rows.shape[0], chunk):
      part = np.arange(lo, min(lo + chunk, rows.shape[0]))
      logits = self._logits(self.params, dense_rows(rows, part, chunk)["rows"])
      out[part] = np.asarray(jax.device_get(logits), np.float32)[:len(part)]
    return out

  def score_items(self, users: np.ndarray) -> np.ndarray:
    return self._score(self.setup.matrix[np.asarray(users, np.int64)])

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] logits for a new user who interacted with `items` (stars unused)."""
    items, _ = evaluator.check_fold_in_input(items, stars, self.store.n_items)
    row = sp.csr_matrix((np.ones(len(items), np.float32), (np.zeros(len(items), int), items)),
                        shape=(1, self.store.n_items))
    return self.fold_in_batch(row)[0]

  def fold_in_batch(self, rows: sp.csr_matrix) -> np.ndarray:
    """[n, n_items] logits for n new users, each row's nonzero items their interactions."""
    binary = sp.csr_matrix(rows, dtype=np.float32, copy=True)
    binary.data[:] = 1.0
    return self._score(binary)

  def item_vectors(self) -> np.ndarray:
    """[n_items, d] rows of the decoder's output layer: an item's direction in the last layer."""
    return np.asarray(jax.device_get(self.params["params"]["out"]["kernel"])).T


FAMILY = MultVAEFamily()
