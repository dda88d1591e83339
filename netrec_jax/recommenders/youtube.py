"""A trained YouTube DNN behind the evaluator interface: rating head and candidate generator."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from netrec_jax import sharding as sharding_lib
from netrec_jax.data.histories import history_batch
from netrec_jax.eval import evaluator


class YouTubeRecommender:
  """A youtube_dnn model behind the evaluator interface (netrec_jax/eval/evaluator.py).

  predict() is the rating head; score_items() is the candidate generator: the dot product of
  the user vector with every item's softmax vector (plus its bias), i.e. nearest-neighbour
  search by inner product. Items without training ratings were never a target nor a sampled
  negative, so their vectors are untrained: they are ranked last.
  """

  fold_in_method = ("natural fold-in: the user vector is the tower applied to the (weighted) "
                    "mean of the rated movies' history embeddings, with activity features "
                    "from the given stars and demographics at the average user's")

  def __init__(self, s: dict[str, Any], params, config, which: str, meta: dict[str, Any]):
    self._s, self.params, self.config, self.which, self.meta = s, params, config, which, meta
    self.store, self.split, self.model = s["store"], s["split"], s["model"]
    self.name = config.model.name
    self.global_mean = float(s["global_mean"])
    self.rating_note = ""
    self.prediction_note = (f"rating head, clipped to the rating range "
                            f"{list(self.store.rating_range)}")
    self.cold_rule = ("users without training ratings: empty history + side features; items "
                      "without training ratings: untrained item vectors (ranked last)")
    self.trained_items = s["popularity"] > 0
    self._devices = s["mesh"].shape[sharding_lib.DATA]
    self._user_fn, self._rating_fn = s["user_fn"], s["rating_fn"]
    self._user_cache: np.ndarray | None = None
    self._item_cache: tuple[np.ndarray, np.ndarray] | None = None

  # -------------------------------------------------------------------------- vectors
  def _pad(self, n: int) -> int:
    return -(-n // self._devices) * self._devices

  def users_from_batch(self, batch: dict[str, np.ndarray]) -> np.ndarray:
    """User vectors [B, out_dim] of a history batch (padded to the data axis here)."""
    n = batch["history"].shape[0]
    size = self._pad(n)
    padded = {k: np.pad(v, [(0, size - n)] + [(0, 0)] * (v.ndim - 1)) for k, v in batch.items()}
    return np.asarray(jax.device_get(self._user_fn(self.params, padded)))[:n]

  def compute_user_vectors(self, users: np.ndarray, chunk: int = 1024) -> np.ndarray:
    out = []
    for lo in range(0, len(users), chunk):
      batch = history_batch(self._s["hist"], self._s["side"], users[lo:lo + chunk],
                            self._s["eval_width"], self.config.youtube.history_weighting)
      out.append(self.users_from_batch(batch))
    return (np.concatenate(out) if out else
            np.zeros((0, self.config.youtube.out_dim), np.float32))

  def user_vectors(self) -> np.ndarray:
    """[n_users, out_dim] user vectors (the tower's output) from each training history."""
    if self._user_cache is None:
      self._user_cache = self.compute_user_vectors(np.arange(self.store.n_users))
    return self._user_cache

  def _items(self) -> tuple[np.ndarray, np.ndarray]:
    if self._item_cache is None:
      p = jax.device_get(self.params["params"])
      self._item_cache = (np.asarray(p["item_out"]), np.asarray(p["item_out_bias"]))
    return self._item_cache

  def item_vectors(self) -> np.ndarray:
    """[n_items, out_dim] softmax item vectors (the serving index)."""
    return self._items()[0]

  # --------------------------------------------------------------------------- scoring
  def _scores(self, user_vecs: np.ndarray) -> np.ndarray:
    vecs, bias = self._items()
    scores = user_vecs @ vecs.T + bias[None]
    low = scores.min() - 1.0 if scores.size else 0.0
    scores[:, ~self.trained_items] = low
    return scores

  def score_items(self, users: np.ndarray) -> np.ndarray:
    return self._scores(self.user_vectors()[np.asarray(users)])

  def ratings_for_vectors(self, user_vecs: np.ndarray, items: np.ndarray,
                          chunk: int = 65536) -> np.ndarray:
    out = np.empty(len(items), np.float64)
    for lo in range(0, len(items), chunk):
      u, i = user_vecs[lo:lo + chunk], np.asarray(items[lo:lo + chunk], np.int32)
      n = len(i)
      size = self._pad(n)
      pred = self._rating_fn(self.params, np.pad(u, ((0, size - n), (0, 0))),
                             np.pad(i, (0, size - n)))
      out[lo:lo + n] = np.asarray(jax.device_get(pred))[:n]
    return out

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The rating head's stars for (dense user, dense item) pairs."""
    return self.ratings_for_vectors(self.user_vectors()[np.asarray(users)], items)

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] candidate scores for a new user who rated `items` (dense ids) with `stars`."""
    items, stars = evaluator.check_fold_in_input(items, stars, self.store.n_items)
    weighting = self.config.youtube.history_weighting
    weight = {"rating": stars, "centered": stars - stars.mean()}.get(weighting,
                                                                    np.ones_like(stars))
    batch = {"history": items[None].astype(np.int32), "weight": weight[None].astype(np.float32),
             "side": self._s["side"].new_user(stars)}
    return self._scores(self.users_from_batch(batch))[0].astype(np.float32)
