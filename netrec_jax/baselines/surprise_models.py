"""Surprise (SVD, SVD++, BaselineOnly, KNNWithMeans) fed straight from the store.

We build Surprise's Trainset from the training rows directly (no CSV round trip, no pandas):
raw ids are our dense indices, so inner ids equal them. Surprise keeps every rating as Python
objects (about 0.25 KB each across its user and item lists), so we refuse sizes that would
not fit in memory, with the reason, before building anything.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import numpy as np

from netrec_jax.data.store import RatingStore

ALGORITHMS = ("SVD", "SVDpp", "BaselineOnly", "KNNWithMeans")
BYTES_PER_RATING = 250  # measured order of magnitude for Surprise's ur + ir lists


class TooLargeError(MemoryError):
  pass


def _available_bytes() -> int:
  try:
    with open("/proc/meminfo") as f:
      info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    return info.get("MemAvailable", info["MemTotal"])
  except OSError:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_size(n_ratings: int, algorithm: str, available: int | None = None) -> None:
  """Raises TooLargeError when Surprise would need more than half the available memory."""
  need = n_ratings * BYTES_PER_RATING * (3 if algorithm == "KNNWithMeans" else 1)
  available = _available_bytes() if available is None else available
  if need > available // 2:
    raise TooLargeError(
        f"Surprise {algorithm} on {n_ratings:,} ratings needs about {need / 2**30:.1f} GiB of "
        f"Python objects; {available / 2**30:.1f} GiB are available. Surprise keeps every "
        "rating as Python objects: use a smaller split or our JAX MF/ALS at this size.")


def build_trainset(store: RatingStore, rows: np.ndarray):
  """Surprise Trainset of `rows`; raw ids are our dense indices, inner ids 0..n-1 of those seen.

  Returns (trainset, user_inner, item_inner): dense index -> inner id, -1 if not in training.
  Surprise's Cython sizes arrays by the number of users/items it knows, so inner ids must be
  contiguous (dense indices of a training subset are not).
  """
  from surprise import Trainset
  users, items = np.take(store.user, rows), np.take(store.item, rows)
  user_inner = np.full(store.n_users, -1, np.int64)
  item_inner = np.full(store.n_items, -1, np.int64)
  seen_users, seen_items = np.unique(users), np.unique(items)
  user_inner[seen_users] = np.arange(len(seen_users))
  item_inner[seen_items] = np.arange(len(seen_items))
  stars = store.stars(rows).astype(np.float64).tolist()
  ur, ir = defaultdict(list), defaultdict(list)
  for u, i, r in zip(user_inner[users].tolist(), item_inner[items].tolist(), stars):
    ur[u].append((i, r))
    ir[i].append((u, r))
  trainset = Trainset(ur, ir, len(seen_users), len(seen_items), len(rows), store.rating_range,
                      {int(raw): k for k, raw in enumerate(seen_users)},
                      {int(raw): k for k, raw in enumerate(seen_items)})
  return trainset, user_inner, item_inner


class SurpriseRecommender:
  """A fitted Surprise algorithm behind the evaluator interface."""

  def __init__(self, algorithm: str, params: dict[str, Any] | None = None, name: str = ""):
    if algorithm not in ALGORITHMS:
      raise ValueError(f"unknown Surprise algorithm {algorithm!r}; expected one of {ALGORITHMS}")
    self.algorithm, self.params = algorithm, dict(params or {})
    self.name = name or f"surprise_{algorithm}"
    self.rating_note = ""
    self.cold_rule = "Surprise: unknown user/item terms dropped (global mean + known bias)"

  def fit(self, store: RatingStore, rows: np.ndarray) -> "SurpriseRecommender":
    import surprise
    check_size(len(rows), self.algorithm)
    self.trainset, self.user_inner, self.item_inner = build_trainset(store, rows)
    params = dict(self.params)
    if self.algorithm == "KNNWithMeans":
      params.setdefault("sim_options", {"name": "pearson_baseline", "user_based": False})
      params.setdefault("verbose", False)
    if self.algorithm == "BaselineOnly":
      params.setdefault("verbose", False)
    self.algo = getattr(surprise, self.algorithm)(**params)
    self.algo.fit(self.trainset)
    self.n_items = store.n_items
    return self

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    if self.algorithm in ("SVD", "BaselineOnly"):
      return self._predict_vectorised(users, items)
    # SVD++ and KNN need Surprise's own estimate (implicit sums, neighbourhoods).
    return np.array([self.algo.predict(int(u), int(i), clip=False).est
                     for u, i in zip(users, items)])

  def _predict_vectorised(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Surprise's estimate for SVD/BaselineOnly in numpy: mu + b_u + b_i + <p_u, q_i>."""
    algo, ts = self.algo, self.trainset
    u, i = self.user_inner[users], self.item_inner[items]
    known_u, known_i = u >= 0, i >= 0
    u, i = np.maximum(u, 0), np.maximum(i, 0)
    bu, bi = (algo.compute_baselines() if self.algorithm == "BaselineOnly"
              else (algo.bu, algo.bi))
    est = (ts.global_mean + np.where(known_u, np.asarray(bu)[u], 0.0)
           + np.where(known_i, np.asarray(bi)[i], 0.0))
    if self.algorithm == "SVD":
      dot = np.einsum("nk,nk->n", algo.pu[u], algo.qi[i])
      est = est + np.where(known_u & known_i, dot, 0.0)
    return est

  def score_items(self, users: np.ndarray) -> np.ndarray:
    items = np.arange(self.n_items)
    return np.stack([self.predict(np.full(self.n_items, u), items) for u in users])
