"""SVD++: the prediction, objective and gradients against dense numpy hand computations, the
curvature bounds against the exact Hessian, whole-user batches, training on a store where the
choice of movies carries the taste, and fold-in (the family contract covers resume, device
layouts and the restored best)."""

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import hessian_index
from netrec_jax import configs
from netrec_jax.data import datasets
from netrec_jax.data.row_batches import UserCSR, flat_user_batch, user_spans
from netrec_jax.models import svdpp
from netrec_jax.train import family, loop

# ------------------------------------------------------------------ a tiny hand example
# 4 users with |N(u)| = 1, 2, 4, 3 over 6 items; batch padded to 12 ratings and 6 slots.
N_USERS, N_ITEMS, DIM, MU, L2 = 4, 6, 3, 3.5, 0.07
USER_ITEMS = [[2], [0, 5], [1, 2, 3, 4], [0, 3, 5]]
USER_STARS = [[4.0], [1.0, 5.0], [3.0, 2.0, 5.0, 4.0], [2.0, 3.0, 1.0]]


def _tiny():
  lengths = [len(x) for x in USER_ITEMS]
  csr = UserCSR(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                np.concatenate(USER_ITEMS).astype(np.int32),
                np.concatenate(USER_STARS).astype(np.float32))
  tables = svdpp.init_tables(jax.random.PRNGKey(3), N_USERS, N_ITEMS, DIM, 0.5)
  rng = np.random.default_rng(0)  # nonzero biases, so every term is exercised
  tables["user_bias"] = jnp.asarray(rng.normal(0, 0.3, (N_USERS, 1)), jnp.float32)
  tables["item_bias"] = jnp.asarray(rng.normal(0, 0.3, (N_ITEMS, 1)), jnp.float32)
  order = np.array([2, 0, 3, 1])  # slots in another order than user ids
  batch = flat_user_batch(csr, order, 12, 6)
  return csr, tables, order, batch


def _rows(tables, batch):
  user = {k: tables[k][batch["user"]] for k in svdpp.USER_TABLES}
  return {**user, **{k: tables[k][batch["item"]] for k in svdpp.ITEM_TABLES}}


def _dense(tables):
  """Per (user, item) prediction of every training pair, from a dense N(u) indicator."""
  t = {k: np.asarray(v, np.float64) for k, v in tables.items()}
  indicator = np.zeros((N_USERS, N_ITEMS))
  for u, items in enumerate(USER_ITEMS):
    indicator[u, items] = 1.0
  implicit = (indicator @ t["implicit"]) / np.sqrt(indicator.sum(1, keepdims=True))
  factors = t["user_vec"] + implicit
  full = MU + t["user_bias"] + t["item_bias"].T + factors @ t["item_vec"].T
  return t, indicator, full


def test_prediction_equals_a_dense_numpy_computation():
  _, tables, order, batch = _tiny()
  pred, counts = jax.jit(svdpp.predict_batch)(_rows(tables, batch), batch, MU)
  _, _, full = _dense(tables)
  n = sum(len(x) for x in USER_ITEMS)
  users = order[batch["segment"][:n]]
  np.testing.assert_allclose(np.asarray(pred)[:n], full[users, batch["item"][:n]], rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_array_equal(np.asarray(counts), [4, 1, 3, 2, 0, 0])  # slots 4, 5: padding


def test_objective_and_gradients_equal_a_hand_computation():
  _, tables, order, batch = _tiny()
  rows = _rows(tables, batch)
  (objective, sse), grads = jax.jit(jax.value_and_grad(svdpp.batch_loss, has_aux=True))(
      rows, batch, MU, L2)
  t, indicator, full = _dense(tables)
  err_total, penalty = 0.0, 0.0
  for u, (items, stars) in enumerate(zip(USER_ITEMS, USER_STARS)):
    for i, r in zip(items, stars):
      err_total += (r - full[u, i]) ** 2
      penalty += (t["user_bias"][u, 0] ** 2 + t["item_bias"][i, 0] ** 2
                  + np.sum(t["user_vec"][u] ** 2) + np.sum(t["item_vec"][i] ** 2)
                  + np.sum(t["implicit"][items] ** 2))
  np.testing.assert_allclose(sse, err_total, rtol=1e-5)
  np.testing.assert_allclose(objective, 0.5 * err_total + 0.5 * L2 * penalty, rtol=1e-5)

  # Gradients are Surprise's SGD updates (negated), summed over each user's ratings.
  u = 2  # slot 0: |N(u)| = 4
  items, stars = USER_ITEMS[u], np.array(USER_STARS[u])
  err = stars - full[u, items]
  n = len(items)
  q = t["item_vec"][items]
  np.testing.assert_allclose(grads["user_bias"][0, 0], -err.sum() + n * L2 * t["user_bias"][u, 0],
                             rtol=1e-4)
  np.testing.assert_allclose(grads["user_vec"][0], -(err[:, None] * q).sum(0)
                             + n * L2 * t["user_vec"][u], rtol=1e-4, atol=1e-6)
  # Each y_j of N(u) (the flat positions 0..3 of slot 0) gets the whole user's update.
  y_grad = -(err[:, None] * q).sum(0) / np.sqrt(n)
  for position, j in enumerate(items):
    np.testing.assert_allclose(grads["implicit"][position],
                               y_grad + n * L2 * t["implicit"][j], rtol=1e-4, atol=1e-6)
  # Padding positions get no gradient.
  assert np.all(np.asarray(grads["item_vec"])[10:] == 0)


def test_curvature_bounds_bound_the_exact_hessian():
  _, tables, _, batch = _tiny()
  rows = _rows(tables, batch)
  bounds = svdpp.curvature_bounds(rows, batch, L2, N_ITEMS)
  hessian, coordinates = hessian_index(lambda r: svdpp.batch_loss(r, batch, MU, L2)[0], rows)

  def block(name, positions):
    index = coordinates(name, positions)
    return np.linalg.eigvalsh(hessian[np.ix_(index, index)]).max()

  for name in svdpp.USER_TABLES + ("item_bias", "item_vec"):
    for r in range(rows[name].shape[0]):
      # An item's rows are gathered once per rating of it: all its copies move together.
      same = ([r] if name in svdpp.USER_TABLES else
              np.flatnonzero((batch["item"] == batch["item"][r]) & (batch["weight"] > 0)))
      if name in svdpp.ITEM_TABLES and batch["weight"][r] == 0:
        continue
      top = block(name, same)
      assert top <= float(bounds[name][r]) * (1 + 1e-5) + 1e-6, (name, r)
      if name == "user_bias" or (name == "item_bias" and len(same) == 1):
        np.testing.assert_allclose(top, bounds[name][r], rtol=1e-5, atol=1e-6)
  # All y_j of one user move its implicit term together: that block is bounded too.
  for slot in range(4):
    positions = np.flatnonzero((batch["segment"] == slot) & (batch["weight"] > 0))
    assert block("implicit", positions) <= float(bounds["implicit"][positions[0]]) * 1.00001


def test_batches_hold_whole_users_within_budgets():
  lengths = np.array([5, 1, 9, 2, 2, 30, 3, 1, 1, 1])
  spans = user_spans(lengths, max_ratings=10, max_users=3)
  assert spans[0] == (0, 2) and (5, 6) in spans  # 30 ratings: a batch of its own
  assert [k for lo, hi in spans for k in range(lo, hi)] == list(range(len(lengths)))
  for lo, hi in spans:
    assert hi - lo <= 3 and (lengths[lo:hi].sum() <= 10 or hi - lo == 1)


# ------------------------------------------------- a store where choices carry the taste
def _choice_store(path, n_users=1200, n_items=240, per_user=20, noise=0.8, loyal=0.9):
  """Two taste groups; 90% of a user's movies are from their group, rated 4 (+ noise 0.8),
  the others 2. Which movies a user rated says their group; so do their stars, noisily."""
  rng = np.random.default_rng(0)
  item_group = np.arange(n_items) % 2
  user_group = rng.integers(0, 2, n_users)
  users, items, stars = [], [], []
  for u in range(n_users):
    own = int((rng.random(per_user) < loyal).sum())
    chosen = np.concatenate([
        rng.choice(np.flatnonzero(item_group == user_group[u]), own, replace=False),
        rng.choice(np.flatnonzero(item_group != user_group[u]), per_user - own, replace=False)])
    like = np.where(item_group[chosen] == user_group[u], 1.0, -1.0)
    users.append(np.full(per_user, u + 1))
    items.append(chosen + 1)
    stars.append(np.clip(np.rint(3 + like + rng.normal(0, noise, per_user)), 1, 5))
  pq.write_table(pa.table({"user_id": np.concatenate(users), "item_id": np.concatenate(items),
                           "rating": np.concatenate(stars)}), path)


def _choice_config(tmp_path, model: str, **fields):
  config = configs.base_config()
  config.data.source, config.data.path = "parquet", str(tmp_path / "choices.parquet")
  config.data.store_root, config.data.min_user_ratings = str(tmp_path / "stores"), 0
  config.split.kind, config.model.name, config.eda = "random", model, False
  config.eval.ranking = "never"
  config.train.early_stopping_patience = 0
  config.train.eval_every = 10
  for dotted, value in fields.items():
    configs.set_field(config, dotted, value)
  return config


@pytest.fixture(scope="module")
def choice_run(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("choices")
  _choice_store(tmp_path / "choices.parquet")
  final = loop.train_and_evaluate(_choice_config(tmp_path, "svdpp"), tmp_path / "svdpp")
  return tmp_path, final


def test_implicit_feedback_beats_mf_with_the_same_settings(choice_run):
  tmp_path, final = choice_run
  # MF with SVD++'s settings: SGD at 0.007 per rating, L2 0.02, 20 factors, init std 0.1,
  # 4,096-rating batches, 20 epochs (measured: 0.957, no better than the mean, as the
  # stars alone are too noisy to find the groups in 20 epochs; SVD++ 0.82, about the noise).
  mf = loop.train_and_evaluate(_choice_config(
      tmp_path, "mf", **{"optimizer.sparse": "sgd", "optimizer.sparse_lr": 0.007,
                         "optimizer.embed_l2": 0.02, "model.init_std": 0.1,
                         "model.embed_dim": 20, "train.batch_size": 4096,
                         "train.epochs": 20}), tmp_path / "mf")
  config = _choice_config(tmp_path, "svdpp")
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  train_mean = store.stars(split.rows("train")).astype(np.float64).mean()
  mean_rmse = np.sqrt(np.mean((store.stars(split.rows("valid")) - train_mean) ** 2))
  assert final["valid"]["rmse"] < mean_rmse - 0.08
  assert final["valid"]["rmse"] < mf["valid"]["rmse"] - 0.08


def test_recommender_predicts_as_the_model_and_folds_in_as_it_trains(choice_run):
  tmp_path, _ = choice_run
  rec = loop.load_recommender(tmp_path / "svdpp")
  t = {k: v.astype(np.float64) for k, v in rec.tables.items()}
  # predict: mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum y_j), N(u) from the training CSR.
  users = np.array([0, 7, 100])
  items = np.array([3, 11, 200])
  expected = []
  for u, i in zip(users, items):
    n_u = rec.csr.items[rec.csr.indptr[u]:rec.csr.indptr[u + 1]]
    factor = t["user_vec"][u] + t["implicit"][n_u].sum(0) / np.sqrt(len(n_u))
    expected.append(rec.global_mean + t["user_bias"][u, 0] + t["item_bias"][i, 0]
                    + factor @ t["item_vec"][i])
  np.testing.assert_allclose(rec.predict(users, items), expected, rtol=1e-5)
  np.testing.assert_allclose(rec.score_items(users)[np.arange(3), items], expected, rtol=1e-5)

  # fold_in's (p, b): the training's whole-user SGD step, repeated, from 0; here by autodiff.
  u = 7
  given = rec.csr.items[rec.csr.indptr[u]:rec.csr.indptr[u + 1]]
  stars = rec.csr.stars[rec.csr.indptr[u]:rec.csr.indptr[u + 1]]
  factor, bias = rec.fold_in_factor(given, stars)
  batch = {"item": jnp.asarray(given), "rating": jnp.asarray(stars),
           "weight": jnp.ones(len(given)), "segment": jnp.zeros(len(given), jnp.int32),
           "user": jnp.zeros(1, jnp.int32)}
  items = {k: jnp.asarray(rec.tables[k][given]) for k in svdpp.ITEM_TABLES}
  user = {"user_bias": jnp.zeros((1, 1)), "user_vec": jnp.zeros((1, t["user_vec"].shape[1]))}
  grad = jax.jit(jax.grad(lambda r: svdpp.batch_loss({**items, **r}, batch, rec.global_mean,
                                                     rec.l2)[0]))
  for _ in range(rec.fold_in_steps):
    bounds = svdpp.curvature_bounds({**items, **user}, batch, rec.l2, rec.store.n_items)
    user = {k: v - rec.fold_in_lr * svdpp.step_factor(rec.fold_in_lr, bounds[k])[:, None] * g
            for (k, v), g in zip(user.items(), grad(user).values())}
  implicit = t["implicit"][given].sum(0) / np.sqrt(len(given))
  np.testing.assert_allclose(factor, user["user_vec"][0] + implicit, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(bias, user["user_bias"][0, 0], rtol=1e-4, atol=1e-5)
  scores = rec.fold_in(given, stars)
  np.testing.assert_allclose(scores, rec.global_mean + bias + t["item_bias"][:, 0]
                             + t["item_vec"] @ factor, rtol=1e-5)

  # Folded in from their training ratings, validation users are predicted about as well as
  # by their trained rows, and far better than by the mean.
  valid = rec.split.rows("valid")
  v_users, v_items = np.take(rec.store.user, valid), np.take(rec.store.item, valid)
  truth = rec.store.stars(valid).astype(np.float64)
  folded = np.empty(len(valid))
  for user in np.unique(v_users):
    lo, hi = rec.csr.indptr[user], rec.csr.indptr[user + 1]
    mask = v_users == user
    folded[mask] = rec.fold_in(rec.csr.items[lo:hi], rec.csr.stars[lo:hi])[v_items[mask]]
  rmse = lambda p: float(np.sqrt(np.mean((np.clip(p, 1, 5) - truth) ** 2)))
  trained = rmse(rec.predict(v_users, v_items))
  assert rmse(folded) < trained + 0.03
  assert rmse(folded) < rmse(np.full(len(truth), rec.global_mean)) - 0.08


def test_checks_refuse_what_svdpp_cannot_do(tmp_path):
  config = _choice_config(tmp_path, "svdpp", **{"svdpp.optimizer": "adam"})
  with pytest.raises(ValueError, match="svdpp.optimizer"):
    family.resolve(config)
  config = _choice_config(tmp_path, "svdpp", **{"optimizer.clip_norm": 1.0})
  with pytest.raises(ValueError, match="optimizer.clip_norm"):
    family.resolve(config)
  config = _choice_config(tmp_path, "svdpp", **{"vae.latent": 3})
  with pytest.raises(ValueError, match="vae.latent"):
    family.resolve(config)
