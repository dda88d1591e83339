"""The content (TF-IDF) model and the content/CF hybrid behind the evaluator interface.

The model is described in netrec_jax/train/content.py, which builds it; its math (TF-IDF,
profiles, cosines) is in netrec_jax/models/content.py.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from netrec_jax.data.store import RatingStore
from netrec_jax.eval import evaluator
from netrec_jax.models.content import (cosine, leave_one_out_cosine, pair_cosine, profile_weights,
                                       rating_matrix, tfidf_matrix)
from netrec_jax.recommenders.trained import one_row


class ContentRecommender:
  """TF-IDF content model behind the evaluator interface (netrec_jax/eval/evaluator.py)."""

  rating_note = ""
  cold_rule = ("movies with no training ratings are scored from their metadata; users with "
               "no training ratings get the global mean (empty profile)")
  fold_in_method = ("natural fold-in: the new user's profile is the centred-rating-weighted "
                    "mean of the given movies' TF-IDF vectors; scores are calibrated cosines")

  def __init__(self, store: RatingStore, split, config, calibration: dict[str, float] | None
               = None, name: str = "content"):
    cfg = config.content
    self.store, self.split, self.config, self.name = store, split, config, name
    self.vectors, self.vocab = tfidf_matrix(store, cfg)
    train = split.rows("train")
    self.ratings = rating_matrix(store, train)
    self.weights = profile_weights(self.ratings, cfg.profile_weighting)
    self.profiles = (self.weights @ self.vectors).tocsr()  # unnormalised; cosine normalises
    counts = np.diff(self.ratings.indptr)
    sums = np.asarray(self.ratings.sum(1)).ravel()
    self.global_mean = float(sums.sum() / max(counts.sum(), 1))
    k = float(cfg.user_mean_shrinkage)
    self.user_mean = (sums + k * self.global_mean) / np.maximum(counts + k, 1e-9)
    self.item_counts = np.diff(self.ratings.tocsc().indptr)
    self.calibration = calibration or self.fit_calibration()

  def fit_calibration(self) -> dict[str, float]:
    """(a, b) of stars - m_u = a + b cos on training ratings, all leave-one-out."""
    ratings, weights = self.ratings.tocoo(), self.weights
    users, items, stars = ratings.row, ratings.col, ratings.data
    w = np.asarray(weights[users, items]).ravel()
    sim = leave_one_out_cosine(weights @ self.vectors, self.vectors, w, users, items)
    counts = np.diff(self.ratings.indptr)[users]
    sums = np.asarray(self.ratings.sum(1)).ravel()[users]
    k = float(self.config.content.user_mean_shrinkage)
    loo_mean = (sums - stars + k * self.global_mean) / np.maximum(counts - 1 + k, 1e-9)
    design = np.stack([np.ones_like(sim), sim], 1)
    (a, b), *_ = np.linalg.lstsq(design, stars - loo_mean, rcond=None)
    return {"intercept": float(a), "slope": float(b), "n_fit": int(len(stars))}

  def _stars(self, mean: np.ndarray, sim: np.ndarray) -> np.ndarray:
    return mean + self.calibration["intercept"] + self.calibration["slope"] * sim

  def similarity(self, users: np.ndarray) -> np.ndarray:
    """[len(users), n_items] cosines of the users' profiles with every movie."""
    return cosine(self.profiles[np.asarray(users)], self.vectors)

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    users, items = np.asarray(users), np.asarray(items)
    sim = pair_cosine(self.profiles, self.vectors, users, items)
    return self._stars(self.user_mean[users], sim)

  def score_items(self, users: np.ndarray) -> np.ndarray:
    users = np.asarray(users)
    return self._stars(self.user_mean[users][:, None], self.similarity(users))

  def item_vectors(self) -> np.ndarray:
    """[n_items, V] TF-IDF rows (unit length; 0 for a movie without metadata)."""
    return self.vectors.toarray().astype(np.float32)

  def user_vectors(self) -> np.ndarray:
    """[n_users, V] taste profiles, unit length (0 for a user without training ratings)."""
    from sklearn.preprocessing import normalize
    return normalize(self.profiles).toarray().astype(np.float32)

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] calibrated scores for a new user who rated `items` (dense ids) `stars`."""
    items, stars = evaluator.check_fold_in_input(items, stars, self.store.n_items)
    row = one_row(items, stars, self.store.n_items)
    profile = profile_weights(row, self.config.content.profile_weighting) @ self.vectors
    k = float(self.config.content.user_mean_shrinkage)
    mean = (stars.sum() + k * self.global_mean) / (len(stars) + k)
    return self._stars(np.array([mean])[:, None], cosine(sp.csr_matrix(profile),
                                                         self.vectors))[0]


class HybridRecommender:
  """Content for movies with few or no training ratings, a CF model for the others."""

  def __init__(self, content: ContentRecommender, cf, shrinkage: float, cf_run: str,
               name: str = "content_hybrid"):
    if cf.predict(np.zeros(1, np.int64), np.zeros(1, np.int64)) is None:
      raise ValueError(f"hybrid: the CF model {cf.name} does not predict ratings (implicit); "
                       "use an explicit-feedback run (e.g. mf)")
    self.content, self.cf, self.name, self.cf_run = content, cf, name, cf_run
    self.store, self.split = content.store, content.split
    self.rating_note = ""
    n = content.item_counts.astype(np.float64)
    # CF weight per movie: 0 without training ratings, -> 1 as ratings accumulate.
    self.cf_weight = np.where(n > 0, n / np.maximum(n + shrinkage, 1e-12), 0.0)
    self.cold_rule = (f"per movie: CF weight n_i / (n_i + {shrinkage:g}) with n_i its "
                      "training ratings, content for the rest (pure content for unrated movies)")
    self.fold_in_method = content.fold_in_method + "; CF model's fold-in for the CF part"

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    alpha = self.cf_weight[np.asarray(items)]
    return (alpha * np.asarray(self.cf.predict(users, items), np.float64)
            + (1 - alpha) * self.content.predict(users, items))

  def score_items(self, users: np.ndarray) -> np.ndarray:
    alpha = self.cf_weight[None]
    return (alpha * np.asarray(self.cf.score_items(users), np.float64)
            + (1 - alpha) * self.content.score_items(users))

  def item_vectors(self) -> np.ndarray:
    return self.content.item_vectors()

  def user_vectors(self) -> np.ndarray:
    return self.content.user_vectors()

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    content = self.content.fold_in(items, stars)
    if not hasattr(self.cf, "fold_in"):
      return content
    return self.cf_weight * np.asarray(self.cf.fold_in(items, stars)) + (
        1 - self.cf_weight) * content
