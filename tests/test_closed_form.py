"""Closed-form top-N models (EASE, item-kNN, RP3beta): each fitted matrix against a dense
numpy computation of its formula written another way, fold-in, the saved-model round trip
through the loop, the config refusals and the use modes."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import assert_use_modes, damaged_copy, tiny_run_config
from netrec_jax import config_checks, configs
from netrec_jax.data.row_batches import interaction_matrix
from netrec_jax.models import ease as ease_lib
from netrec_jax.models import neighbors
from netrec_jax.train import checkpoint as ckpt_lib
from netrec_jax.train import closed_form, family, loop

MODELS = ("ease", "item_knn", "rp3beta")


def random_binary(n_users=60, n_items=25, density=0.2, seed=0):
  rng = np.random.default_rng(seed)
  dense = (rng.random((n_users, n_items)) < density).astype(np.float64)
  dense[:, 3] = 0.0  # an item nobody interacted with
  return dense, sp.csr_matrix(dense)


def dense_top_k(values, k, axis):
  """k largest nonzero entries per column (axis=0) or row (axis=1) of the float32 values,
  ties to the lower index."""
  values = values.astype(np.float32)
  values = values if axis == 1 else values.T
  out = np.zeros_like(values)
  for r, row in enumerate(values):
    order = np.lexsort((np.arange(len(row)), -row))
    chosen = [j for j in order if row[j] != 0][:k]
    out[r, chosen] = row[chosen]
  return out if axis == 1 else out.T


# ------------------------------------------------------------------------- the formulas
@pytest.mark.parametrize("dtype,rtol", [("float32", 2e-4), ("float64", 1e-10)])
def test_ease_equals_dense_inverse(dtype, rtol):
  dense, x = random_binary()
  g = ease_lib.gram(x, dtype, block_items=7)  # several column blocks
  np.testing.assert_array_equal(g, dense.T @ dense)
  lam = 3.0
  b = ease_lib.fit(g, lam, dtype)
  assert b.dtype == np.dtype(dtype)
  p = np.linalg.inv(dense.T @ dense + lam * np.eye(dense.shape[1]))
  expected = np.eye(len(p)) - p @ np.diag(1.0 / np.diag(p))
  np.testing.assert_array_equal(np.diag(b), 0.0)
  np.testing.assert_allclose(b, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
  np.testing.assert_allclose(np.diag(expected), 0.0, atol=1e-12)  # the formula's own diag


@pytest.mark.parametrize("normalize,shrink", [(True, 10.0), (True, 0.0), (False, 5.0)])
def test_item_knn_equals_dense_cosine_with_shrinkage(normalize, shrink):
  dense, x = random_binary(seed=1)
  k = 4
  w = neighbors.item_knn(x, k=k, shrink=shrink, normalize=normalize, block=6)
  dots = dense.T @ dense
  np.fill_diagonal(dots, 0.0)
  norms = np.linalg.norm(dense, axis=0)
  if normalize:
    sim = dots / (np.outer(norms, norms) + shrink + 1e-6)
  else:
    sim = dots / shrink
  expected = dense_top_k(sim, k, axis=0)  # per target item (column), as the reference code
  np.testing.assert_allclose(w.toarray(), expected, rtol=1e-6, atol=1e-7)
  assert (np.diff(sp.csc_matrix(w).indptr) <= k).all()


@pytest.mark.parametrize("alpha,beta,normalize", [(1.0, 0.6, True), (0.8, 0.3, True),
                                                  (1.0, 0.0, False)])
def test_rp3beta_equals_dense_formula(alpha, beta, normalize):
  dense, x = random_binary(seed=2)
  k = 5
  w = neighbors.rp3beta(x, alpha=alpha, beta=beta, k=k, normalize=normalize, block=6)
  user_deg = dense.sum(1, keepdims=True)
  item_deg = dense.sum(0)
  p_ui = np.divide(dense, user_deg, out=np.zeros_like(dense), where=user_deg > 0) ** alpha
  p_iu = np.divide(dense.T, item_deg[:, None], out=np.zeros_like(dense.T),
                   where=item_deg[:, None] > 0) ** alpha
  pop_discount = np.where(item_deg > 0, np.maximum(item_deg, 1) ** -beta, 0.0)
  walk = (p_iu @ p_ui) * pop_discount[None, :]
  np.fill_diagonal(walk, 0.0)
  expected = dense_top_k(walk, k, axis=1)
  if normalize:
    sums = expected.astype(np.float64).sum(1, keepdims=True)
    expected = expected * (1.0 / np.where(sums > 0, sums, 1.0))
  expected = dense_top_k(expected, k, axis=0)  # the reference's final column-wise top-k
  np.testing.assert_allclose(w.toarray(), expected, rtol=1e-5, atol=1e-7)


def test_top_k_mask_breaks_ties_by_lower_index():
  values = np.array([[3.0, 1.0, 3.0, 3.0, 0.0, 2.0]])
  mask = neighbors.top_k_mask(values, 2, axis=1)
  assert mask.tolist() == [[True, False, True, False, False, False]]
  assert neighbors.top_k_mask(values, 9, axis=1).tolist() == [[True, True, True, True, False,
                                                               True]]


def test_ease_refuses_a_catalog_that_does_not_fit():
  with pytest.raises(ValueError, match=r"17,770 items > ease\.max_items=10,000") as e:
    ease_lib.check_fits(17_770, "float32", max_items=10_000)
  assert "GiB" in str(e.value) and "\n" not in str(e.value)
  need = ease_lib.bytes_needed(17_770)
  assert need == 5 * 17_770 ** 2 * 4
  with pytest.raises(ValueError, match=r"only 1\.00 GiB of host MemAvailable is free"):
    ease_lib.check_fits(17_770, "float32", max_items=40_000, available=2**30,
                        where="host MemAvailable")
  ease_lib.check_fits(1000, "float32", max_items=40_000, available=2**30)  # fits: no error


# ------------------------------------------------------------------- through the loop
def tiny_config(store_root, model, **fields):
  return tiny_run_config(store_root, model, epochs=None, **{"eval.ks": (10, 20), **fields})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Each model fitted once through loop.train_and_evaluate: {model: (config, workdir, final)}."""
  root = tmp_path_factory.mktemp("closed_form")
  out = {}
  for model in MODELS:
    config = tiny_config(root / "stores", model)
    workdir = root / model
    out[model] = (config, workdir, loop.train_and_evaluate(config, workdir))
  return out


@pytest.mark.parametrize("model", MODELS)
def test_round_trip_gives_the_same_ranking_metrics(model, runs, tmp_path):
  config, workdir, final = runs[model]
  saved = json.loads((workdir / loop.SAVED_MODEL).read_text())
  assert saved["model_sha256"] and (workdir / saved["model_file"]).is_file()
  assert final["checkpoint"] == "saved" and final["fit_seconds"] >= 0
  for part in ("valid", "test"):
    assert "rmse" not in final[part]  # predict() is None: ranking metrics only
    assert final[part]["rating"].startswith("top-N model")
    assert 0 < final[part]["recall@20"] <= 1 and 0 < final[part]["ndcg@10"] <= 1
  evaluated = loop.evaluate_checkpoint(config, workdir, tmp_path / "eval")
  for part in ("valid", "test"):
    for key in ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "hit_rate@10", "mrr"):
      assert evaluated[part][key] == final[part][key], (part, key)
  # The fitted matrix is the one a fresh fit gives (the saved file is what was fitted).
  recommender = loop.load_recommender(workdir)
  resolved = family.resolve(config)
  store, split = closed_form.store_split(resolved)
  x = interaction_matrix(store, split.rows("train"))
  refit = closed_form.fit_matrix(model, x, resolved)
  as_dense = lambda m: m.toarray() if sp.issparse(m) else m
  np.testing.assert_array_equal(as_dense(recommender.matrix), as_dense(refit))


@pytest.mark.parametrize("model", MODELS)
def test_fold_in_of_a_training_users_row_equals_their_scores(model, runs):
  _, workdir, _ = runs[model]
  recommender = loop.load_recommender(workdir)
  assert recommender.predict(np.array([0]), np.array([0])) is None
  store, split = recommender.store, recommender.split
  train = split.rows("train")
  users, items = np.take(store.user, train), np.take(store.item, train)
  stars = store.stars(train)
  scores = recommender.score_items(np.array([3, 17]))
  for row, user in enumerate((3, 17)):
    mine = users == user
    folded = recommender.fold_in(items[mine], stars[mine])
    np.testing.assert_allclose(folded, scores[row], rtol=1e-6, atol=1e-7)
  # The batched fold-in (the strong-generalization evaluator's path) agrees row by row.
  import scipy.sparse as sp
  pick = np.isin(users, (3, 17))
  batch = sp.csr_matrix((stars[pick], ((users[pick] == 17).astype(int), items[pick])),
                        shape=(2, store.n_items))
  np.testing.assert_allclose(recommender.fold_in_batch(batch), scores, rtol=1e-6, atol=1e-7)


def test_min_stars_keeps_only_liked_ratings_also_in_fold_in(runs, tmp_path):
  config, _, _ = runs["item_knn"]
  config = tiny_config(config.data.store_root, "item_knn", **{"knn.min_stars": 4.0})
  loop.train_and_evaluate(config, tmp_path / "liked")
  recommender = loop.load_recommender(tmp_path / "liked")
  store, split = recommender.store, recommender.split
  train = split.rows("train")
  assert recommender.x.nnz == int((store.stars(train) >= 4).sum()) < len(train)
  user = 5
  rows = train[np.take(store.user, train) == user]
  folded = recommender.fold_in(np.take(store.item, rows), store.stars(rows))
  np.testing.assert_allclose(folded, recommender.score_items(np.array([user]))[0], rtol=1e-6)


def test_damaged_model_file_is_refused(runs, tmp_path):
  _, workdir, _ = runs["rp3beta"]
  with pytest.raises(ckpt_lib.CheckpointError, match="checksum"):
    loop.load_recommender(damaged_copy(workdir, closed_form.MODEL_FILE, tmp_path))


def test_ease_refusal_through_the_loop(runs, tmp_path):
  config, _, _ = runs["ease"]
  config = tiny_config(config.data.store_root, "ease", **{"ease.max_items": 50})
  with pytest.raises(ValueError, match=r"catalog has \d+ items > ease\.max_items=50"):
    loop.train_and_evaluate(config, tmp_path / "refused")


@pytest.mark.parametrize("model,field", [("item_knn", "ease.l2"), ("ease", "knn.k"),
                                         ("rp3beta", "knn.shrink"), ("ease", "train.epochs"),
                                         ("mf", "rp3.beta")])
def test_a_field_of_another_model_is_refused(model, field):
  config = configs.base_config()
  config.model.name = model
  configs.set_field(config, field, "7")
  with pytest.raises(config_checks.ConfigError, match=field.replace(".", r"\.")):
    family.resolve(config)


def test_out_of_range_fields_are_refused():
  config = configs.base_config()
  config.model.name = "ease"
  config.ease.l2 = -1.0
  with pytest.raises(config_checks.ConfigError, match=r"ease\.l2"):
    family.resolve(config)
  config = configs.base_config()
  config.model.name = "ease"
  config.ease.dtype = "float16"
  with pytest.raises(ValueError, match=r"ease\.dtype"):
    family.resolve(config)


def test_use_modes_recommend_new_user_and_similar(runs):
  _, workdir, _ = runs["ease"]
  opened = assert_use_modes(workdir)
  # The cosine of item_vectors is half second-order, half the direct weights both ways.
  recommender = opened.recommender
  w = np.asarray(recommender.matrix, np.float64)
  v = recommender.item_vectors().astype(np.float64)
  unit = v / np.linalg.norm(v, axis=1, keepdims=True)
  a = np.linalg.norm(w, axis=1)
  expected = 0.5 * (w @ w.T) / np.outer(a, a) + 0.5 * (w / a[:, None] + w.T / a[None, :])
  np.fill_diagonal(expected, 1.0)
  np.testing.assert_allclose(unit @ unit.T, expected, atol=1e-5)
  np.testing.assert_array_equal(recommender.similar_items(7), w[7])
