"""Using a trained model: exclusions, fold-in quality, cosine neighbours, analysis, CLI errors.

One tiny biased MF (synthetic, trained in seconds) is shared by the module; a tiny NeuMF checks
the gradient fold-in path and a tiny U-AutoRec the encoder path.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_train import tiny_config

from netrec_jax import use
from netrec_jax.analysis import embeddings as emb
from netrec_jax.recommenders import pair
from netrec_jax.train import loop

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store_root(tmp_path_factory):
  """One synthetic store for every model of this module (built once)."""
  return tmp_path_factory.mktemp("use_stores")


@pytest.fixture(scope="module")
def mf_run(tmp_path_factory, store_root):
  """WORKDIR of a tiny MF trained long enough to have learned the synthetic factors."""
  root = tmp_path_factory.mktemp("use_mf")
  config = tiny_config(store_root, **{"train.epochs": 4, "optimizer.embed_l2": 0.1})
  loop.train_and_evaluate(config, root / "run")
  return root / "run"


@pytest.fixture(scope="module")
def mf(mf_run):
  return use.open_model(mf_run)


def training_items(m, user):
  """The user's training items, from the split's train rows (independent of use.py)."""
  train = m.split.rows("train")
  return set(np.take(m.store.item, train)[np.take(m.store.user, train) == user].tolist())


# ------------------------------------------------------------------------------- recommend
def test_no_training_movie_is_ever_recommended(mf):
  trained = np.bincount(np.take(mf.store.item, mf.split.rows("train")),
                        minlength=mf.store.n_items) > 0
  user_ids = mf.catalog.user_ids[::60][:10].tolist()
  result = use.recommend(None, None, users=user_ids, n=use.MAX_N, opened=mf)
  assert [e["user_id"] for e in result["users"]] == user_ids
  scores = mf.recommender.score_items(use.user_indices(mf, user_ids))
  for row, entry in enumerate(result["users"]):
    user = int(use.user_indices(mf, [entry["user_id"]])[0])
    seen = training_items(mf, user)
    assert len(seen) > 0 and entry["n_training_ratings"] == len(seen)
    recommended = use.movie_indices(mf, [r["movie_id"] for r in entry["recommendations"]])
    assert not seen & set(recommended.tolist())
    # Every other movie with training ratings is listed (n is larger than the catalog) ...
    assert len(recommended) == int(trained.sum()) - len(seen)
    # ... best first, with the model's own scores.
    listed = np.array([r["score"] for r in entry["recommendations"]])
    assert np.all(np.diff(listed) <= 1e-9)
    np.testing.assert_allclose(listed, scores[row, recommended], atol=1e-4)


def test_score_items_equals_pairwise_predictions(mf, neumf):
  """The on-device user x catalog scoring gives the trainer's pairwise predictions."""
  for m in (mf, neumf):
    rec = m.recommender
    users = np.arange(0, m.store.n_users, 37)
    n = m.store.n_items
    pairs = pair.predict_pairs(rec.exp, rec.state, np.repeat(users, n),
                                  np.tile(np.arange(n), len(users))).reshape(len(users), n)
    np.testing.assert_allclose(rec.score_items(users), pairs, atol=1e-5)
    np.testing.assert_allclose(rec.score_items(users[3:4]), pairs[3:4], atol=1e-5)


def test_top_n_is_the_head_of_the_full_list(mf):
  user = int(mf.catalog.user_ids[5])
  full = use.recommend_users(mf, [user], use.MAX_N)[0]["recommendations"]
  head = use.recommend_users(mf, [user], 7)[0]["recommendations"]
  assert [r["movie_id"] for r in head] == [r["movie_id"] for r in full[:7]]
  assert head[0]["title"] and "year" in head[0]


def test_min_ratings_keeps_rare_movies_out(mf):
  k = int(np.median(mf.train_counts[mf.trained_items]))
  frequent = set(np.flatnonzero(mf.train_counts >= k).tolist())
  user_id = int(mf.catalog.user_ids[1])
  user = int(use.user_indices(mf, [user_id])[0])
  recs = use.recommend_users(mf, [user_id], use.MAX_N, min_ratings=k)[0]["recommendations"]
  listed = set(use.movie_indices(mf, [r["movie_id"] for r in recs]).tolist())
  assert listed == frequent - training_items(mf, user)
  movie = int(mf.catalog.movie_ids[0])
  near = use.similar_movies(mf, movie, use.MAX_N, min_ratings=k)["neighbours"]
  assert set(use.movie_indices(mf, [r["movie_id"] for r in near]).tolist()) == frequent - {0}
  with pytest.raises(use.UseError, match="min_ratings"):
    use.similar_movies(mf, movie, 5, min_ratings=0)


def test_unknown_user_ids_are_named(mf):
  missing = int(mf.catalog.user_ids.max()) + 12345
  with pytest.raises(use.UnknownIdError, match=str(missing)):
    use.recommend(None, None, users=[int(mf.catalog.user_ids[0]), missing], opened=mf)
  with pytest.raises(use.UnknownIdError, match="1" * 30):
    use.recommend_users(mf, [int("1" * 30)])
  with pytest.raises(use.UseError, match="not an integer"):
    use.recommend(None, None, users="12,abc", opened=mf)
  with pytest.raises(use.UseError, match="n must be"):
    use.recommend_users(mf, [int(mf.catalog.user_ids[0])], 0)


# -------------------------------------------------------------------------------- fold-in
def percentile_ranks(scores, relevant, candidates):
  """Share of candidates scored above each relevant item (0 = top, 0.5 = random)."""
  pool = scores[candidates]
  return np.array([(pool > scores[i]).mean() for i in relevant])


def test_fold_in_ranks_held_out_movies_far_above_random(mf):
  """Hold out a third of a heavy user's ratings, fold in the rest: liked held-out movies rank
  far above random (0.5), as well as with the vector training learned for that user."""
  rng = np.random.default_rng(0)
  folded, trained = [], []
  for user in np.argsort(-mf.user_train_counts)[:8]:
    rows = mf.store.user_rows(int(user))
    train = np.asarray(mf.split.assignment[rows]) == 0
    items = np.asarray(mf.store.item[rows])[train]
    stars = mf.store.stars(np.arange(rows.start, rows.stop))[train]
    order = rng.permutation(len(items))
    held, given = order[:len(order) // 3], order[len(order) // 3:]
    scores = mf.recommender.fold_in(items[given], stars[given])
    assert scores.shape == (mf.store.n_items,) and np.isfinite(scores).all()
    candidates = mf.trained_items.copy()
    candidates[items[given]] = False
    liked = items[held[stars[held] >= 4]]
    folded.append(percentile_ranks(scores, liked, candidates))
    # The trained vector saw the held-out ratings: a generous reference.
    trained.append(percentile_ranks(mf.recommender.score_items(np.array([user]))[0], liked,
                                    candidates))
  folded, trained = float(np.concatenate(folded).mean()), float(np.concatenate(trained).mean())
  assert folded < 0.4, f"mean percentile rank of held-out liked movies {folded:.3f}"
  assert folded < trained + 0.03, (folded, trained)


def test_fold_in_from_all_ratings_recovers_the_trained_user(mf):
  """The ridge solve minimises the training objective for one user: same ranking."""
  user = int(np.argmax(mf.user_train_counts))
  rows = mf.store.user_rows(user)
  train = np.asarray(mf.split.assignment[rows]) == 0
  items = np.asarray(mf.store.item[rows])[train]
  stars = mf.store.stars(np.arange(rows.start, rows.stop))[train]
  folded = mf.recommender.fold_in(items, stars)
  trained = mf.recommender.score_items(np.array([user]))[0]
  assert np.corrcoef(folded, trained)[0, 1] > 0.9


def test_new_user_never_gets_the_given_movies_back(mf):
  given = {int(mf.catalog.movie_ids[k]): s for k, s in ((0, 5.0), (3, 4.5), (9, 1.0))}
  result = use.recommend(None, None, new_user=given, n=use.MAX_N, opened=mf)["new_user"]
  assert "ridge" in result["method"] and "item factors" in result["method"]
  returned = {r["movie_id"] for r in result["recommendations"]}
  assert not returned & set(given)
  assert len(returned) == int(mf.trained_items.sum()) - len(given)
  assert [g["movie_id"] for g in result["given"]] == list(given)


def test_new_user_bad_input_is_named(mf):
  known = int(mf.catalog.movie_ids[0])
  missing = int(mf.catalog.movie_ids.max()) + 7
  with pytest.raises(use.UnknownIdError, match=str(missing)):
    use.recommend_new_user(mf, {known: 4.0, missing: 3.0})
  with pytest.raises(use.UseError, match="rating range"):
    use.recommend_new_user(mf, {known: 9.0})
  with pytest.raises(use.UseError, match="movie_id:stars"):
    use.parse_new_user("1:5,2")
  with pytest.raises(use.UseError, match="given twice"):
    use.parse_new_user("1:5,1:4")
  assert use.parse_new_user("1:5, 20:3.5") == {1: 5.0, 20: 3.5}
  assert use.parse_new_user([[1, 5], [20, 3.5]]) == {1: 5.0, 20: 3.5}


@pytest.fixture(scope="module")
def neumf(tmp_path_factory, store_root):
  root = tmp_path_factory.mktemp("use_neumf")
  config = tiny_config(store_root, **{"model.name": "neumf", "model.gmf_dim": 8,
                                      "model.mlp_layers": (16, 8), "train.epochs": 1,
                                      "mesh.data": 1, "optimizer.lr": 0.005})
  loop.train_and_evaluate(config, root / "run")
  return use.open_model(root / "run")


def test_gradient_fold_in_follows_the_given_stars(neumf):
  rec = neumf.recommender
  assert "no closed form" in rec.fold_in_method and "Adam steps" in rec.fold_in_method
  items = np.flatnonzero(neumf.trained_items)[:12]
  high = rec.fold_in(items, np.full(len(items), 5.0))
  low = rec.fold_in(items, np.full(len(items), 1.0))
  assert np.isfinite(high).all() and high.shape == (neumf.store.n_items,)
  # A user who loved these movies is predicted to like them more than one who hated them.
  assert high[items].mean() > low[items].mean() + 0.5
  result = use.recommend_new_user(neumf, {int(neumf.catalog.movie_ids[i]): 5.0
                                          for i in items[:3]}, 5)
  assert result["method"] == rec.fold_in_method
  assert not {r["movie_id"] for r in result["recommendations"]} & {
      int(neumf.catalog.movie_ids[i]) for i in items[:3]}


def test_autoencoder_new_user_uses_an_encoder_pass(tmp_path, store_root):
  config = tiny_config(store_root, **{"model.name": "autorec", "model.embed_dim": 64,
                                      "autoencoder.side": "user",
                                      "autoencoder.autorec_hidden": 16,
                                      "train.batch_size": 64, "train.epochs": 1,
                                      "mesh.data": 1})
  loop.train_and_evaluate(config, tmp_path / "run")
  m = use.open_model(tmp_path / "run")
  given = {int(m.catalog.movie_ids[k]): 5.0 for k in (1, 2)}
  result = use.recommend_new_user(m, given, 10)
  assert "encoder pass" in result["method"]
  assert len(result["recommendations"]) == 10
  assert not {r["movie_id"] for r in result["recommendations"]} & set(given)


# ---------------------------------------------------------------------------------- similar
def test_cosine_neighbours_match_brute_force(mf):
  vectors = np.asarray(mf.recommender.item_vectors(), np.float64)
  trained = np.bincount(np.take(mf.store.item, mf.split.rows("train")),
                        minlength=mf.store.n_items) > 0
  for item in (0, 17, 101):
    cosine = np.array([v @ vectors[item] / (np.linalg.norm(v) * np.linalg.norm(vectors[item]))
                       for v in vectors])
    cosine[~trained] = -np.inf
    cosine[item] = -np.inf
    expected = np.argsort(-cosine, kind="stable")[:10]
    result = use.similar_movies(mf, int(mf.catalog.movie_ids[item]), 10)
    assert result["movie"]["movie_id"] == int(mf.catalog.movie_ids[item])
    got = use.movie_indices(mf, [r["movie_id"] for r in result["neighbours"]])
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose([r["cosine"] for r in result["neighbours"]], cosine[expected],
                               atol=1e-5)


def test_similar_rejects_unknown_and_untrained_movies(mf):
  missing = int(mf.catalog.movie_ids.max()) + 3
  with pytest.raises(use.UnknownIdError, match=str(missing)):
    use.similar(None, None, movies=[int(mf.catalog.movie_ids[0]), missing], opened=mf)
  counts = mf.train_counts.copy()
  counts[4] = 0
  untrained = dataclasses.replace(mf, train_counts=counts)
  with pytest.raises(use.UseError, match="no training ratings"):
    use.similar_movies(untrained, int(mf.catalog.movie_ids[4]))
  neighbours = use.similar_movies(untrained, int(mf.catalog.movie_ids[0]), use.MAX_N)
  assert int(mf.catalog.movie_ids[4]) not in {r["movie_id"] for r in neighbours["neighbours"]}


# ---------------------------------------------------------------------------------- analyze
def test_analyze_writes_plots_tables_and_summary(mf, tmp_path):
  written = use.analyze(None, None, tmp_path / "analysis", clusters=4, top_k=5, opened=mf)
  for name in ("item_pca_popularity", "bias_distributions", "item_bias_extremes",
               "user_clusters", "item_biases", "user_clusters_md", "summary"):
    assert written[name].is_file() and written[name].stat().st_size > 0, name
  assert "item_pca_genre" not in written  # synthetic data has no genres
  summary = written["summary"].read_text()
  for path in written.values():
    if path.name != "summary.md":
      assert f"`{path.name}`" in summary
  assert "item_pca_genre.png: not written" in summary
  # The bias table lists the 5 largest item biases, largest first (brute force).
  biases = mf.recommender.biases()["item"]
  largest = np.argsort(-np.where(mf.trained_items, biases, -np.inf))[:5]
  table = written["item_biases"].read_text().split("## Smallest")[0]
  ids = [int(line.split("|")[2]) for line in table.splitlines() if line.startswith("| ")
         and line.split("|")[2].strip().isdigit()]
  assert ids == mf.catalog.movie_ids[largest].tolist()
  assert written["user_clusters_md"].read_text().count("## Cluster") == 4


def test_pca_matches_an_svd_of_the_centred_matrix():
  x = np.random.default_rng(0).normal(size=(50, 6)) * np.array([5, 3, 1, 1, 1, 1])
  coords, share = emb.pca_2d(x)
  from sklearn.decomposition import PCA
  ref = PCA(2).fit(x)
  np.testing.assert_allclose(np.abs(coords), np.abs(ref.transform(x)), atol=1e-8)
  np.testing.assert_allclose(share, ref.explained_variance_ratio_, atol=1e-10)


def test_top_genres_are_the_most_common():
  genres = [["Drama", "War"], ["Comedy"], ["War"], [], None, ["Drama"], ["Drama"]]
  assert emb.top_genres(genres, top=2) == ["Drama", "War"]
  assert emb.top_genres(genres) == ["Drama", "War", "Comedy"]


# -------------------------------------------------------------------------------------- CLI
def test_cli_recommend_json_and_clean_errors(mf_run, mf, tmp_path):
  user = int(mf.catalog.user_ids[0])
  run = lambda *args: subprocess.run([sys.executable, "launch.py", *args], cwd=REPO,
                                     capture_output=True, text=True, timeout=120, check=False)
  ok = run(f"--restore_from={mf_run}", "--mode=recommend", f"--users={user}", "--n=3",
           "--format=json", f"--new_user={int(mf.catalog.movie_ids[0])}:5")
  assert ok.returncode == 0, ok.stderr[-2000:]
  result = json.loads(ok.stdout)
  assert result["users"][0]["user_id"] == user and len(result["users"][0]["recommendations"]) == 3
  assert "ridge" in result["new_user"]["method"]
  bad = run(f"--restore_from={tmp_path / 'no_run'}", "--mode=similar", "--movie=1")
  assert bad.returncode != 0
  assert "no checkpoints here" in bad.stderr and "Traceback" not in bad.stderr
