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


from netrec_jax import configs
from netrec_jax.data import datasets
from netrec_jax.models.content import (PROFILE_WEIGHTINGS)
from netrec_jax.recommenders.content import ContentRecommender, HybridRecommender
from netrec_jax.train.family import Family, check_one_of

MODES = ("content", "hybrid")


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
