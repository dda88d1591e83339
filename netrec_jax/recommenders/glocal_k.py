"""A trained GLocal-K (netrec_jax/models/glocal_k.py) behind the evaluator's interface.

The model reconstructs the whole items x users training matrix in one forward pass, so the
reconstruction is computed once (on the devices, item rows sharded as in training) and kept
on the host: a prediction is a lookup, a user's full-catalog scores a column of it.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from netrec_jax.models.glocal_k import GLocalK
from netrec_jax.recommenders.trained import Trained


class GLocalKRecommender:
  """reconstruction [n_items, n_users] of the training matrix by the pre-training network
  (a checkpoint from the pre-training epochs) or the fine-tuning one."""

  rating_note = ""
  cold_rule = "training mean for a user or item with no training rating"

  def __init__(self, model: GLocalK, params, ratings: jax.Array, finetuned: bool, *, store,
               split, config, global_mean: float, which: str, meta: dict[str, Any]):
    self.model, self.store, self.split, self.config = model, store, split, config
    self.name, self.which, self.meta = config.model.name, which, meta
    self.finetuned = bool(finetuned)
    self.global_mean = float(global_mean)
    self.prediction_note = (f"clipped to the rating range {list(store.rating_range)}; "
                            f"{'fine-tuned' if self.finetuned else 'pre-trained'} network")
    self.trained = Trained.from_rows(store, split.rows("train"))
    self._params, self._ratings = params, ratings
    full = reconstruct(model, params, ratings, self.finetuned)
    self.reconstruction = np.asarray(jax.device_get(full))[:store.n_items]
    self._item_codes = None

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    pred = self.reconstruction[items, users].astype(np.float64)
    return self.trained.fill_pairs(pred, users, items, self.global_mean)

  def score_items(self, users: np.ndarray) -> np.ndarray:
    scores = self.reconstruction[:, np.asarray(users, np.int64)].T.astype(np.float32)
    return self.trained.fill_scores(scores, users, self.global_mean)

  def item_vectors(self) -> np.ndarray:
    """[n_items, hidden] each movie's code (the last sigmoid layer) for similar-movie search."""
    if self._item_codes is None:
      codes = item_codes(self.model, self._params, self._ratings, self.finetuned)
      self._item_codes = np.asarray(jax.device_get(codes))[:self.store.n_items]
    return self._item_codes


@functools.partial(jax.jit, static_argnums=(0, 3))
def reconstruct(model: GLocalK, params, ratings: jax.Array, finetune: bool) -> jax.Array:
  """The model's reconstruction of `ratings` (jitted once per model and phase)."""
  return model.apply(params, ratings, finetune)


@functools.partial(jax.jit, static_argnums=(0, 3))
def item_codes(model: GLocalK, params, ratings: jax.Array, finetune: bool) -> jax.Array:
  return model.apply(params, ratings, finetune, method=GLocalK.codes)
