"""A trained BERT4Rec behind the evaluator interface: next-item scores, no ratings.

score_items(users) reads the logits at a [MASK] appended to each user's training sequence
(netrec_jax/data/sequences.py), so neither the validation nor the test item is in the input.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from netrec_jax import sharding as sharding_lib
from netrec_jax.data.sequences import (PAD, Sequences, mask_token, serving_tokens,
                                       training_sequences)
from netrec_jax.data.store import RatingStore
from netrec_jax.models.bert4rec import Bert4Rec


@functools.lru_cache(maxsize=8)
def _scorer(model: Bert4Rec, mesh):
  """Jitted logits at the last position for a user batch sharded over `data`.

  Cached per (model, mesh): validation and the restored best checkpoint reuse one compile.
  """
  replicated = NamedSharding(mesh, P())
  sharding = sharding_lib.batch_sharding(mesh)
  return jax.jit(lambda params, tokens: model.apply(params, tokens)[:, 0],
                 in_shardings=(replicated, sharding), out_shardings=sharding)


class SequenceRecommender:
  """A BERT4Rec model behind the evaluator interface (netrec_jax/eval/evaluator.py).

  score_items(users) reads the logits at a [MASK] appended to each user's training sequence,
  so neither the validation nor the test item is ever in the input. No rating predictions.
  """

  def __init__(self, model: Bert4Rec, params, store: RatingStore, split, config, which: str,
               meta: dict[str, Any], *, scorer=None, sequences: Sequences | None = None):
    self.model, self.params, self.store, self.split, self.config = (model, params, store,
                                                                    split, config)
    self.name = config.model.name
    self.which, self.meta = which, meta
    self.rating_note = ("not applicable: BERT4Rec ranks the next item from the sequence and "
                        "does not predict stars")
    self.cold_rule = "a user with no training items is scored from [MASK] alone"
    self.mesh = sharding_lib.make_mesh(config.mesh)
    self._score = scorer or _scorer(model, self.mesh)
    self.sequences = sequences or training_sequences(store, split.rows("train"),
                                                     config.split.seed)
    self.batch_users = config.eval.user_batch
    self.prediction_note = "ranking scores only (no ratings)"
    self._data_devices = self.mesh.shape[sharding_lib.DATA]

  def predict(self, users: np.ndarray, items: np.ndarray) -> None:
    return None

  def input_tokens(self, users: np.ndarray) -> np.ndarray:
    """The model input used to score `users`: training history, then [MASK]."""
    return serving_tokens(self.sequences, np.asarray(users), self.config.sequence.max_len,
                          self.store.n_items)

  def score_items(self, users: np.ndarray) -> np.ndarray:
    users = np.asarray(users)
    out = []
    for lo in range(0, len(users), self.batch_users):
      tokens = self.input_tokens(users[lo:lo + self.batch_users])
      n = len(tokens)
      padded = -(-n // self._data_devices) * self._data_devices
      tokens = np.pad(tokens, ((0, padded - n), (0, 0)))
      out.append(np.asarray(self._score(self.params, tokens))[:n])
    return (np.concatenate(out) if out
            else np.zeros((0, self.store.n_items), np.float32)).astype(np.float32)

  fold_in_method = ("the given movies, in the order given, as the user's sequence, then "
                    "[MASK]: one encoder pass (BERT4Rec needs no per-user parameters)")

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] next-item scores for a new user who watched `items` (dense indices), in order.

    Stars are not used: BERT4Rec models which movie comes next, not how it is rated.
    """
    items = np.asarray(items, np.int64).reshape(-1)
    if len(items) == 0:
      raise ValueError("fold_in needs at least one movie")
    max_len = self.config.sequence.max_len
    tokens = np.full((self._data_devices, max_len), PAD, np.int32)
    tokens[:, -1] = mask_token(self.store.n_items)
    history = (items[-(max_len - 1):] + 1).astype(np.int32) if max_len > 1 else []
    tokens[:, max_len - 1 - len(history):max_len - 1] = history
    return np.asarray(self._score(self.params, tokens))[0].astype(np.float32)

  def item_vectors(self) -> np.ndarray:
    """The (tied) input/output item embeddings, [n_items, hidden], for similar movies."""
    return np.asarray(self.params["params"]["item_embed"]["embedding"][1:self.store.n_items + 1])
