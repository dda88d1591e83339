"""The sequence family (BERT4Rec): the cloze task over each user's training sequence.

Sequences (netrec_jax/data/sequences.py) order a user's training items by date. On the
leave-last-out split (split.kind = loo) the last item is test and the one before validation,
so neither is ever in a training sequence; both are scored from the training sequence with
[MASK] appended (`SequenceRecommender.score_items`), so held-out items never leak into the input.

Each epoch every user contributes one sample with fresh masks (a random window of max_len items
if the sequence is longer), or, with probability sequence.last_mask_prob, only the last item
masked (the paper's trick that matches serving). Batches [B, max_len] are sharded over the
mesh's `data` axis. `best` is chosen by validation NDCG@10 over the full catalog (loo_full);
final metrics also report the paper's loo_pop100 (last item vs 100 popularity negatives).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from netrec_jax import sharding as sharding_lib
from netrec_jax.data import datasets
from netrec_jax.data.sequences import (Sequences, cloze_batch, max_predictions, training_sequences)
from netrec_jax.models.bert4rec import Bert4Rec, attention_dtype, cloze_loss
from netrec_jax.recommenders.sequence import SequenceRecommender
from netrec_jax.train import optim
from netrec_jax.train.family import Family, Setup, SizedBatches

SEQUENCE_MODELS = ("bert4rec",)


# ----------------------------------------------------------------------------------- setup
def _check_config(config) -> None:
  """What config_checks' per-field ranges cannot say: relations between fields."""
  s = config.sequence
  if s.max_len < 2:
    raise ValueError("sequence.max_len must be at least 2 (history + [MASK])")
  if s.hidden % s.heads:
    raise ValueError(f"sequence.hidden {s.hidden} is not divisible by sequence.heads {s.heads}")
  if s.mask_prob <= 0 and s.last_mask_prob <= 0:
    raise ValueError("sequence.mask_prob and last_mask_prob are both 0: nothing to predict")


@dataclasses.dataclass
class SequenceSetup(Setup):
  model: Bert4Rec = None
  tx: Any = None
  sequences: Sequences = None
  train_users: np.ndarray = None
  batch_users: int = 0
  max_predictions: int = 0


# ------------------------------------------------------------------------------ the family
class SequenceFamily(Family):
  name = "sequence"
  models = SEQUENCE_MODELS
  reads = ("sequence",)
  architecture_keys = tuple(f"sequence.{k}" for k in ("max_len", "hidden", "layers", "heads"))
  # The paper's AdamW with decay 0.01 and clipping; validation every 5 epochs; leave-last-out
  # ranking counts every held-out item, and the final metrics add loo_pop100.
  DEFAULTS = {"bert4rec": {"optimizer.dense": "adamw", "optimizer.weight_decay": 0.01,
                           "optimizer.clip_norm": 5.0, "train.epochs": 100,
                           "train.batch_size": 64, "train.eval_every": 5,
                           "eval.relevance_threshold": 0.0, "eval.sampled_negatives": 100,
                           "eval.negative_sampler": "popularity"}}
  SEARCH_SPACE = {"bert4rec": {"sequence.mask_prob": ("float", 0.1, 0.6),
                               "sequence.dropout": ("float", 0.0, 0.5),
                               "optimizer.lr": ("log", 1e-4, 3e-3)}}

  def check(self, config) -> None:
    _check_config(config)

  def setup(self, config, meta: dict[str, Any] | None = None) -> SequenceSetup:
    del meta
    store = datasets.open_or_build(config.data)
    split = datasets.make_split(store, config.split)
    if split is None:
      raise ValueError("a sequence model needs a split (split.kind = loo)")
    if split.protocol != "loo":
      logging.warning("split %s is not leave-last-out: the held-out items are not each "
                      "user's latest, so scoring from the training sequence is not next-item "
                      "prediction", split.name)
    train_rows = split.rows("train")
    if len(train_rows) == 0:
      raise ValueError(f"split {split.name} has no training ratings")
    s = config.sequence
    model = Bert4Rec(n_items=store.n_items, max_len=s.max_len, hidden=s.hidden,
                     layers=s.layers, heads=s.heads, dropout=s.dropout,
                     attention_dtype=attention_dtype(s.attention_dtype))
    mesh = sharding_lib.make_mesh(config.mesh)
    data_devices = mesh.shape[sharding_lib.DATA]
    batch_users = -(-config.train.batch_size // data_devices) * data_devices
    sequences = training_sequences(store, train_rows, config.split.seed)
    train_users = np.flatnonzero(sequences.lengths() > 0)
    steps_per_epoch = -(-len(train_users) // batch_users)
    tx = optim.dense_optimizer(config.optimizer, steps_per_epoch * config.train.epochs)
    return SequenceSetup(
        config=config, store=store, split=split, mesh=mesh, valid_metric="ndcg@10",
        lower_is_better=False, n_examples=len(train_users), unit="users",
        steps_per_epoch=steps_per_epoch, model=model, tx=tx, sequences=sequences,
        train_users=train_users, batch_users=batch_users,
        max_predictions=max_predictions(s.max_len, s.mask_prob))

  def init(self, setup: SequenceSetup):
    max_len, seed = setup.config.sequence.max_len, setup.config.seed

    def init():
      params = setup.model.init({"params": jax.random.PRNGKey(seed)},
                                jnp.zeros((1, max_len), jnp.int32))
      return optim.init_tree(params, setup.tx)

    return jax.jit(init, out_shardings=NamedSharding(setup.mesh, P()))()

  def make_step(self, setup: SequenceSetup):
    model, tx, n_predict = setup.model, setup.tx, setup.max_predictions

    def step(tree, batch, key):
      loss, grads = jax.value_and_grad(
          lambda p: cloze_loss(model, p, batch, n_predict, train=True, rng=key))(tree["params"])
      tree, norm = optim.apply_gradients(tree, grads, tx)
      return tree, {"loss": loss, "grad_norm": norm}

    replicated = NamedSharding(setup.mesh, P())
    return jax.jit(step, in_shardings=(replicated, sharding_lib.batch_sharding(setup.mesh),
                                       replicated),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))

  def batches(self, setup: SequenceSetup, epoch: int):
    """Users shuffled and masks drawn from (seed, epoch), so a resumed run replays them."""
    s, n = setup.config.sequence, setup.batch_users

    def make():
      rng = np.random.default_rng([setup.config.seed, epoch])
      order = setup.train_users[rng.permutation(len(setup.train_users))]
      for k in range(0, len(order), n):
        yield cloze_batch(setup.sequences, order[k:k + n], rng, s.max_len, s.mask_prob,
                          s.last_mask_prob, setup.store.n_items, n)

    return SizedBatches(make, setup.steps_per_epoch)

  def recommender(self, setup: SequenceSetup, tree, which: str, meta: dict[str, Any]):
    return SequenceRecommender(setup.model, tree["params"], setup.store, setup.split,
                               setup.config, which, meta, sequences=setup.sequences)


FAMILY = SequenceFamily()
