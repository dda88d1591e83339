"""Content-based filtering: TF-IDF over movie metadata, cosine to a user's taste profile.

Each movie becomes a TF-IDF vector (scikit-learn's TfidfVectorizer) over its metadata, one
block per field, each block L2-normalised, weighted (content.*_weight), then the whole row
normalised again:
  title   words of the title without the "(1995)" suffix, English stop words dropped
  year    "year_1995" and "decade_1990s" (Netflix and MovieLens both have years)
  genres  one token per genre (MovieLens; the Netflix files have none)
  tags    one token per tag, when the store's items table has a `tags` column
A user's profile is the weighted mean of the vectors of the movies they rated in training,
weights = stars minus the user's mean ("centered": disliked movies pull away) or the stars
themselves ("rating"); scores are cosines between profile and movie. No rating of a movie is
needed to score it, which is the point: movies with no training ratings still get scores.

Ratings: predict() = m_u + a + b * cos(u, i), with m_u the user's mean shrunk toward the global
mean and (a, b) fitted by least squares on the training ratings with leave-one-out cosines
(each rating's own movie removed from the profile) and leave-one-out means, so the calibration
never sees the rating it predicts. score_items() returns the same calibrated stars.

Hybrid (content.mode = "hybrid"): a CF model (content.cf_run, a trained run's workdir, or
content.cf_model trained on the fly into WORKDIR/cf) and the content model mixed per movie,
CF weight n_i / (n_i + content.hybrid_shrinkage) with n_i the movie's training ratings: a
movie nobody rated in training gets pure content, a popular one (almost) pure CF.

Nothing is learned by gradient descent, so there are no orbax checkpoints: WORKDIR/
saved_model.json (written by the loop) keeps the config, store fingerprint, vocabulary sizes
and calibration, and load_recommender rebuilds the (deterministic) TF-IDF matrix from the
store.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from netrec_jax import configs
from netrec_jax.data import datasets
from netrec_jax.data.store import RatingStore
from netrec_jax.models.content import (PROFILE_WEIGHTINGS, cosine, leave_one_out_cosine,
                                       pair_cosine, profile_weights, rating_matrix,
                                       tfidf_matrix)
from netrec_jax.eval import evaluator
from netrec_jax.train.family import Family, check_one_of

MODES = ("content", "hybrid")


# ---------------------------------------------------------------------------- recommender
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
    row = sp.csr_matrix((stars, (np.zeros(len(items), int), items)),
                        shape=(1, self.store.n_items))
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


# ------------------------------------------------------------------------------ the family
def _cf_recommender(config, workdir: Path, cf_run: str | None, runs):
  """The hybrid's CF model: restored from cf_run, else trained into WORKDIR/cf once.

  `runs` (train, load) is the loop's, handed in: the hybrid trains its CF model as any run
  is trained, and this module never imports the loop."""
  if cf_run:
    run = Path(cf_run)
    recommender = runs.load(run)
  else:
    run = workdir / "cf"
    name = config.content.cf_model
    cf_config = (configs.load_experiment(name) if configs.is_experiment(name)
                 else configs.base_config())
    with cf_config.unlocked():
      for section in ("data", "split", "mesh", "eval"):
        cf_config[section] = copy.deepcopy(config[section])
      cf_config.seed = config.seed
      if not configs.is_experiment(name):
        cf_config.model.name = name
      cf_config.name = f"{config.name}_cf"
      cf_config.eda = False
    if cf_config.model.name == "content":
      raise ValueError("content.cf_model must be a CF model (e.g. mf), not content")
    if not (run / "final_metrics.json").is_file():
      runs.train(cf_config, run)
    recommender = runs.load(run)
  return recommender, str(run.resolve())


def build(config, workdir: str | os.PathLike, saved: dict[str, Any] | None = None,
          runs=None):
  """The content (or hybrid) recommender of config; `saved` = the run's saved_model.json."""
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  if split is None:
    raise ValueError("content needs a split (split.kind must not be 'none')")
  if len(split.rows("train")) == 0:
    raise ValueError(f"split {split.name} has no training ratings")
  content = ContentRecommender(store, split, config,
                               calibration=saved["calibration"] if saved else None)
  if saved and saved["vocabulary"] != content.vocab:
    raise ValueError(f"{workdir}: saved vocabulary sizes {saved['vocabulary']} differ from "
                     f"the rebuilt {content.vocab} (different metadata or settings)")
  if config.content.mode == "content":
    return content
  cf_run = saved["cf_run"] if saved else (config.content.cf_run or None)
  cf, cf_run = _cf_recommender(config, Path(workdir), cf_run, runs)
  if cf.store.fingerprint != store.fingerprint or cf.split.name != split.name:
    raise ValueError(f"hybrid: CF run {cf_run} was trained on {cf.store.name}/{cf.split.name}, "
                     f"not {store.name}/{split.name}")
  return HybridRecommender(content, cf, config.content.hybrid_shrinkage, cf_run)


def _content_of(recommender) -> ContentRecommender:
  return recommender.content if isinstance(recommender, HybridRecommender) else recommender


class ContentFamily(Family):
  """TF-IDF content filtering: nothing is trained, so no checkpoints; the saved file keeps
  what rebuilds the model exactly (config, store fingerprint, vocabulary, calibration)."""

  name = "content"
  models = ("content",)
  reads = ("content",)
  architecture_keys = ("content",)
  trains = False

  def check(self, config) -> None:
    cfg = config.content
    check_one_of(config, "content.mode", MODES)
    check_one_of(config, "content.profile_weighting", PROFILE_WEIGHTINGS)
    if cfg.hybrid_shrinkage < 0 or cfg.user_mean_shrinkage < 0:
      raise ValueError("content.hybrid_shrinkage and content.user_mean_shrinkage must be >= 0")
    if min(cfg.title_weight, cfg.year_weight, cfg.genre_weight, cfg.tag_weight) < 0:
      raise ValueError("content.*_weight must be >= 0")

  def fit(self, config, workdir: Path, runs) -> dict[str, Any]:
    """Builds the TF-IDF model (and the hybrid's CF model); what rebuilds it, for the loop
    to save as the run's model file."""
    recommender = build(config, workdir, runs=runs)
    content = _content_of(recommender)
    saved = {"config": config.to_dict(), "store_fingerprint": recommender.store.fingerprint,
             "split": recommender.split.name, "protocol": recommender.split.protocol,
             "vocabulary": content.vocab, "calibration": content.calibration,
             "cf_run": getattr(recommender, "cf_run", None), "epoch": 0, "step": 0}
    return saved

  def load(self, workdir, config, saved: dict[str, Any], runs):
    """The saved model of a content run, rebuilt from the store (deterministic)."""
    recommender = build(config, workdir, saved, runs)
    if recommender.store.fingerprint != saved["store_fingerprint"]:
      raise ValueError(f"{workdir}: built on store "
                       f"{saved['store_fingerprint']}, but the config now builds "
                       f"{recommender.store.fingerprint}")
    recommender.which, recommender.meta = "saved", {"epoch": 0, "step": 0}
    recommender.config = config
    content = _content_of(recommender)
    recommender.facts = {"vocabulary": content.vocab, "calibration": content.calibration}
    recommender.prediction_note = (f"calibrated stars, clipped to the rating range "
                                   f"{list(recommender.store.rating_range)}")
    return recommender


FAMILY = ContentFamily()
