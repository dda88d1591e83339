"""Content-based filtering: TF-IDF cosines, taste profiles, cold movies, the hybrid, buckets."""

import json

import numpy as np
import pyarrow as pa
import pytest

from netrec_jax import configs
from netrec_jax.data.builder import StoreBuilder
from netrec_jax.data.splits import TEST, TRAIN, Split
from netrec_jax.eval import cold_start, evaluator
from netrec_jax.train import loop  # noqa: F401
from netrec_jax.recommenders import content as content_rec

N_USERS, N_ITEMS = 60, 40
COLD = np.array([3, 4, 23, 24])  # movies whose every rating is a test rating


@pytest.fixture(scope="module")
def genre_store(tmp_path_factory):
  """Movies 0-19 are Action, 20-39 Romance; even users love Action, odd users Romance."""
  rng = np.random.default_rng(0)
  users, items, stars = [], [], []
  for u in range(N_USERS):
    for i in rng.choice(N_ITEMS, 24, replace=False):
      likes = (i < 20) == (u % 2 == 0)
      users.append(u + 1)
      items.append(i + 1)
      stars.append(int(np.clip(rng.normal(4.5 if likes else 1.8, 0.5), 1, 5).round()))
  titles = [f"{'Fast' if i < 20 else 'Love'} Story {i} (199{i % 10})" for i in range(N_ITEMS)]
  info = pa.table({"original_id": pa.array(np.arange(1, N_ITEMS + 1), pa.int64()),
                   "title": titles,
                   "year": pa.array([1990 + i % 10 for i in range(N_ITEMS)], pa.int32()),
                   "genres": [["Action"] if i < 20 else ["Romance", "Drama"]
                              for i in range(N_ITEMS)]})
  dest = tmp_path_factory.mktemp("genres") / "store"
  with StoreBuilder(dest, name="genres") as builder:
    builder.add(np.array(users), np.array(items), np.array(stars, np.int32),
                np.arange(len(users), dtype=np.int32))
    builder.set_item_info(info)
    store = builder.finish()
  return store


@pytest.fixture(scope="module")
def split(genre_store):
  """Test = every rating of the COLD movies plus a seeded 10% of the rest."""
  store = genre_store
  rng = np.random.default_rng(1)
  assignment = np.where(rng.random(store.n_ratings) < 0.1, TEST, TRAIN).astype(np.int8)
  assignment[np.isin(np.asarray(store.item), COLD)] = TEST
  return Split(name="cold_test", protocol="cold_test", assignment=assignment, params={})


def content_config(**content):
  config = configs.base_config()
  config.model.name = "content"
  config.content.update(content)
  return config


def test_scores_match_a_brute_force_cosine(genre_store, split):
  model = content_rec.ContentRecommender(genre_store, split, content_config())
  x = model.vectors.toarray()
  np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-9)
  # Brute force: profile = sum of (stars - user mean) * vector over the user's training movies.
  train = split.rows("train")
  users = np.take(genre_store.user, train)
  items = np.take(genre_store.item, train)
  stars = genre_store.stars(train).astype(np.float64)
  expected = np.zeros((N_USERS, N_ITEMS))
  for u in range(N_USERS):
    mine = users == u
    profile = ((stars[mine] - stars[mine].mean())[:, None] * x[items[mine]]).sum(0)
    for i in range(N_ITEMS):
      expected[u, i] = profile @ x[i] / (np.linalg.norm(profile) * np.linalg.norm(x[i]))
  np.testing.assert_allclose(model.similarity(np.arange(N_USERS)), expected, atol=1e-9)
  # score_items are calibrated stars: monotone in the cosine, and predict() agrees with them.
  scores = model.score_items(np.arange(N_USERS))
  assert model.calibration["slope"] > 0
  np.testing.assert_allclose(scores, model.user_mean[:, None] + model.calibration["intercept"]
                             + model.calibration["slope"] * expected, atol=1e-9)
  np.testing.assert_allclose(model.predict(np.array([0, 1, 2]), np.array([5, 25, 0])),
                             scores[[0, 1, 2], [5, 25, 0]], atol=1e-9)


def test_a_users_profile_points_at_what_they_liked(genre_store, split):
  model = content_rec.ContentRecommender(genre_store, split, content_config())
  profiles = model.user_vectors()
  x = model.item_vectors()
  assert profiles.shape[0] == N_USERS and x.shape == (N_ITEMS, profiles.shape[1])
  action, romance = x[:20].mean(0), x[20:].mean(0)
  # Even users love Action: their profile is closer to Action than to Romance; odd users not.
  assert (profiles[0::2] @ action > profiles[0::2] @ romance).all()
  assert (profiles[1::2] @ romance > profiles[1::2] @ action).all()
  # A new user who loved two Action movies and hated a Romance: Action movies come first.
  scores = model.fold_in(np.array([0, 1, 30]), np.array([5.0, 5.0, 1.0]))
  assert scores[2:20].min() > scores[20:].max()
  with pytest.raises(ValueError, match="movies but"):
    model.fold_in(np.array([0, 1]), np.array([5.0]))


def test_cold_movies_get_content_scores_that_cf_cannot_give(genre_store, split):
  pytest.importorskip("surprise")
  from netrec_jax.baselines.surprise_models import SurpriseRecommender
  model = content_rec.ContentRecommender(genre_store, split, content_config())
  data = evaluator.prepare(genre_store, split, relevance_threshold=4.0)
  assert (data.item_popularity[COLD] == 0).all()
  cf = SurpriseRecommender("SVD", {"random_state": 0}, name="surprise_svd").fit(
      genre_store, data.train_rows)
  users = np.arange(N_USERS)
  # CF has nothing on cold movies: every one gets the same score for a given user.
  cf_scores = cf.score_items(users)[:, COLD]
  np.testing.assert_allclose(cf_scores, cf_scores[:, :1].repeat(len(COLD), 1))
  # Content orders them by taste: Action lovers rank the cold Action movies above the Romance.
  content_scores = model.score_items(users)[:, COLD]
  assert (content_scores[0::2, :2].min(1) > content_scores[0::2, 2:].max(1)).all()
  assert (content_scores[1::2, 2:].min(1) > content_scores[1::2, :2].max(1)).all()
  # The bucket report says the same: cold-bucket AUC high for content, 0.5-ish for CF.
  rows = {(r["model"], r["bucket"]): r for r in cold_start.breakdown([model, cf], data)}
  assert rows[("content", "0")]["n_test"] == int(np.isin(
      np.take(genre_store.item, data.test_rows), COLD).sum())
  # A relevant cold movie beats every unrated movie of the other genre and about half of its
  # own (same genre tokens): AUC near 0.75 or more. CF's tied cold scores sit near 0.5.
  assert rows[("content", "0")]["auc"] > 0.75
  assert rows[("surprise_svd", "0")]["auc"] < 0.6
  assert rows[("content", "0")]["rmse"] < rows[("surprise_svd", "0")]["rmse"]


def test_hybrid_uses_content_for_cold_movies_and_cf_for_warm_ones(genre_store, split):
  pytest.importorskip("surprise")
  from netrec_jax.baselines.surprise_models import SurpriseRecommender
  model = content_rec.ContentRecommender(genre_store, split, content_config())
  cf = SurpriseRecommender("SVD", {"random_state": 0}).fit(genre_store, split.rows("train"))
  hybrid = content_rec.HybridRecommender(model, cf, shrinkage=0.0, cf_run="(in memory)")
  users = np.repeat(np.arange(N_USERS), N_ITEMS)
  items = np.tile(np.arange(N_ITEMS), N_USERS)
  cold = np.isin(items, COLD)
  pred = hybrid.predict(users, items)
  np.testing.assert_allclose(pred[cold], model.predict(users[cold], items[cold]))
  np.testing.assert_allclose(pred[~cold], cf.predict(users[~cold], items[~cold]))
  scores = hybrid.score_items(np.arange(5))
  np.testing.assert_allclose(scores[:, COLD], model.score_items(np.arange(5))[:, COLD])
  warm = np.setdiff1d(np.arange(N_ITEMS), COLD)
  np.testing.assert_allclose(scores[:, warm], cf.score_items(np.arange(5))[:, warm])
  # With shrinkage the CF weight grows with the movie's training ratings.
  soft = content_rec.HybridRecommender(model, cf, shrinkage=5.0, cf_run="(in memory)")
  counts = model.item_counts
  order = np.argsort(counts)
  assert (np.diff(soft.cf_weight[order]) >= 0).all() and soft.cf_weight[COLD].max() == 0


def test_family_functions_round_trip(tmp_path):
  """content through train_and_evaluate / load_recommender / evaluate_checkpoint (synthetic)."""
  config = content_config()
  config.data.store_root = str(tmp_path / "stores")
  config.data.synthetic.update(n_users=150, n_items=60, n_ratings=4000)
  config.data.min_user_ratings = 5
  config.split.kind = "random"
  trained = loop.train_and_evaluate(config, tmp_path / "run")
  assert trained["protocol"] == "random_90_10_seed0"
  assert set(trained["vocabulary"]) == {"title", "year"}  # synthetic movies: no genres
  ev = loop.evaluate_checkpoint(config, tmp_path / "run", tmp_path / "eval")
  assert ev["test"] == trained["test"]
  assert ev["test"]["ndcg@10"] == trained["test"]["ndcg@10"]
  on_disk = json.loads((tmp_path / "eval" / "final_metrics.json").read_text())
  assert on_disk["test"]["rmse"] == pytest.approx(trained["test"]["rmse"])
  other = content_config(genre_weight=2.0)
  other.data = config.data
  with pytest.raises(ValueError, match="content.genre_weight: checkpoint 1.0, config 2.0"):
    loop.load_recommender(tmp_path / "run", other)
  with pytest.raises(ValueError, match="content.mode"):
    loop.train_and_evaluate(content_config(mode="blend"), tmp_path / "bad")
