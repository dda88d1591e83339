"""timeSVD++: the prediction with its time terms and the objective against dense numpy hand
computations, the curvature bounds against the exact Hessian, the recommender against the
model at each rating's date, the evaluator's use of predict_rows, the synthetic drift option
(off: the generator's output byte for byte as before), and on a drifted store the planted
drift recovered and SVD++ beaten on a time split (the family contract covers resume, device
layouts and the restored best: tests/test_families.py)."""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import hessian_index, tiny_run_config
from netrec_jax.data import synthetic
from netrec_jax.data.row_batches import UserCSR, flat_user_batch
from netrec_jax.eval import evaluator
from netrec_jax.models import svdpp, timesvdpp
from netrec_jax.recommenders.timesvdpp import UserDays, drift_recovery
from netrec_jax.train import family, loop

# ------------------------------------------------------------------ a tiny hand example
# 4 users over 6 items, days since the first training day ascending within each user (users
# 2 and 3 rate twice on one day); 12 padded ratings, 6 slots; 3 bins over 40 days.
N_USERS, N_ITEMS, DIM, MU, L2 = 4, 6, 3, 3.5, 0.07
USER_ITEMS = [[2], [0, 5], [1, 2, 3, 4], [0, 3, 5]]
USER_STARS = [[4.0], [1.0, 5.0], [3.0, 2.0, 5.0, 4.0], [2.0, 3.0, 1.0]]
USER_DAYS = [[7], [0, 30], [3, 3, 20, 39], [12, 12, 25]]
SPEC = timesvdpp.TimeSpec(n_bins=3, n_days=40, beta=0.4, bin_l2=0.3, alpha_l2=2.0,
                          day_l2=0.05, drift_l2=1.5)


def _tiny():
  lengths = [len(x) for x in USER_ITEMS]
  csr = UserCSR(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                np.concatenate(USER_ITEMS).astype(np.int32),
                np.concatenate(USER_STARS).astype(np.float32))
  day = np.concatenate(USER_DAYS).astype(np.int32)
  days, user_day = UserDays.from_csr(csr, day, first_day=12_000)
  tables = {**svdpp.init_tables(jax.random.PRNGKey(3), N_USERS, N_ITEMS, DIM, 0.5),
            **timesvdpp.init_time_tables(N_USERS, N_ITEMS, days.n_pairs, DIM, SPEC)}
  rng = np.random.default_rng(0)  # every table nonzero, so every term is exercised
  for name in ("user_bias", "item_bias", "user_alpha", "user_vec_alpha", "item_bin_bias",
               "user_day_bias"):
    tables[name] = jnp.asarray(rng.normal(0, 0.3, tables[name].shape), jnp.float32)
  order = np.array([2, 0, 3, 1])  # slots in another order than user ids
  batch = flat_user_batch(csr, order, 12, 6, columns={"day": day, "user_day": user_day})
  batch["mean_day"] = days.mean_day[batch["user"]]
  return csr, days, tables, order, batch


def _rows(tables, batch):
  user = {k: tables[k][batch["user"]] for k in svdpp.USER_TABLES + timesvdpp.USER_TABLES}
  items = {k: tables[k][batch["item"]] for k in svdpp.ITEM_TABLES}
  real = batch["weight"] > 0
  return {**user, **items,
          "item_bin_bias": tables["item_bin_bias"][timesvdpp.bin_index(batch, SPEC)],
          "user_day_bias": tables["user_day_bias"][np.where(real, batch["user_day"], 0)]}


def _dense(tables):
  """Every training rating's prediction from dense arrays, written out from the paper."""
  t = {k: np.asarray(v, np.float64) for k, v in tables.items()}
  pairs = sorted({(u, d) for u, days in enumerate(USER_DAYS) for d in days})
  out = []
  for u, (items, days) in enumerate(zip(USER_ITEMS, USER_DAYS)):
    mean = np.mean(days)
    implicit = t["implicit"][items].sum(0) / np.sqrt(len(items))
    for i, d in zip(items, days):
      dev = np.sign(d - mean) * abs(d - mean) ** 0.4
      b_bin = t["item_bin_bias"][i * 3 + min(d * 3 // 40, 2), 0]
      b_day = t["user_day_bias"][pairs.index((u, d)), 0]
      factor = t["user_vec"][u] + t["user_vec_alpha"][u] * dev + implicit
      out.append((u, i, d, MU + t["item_bias"][i, 0] + b_bin + t["user_bias"][u, 0]
                  + t["user_alpha"][u, 0] * dev + b_day + t["item_vec"][i] @ factor))
  return t, out


def test_prediction_equals_a_dense_numpy_computation():
  _, days, tables, order, batch = _tiny()
  assert days.n_pairs == 8  # 10 ratings, two users rating twice on one day
  pred, _ = jax.jit(timesvdpp.predict_batch, static_argnums=3)(_rows(tables, batch), batch,
                                                                MU, SPEC)
  _, expected = _dense(tables)
  by_pair = {(u, i): p for u, i, _, p in expected}
  n = len(expected)
  users = order[batch["segment"][:n]]
  np.testing.assert_allclose(np.asarray(pred)[:n],
                             [by_pair[(u, i)] for u, i in zip(users, batch["item"][:n])],
                             rtol=1e-5, atol=1e-5)


def test_objective_equals_a_hand_sum():
  _, _, tables, _, batch = _tiny()
  objective, sse = jax.jit(timesvdpp.batch_loss, static_argnums=4)(_rows(tables, batch), batch,
                                                                   MU, L2, SPEC)
  t, expected = _dense(tables)
  pairs = sorted({(u, d) for u, days in enumerate(USER_DAYS) for d in days})
  stars = {(u, i): r for u, (items, rs) in enumerate(zip(USER_ITEMS, USER_STARS))
           for i, r in zip(items, rs)}
  err, penalty = 0.0, 0.0
  for u, i, d, p in expected:  # every L2 term once per rating, each with its lambda
    err += (stars[(u, i)] - p) ** 2
    items = USER_ITEMS[u]
    penalty += L2 * (t["user_bias"][u, 0] ** 2 + t["item_bias"][i, 0] ** 2
                     + np.sum(t["user_vec"][u] ** 2) + np.sum(t["item_vec"][i] ** 2)
                     + np.sum(t["implicit"][items] ** 2))
    penalty += (SPEC.alpha_l2 * t["user_alpha"][u, 0] ** 2
                + SPEC.drift_l2 * np.sum(t["user_vec_alpha"][u] ** 2)
                + SPEC.bin_l2 * t["item_bin_bias"][i * 3 + min(d * 3 // 40, 2), 0] ** 2
                + SPEC.day_l2 * t["user_day_bias"][pairs.index((u, d)), 0] ** 2)
  np.testing.assert_allclose(sse, err, rtol=1e-5)
  np.testing.assert_allclose(objective, 0.5 * err + 0.5 * penalty, rtol=1e-5)


def test_curvature_bounds_bound_the_exact_hessian():
  """Each time table's bound (divided by its block multiplier) bounds its row's exact Hessian
  block, and the scaled bounds keep the joint user-bias block below a Newton step."""
  _, _, tables, _, batch = _tiny()
  rows = _rows(tables, batch)
  bounds = timesvdpp.curvature_bounds(rows, batch, L2, N_ITEMS, SPEC)
  hessian, index = hessian_index(
      lambda r: timesvdpp.batch_loss(r, batch, MU, L2, SPEC)[0], rows)

  def shared(groups):
    """The Hessian in the distinct rows: each group of copies (gathered once per rating of a
    shared row) moves as one variable, P^T H P."""
    proj = np.zeros((hessian.shape[0], len(groups)))
    for k, group in enumerate(groups):
      proj[group, k] = 1.0
    return proj.T @ hessian @ proj

  top = lambda groups: np.linalg.eigvalsh(shared(groups)).max()
  real = np.flatnonzero(batch["weight"] > 0)
  bin_index = np.asarray(timesvdpp.bin_index(batch, SPEC))
  user_day = np.asarray(batch["user_day"])
  for r in real:  # b_{i,bin} and b_{u,t}: exactly their ratings' count times (1 + lambda)
    same_bin = real[bin_index[real] == bin_index[r]]
    np.testing.assert_allclose(top([index("item_bin_bias", same_bin)]),
                               bounds["item_bin_bias"][r] / 2, rtol=1e-5)
    same_day = real[user_day[real] == user_day[r]]
    np.testing.assert_allclose(top([index("user_day_bias", same_day)]),
                               bounds["user_day_bias"][r] / 3, rtol=1e-5)
  for slot in range(4):
    assert top([index("user_alpha", [slot])]) <= bounds["user_alpha"][slot] / 3 * 1.00001
    drift = index("user_vec_alpha", [slot])
    assert (np.linalg.eigvalsh(hessian[np.ix_(drift, drift)]).max()
            <= bounds["user_vec_alpha"][slot] / 2 * 1.00001)
    # b_u, alpha_u and the user's b_{u,t} together, each scaled by its bound: at most 1, so
    # the damped steps of all of them at once stay below a Newton step.
    mine = real[batch["segment"][real] == slot]
    days = [mine[user_day[mine] == d] for d in np.unique(user_day[mine])]
    groups = ([index("user_bias", [slot]), index("user_alpha", [slot])]
              + [index("user_day_bias", d) for d in days])
    scale = np.array([bounds["user_bias"][slot], bounds["user_alpha"][slot]]
                     + [bounds["user_day_bias"][d[0]] for d in days]) ** -0.5
    joint = shared(groups) * scale[:, None] * scale[None]
    assert np.linalg.eigvalsh(joint).max() <= 1.00001


def test_user_days_index_training_pairs_and_miss_unseen_days():
  _, days, _, _, _ = _tiny()
  assert days.n_days == 40 and days.last_day.tolist() == [7, 30, 39, 25]
  np.testing.assert_allclose(days.mean_day, [7, 15, 16.25, 49 / 3], rtol=1e-6)
  rows = days.pair_rows(np.array([2, 2, 3, 0, 1]), np.array([3, 4, 25, 7, 45]))
  assert rows.tolist() == [3, -1, 7, 0, -1]  # (2, 4) unseen; day 45 after training


# ------------------------------------------------------- the generator's drift option
def test_generator_without_drift_is_byte_identical_to_before():
  # The hash of main's generator before the drift option existed (commit a79fbea).
  cfg = synthetic.SyntheticConfig(n_users=500, n_items=200, n_ratings=20000, seed=5,
                                  chunk_ratings=4096)
  h = hashlib.sha256()
  for chunk in synthetic.generate_chunks(cfg):
    for k in sorted(chunk):
      h.update(k.encode())
      h.update(np.ascontiguousarray(chunk[k]).tobytes())
  assert h.hexdigest() == "d9dd89c90ae43d544f8ff9046b6dea8a88019e59e0b991f5f9bc878314f23509"
  assert "drift_item_std" not in synthetic.config_params(cfg)  # same build params and key

  # With drift: the same users, items and dates; only the stars move, by the planted drift.
  drifted = synthetic.SyntheticConfig(n_users=500, n_items=200, n_ratings=20000, seed=5,
                                      chunk_ratings=4096, drift_item_std=0.5,
                                      drift_user_std=0.5)
  plain, moved = (np.concatenate([np.stack([ch["user_id"], ch["item_id"], ch["date"],
                                            ch["rating"]])
                                  for ch in synthetic.generate_chunks(c)], axis=1)
                  for c in (cfg, drifted))
  np.testing.assert_array_equal(plain[:3], moved[:3])
  assert 0.1 < np.mean(plain[3] != moved[3]) < 0.9


def test_checks_refuse_bad_time_fields(store_root):
  for field, value in (("timesvdpp.beta", 1.5), ("timesvdpp.n_bins", 0),
                       ("timesvdpp.alpha_l2", -1.0)):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
      family.resolve(tiny_run_config(store_root, "timesvdpp", **{field: value}))
  with pytest.raises(ValueError, match=r"timesvdpp\.beta"):  # svdpp does not read it
    family.resolve(tiny_run_config(store_root, "svdpp", **{"timesvdpp.beta": 0.5}))
  with pytest.raises(ValueError, match="synthetic.drift_user_std"):
    family.resolve(tiny_run_config(store_root, "timesvdpp",
                                   **{"data.synthetic.drift_user_std": -0.1}))


# ----------------------------------------------------------------- a drifted small store
def _drift_config(root, model: str, drift: float):
  fields = {"data.synthetic.drift_item_std": drift, "data.synthetic.drift_user_std": drift,
            "data.synthetic.seed": 1, "train.eval_every": 8, "eval.ranking": "never",
            "mesh.data": 1,
            **({"timesvdpp.n_bins": 8} if model == "timesvdpp" else {})}
  return tiny_run_config(root, model, n_users=1500, n_items=250, n_ratings=60_000,
                         split="time", epochs=8, **fields)


@pytest.fixture(scope="module")
def drift_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("drift")
  runs = {m: loop.train_and_evaluate(_drift_config(root, m, 0.5), root / m)
          for m in ("svdpp", "timesvdpp")}
  return root, runs


def test_planted_drift_is_recovered_and_beats_svdpp_on_a_time_split(drift_runs):
  root, runs = drift_runs
  # Measured: svdpp 1.0185, timesvdpp 0.9989 (item slopes 0.89, alpha signs 0.75).
  assert runs["timesvdpp"]["test"]["rmse"] < runs["svdpp"]["test"]["rmse"] - 0.015
  config = _drift_config(root, "timesvdpp", 0.5)
  truth = synthetic.generate_truth(synthetic.SyntheticConfig(**config.data.synthetic.to_dict()))
  found = drift_recovery(loop.load_recommender(root / "timesvdpp"), truth)
  assert found["item_slope_corr"] > 0.7 and found["user_alpha_sign"] > 0.65, found


def test_recommender_predicts_at_the_rows_dates_and_the_evaluator_uses_it(drift_runs):
  root, runs = drift_runs
  final, rec = runs["timesvdpp"], loop.load_recommender(root / "timesvdpp")
  store, t = rec.store, {k: v.astype(np.float64) for k, v in rec.tables.items()}
  # Test rows (after training: unseen days, the last bin) and training rows (seen days).
  later = rec.split.rows("test")
  later = later[rec.csr.lengths(np.take(store.user, later)) > 0][:30]  # users seen in training
  test = np.concatenate([later, rec.split.rows("train")[::2000]])
  users, items = np.take(store.user, test), np.take(store.item, test)
  day = np.take(store.date, test).astype(np.int64) - rec.days.first_day
  pair = rec.days.pair_rows(users, day)
  expected = []
  for u, i, d, p in zip(users, items, day, pair):  # the paper's formula, by hand
    lo, hi = rec.csr.indptr[u], rec.csr.indptr[u + 1]
    x = d - rec.days.mean_day[u]
    dev = np.sign(x) * abs(x) ** 0.4
    factor = (t["user_vec"][u] + dev * t["user_vec_alpha"][u]
              + t["implicit"][rec.csr.items[lo:hi]].sum(0) / np.sqrt(hi - lo))
    b_bin = t["item_bin_bias"][i * 8 + min(max(d * 8 // rec.days.n_days, 0), 7), 0]
    expected.append(rec.global_mean + t["user_bias"][u, 0] + t["item_bias"][i, 0] + b_bin
                    + t["user_alpha"][u, 0] * dev + (t["user_day_bias"][p, 0] if p >= 0 else 0)
                    + t["item_vec"][i] @ factor)
  assert (pair >= 0).sum() >= 10 and (pair < 0).sum() >= 30
  np.testing.assert_allclose(rec.predict_rows(test), expected, rtol=1e-5)
  # Without dates: at the latest training day, no per-day bias; score_items agrees.
  last = rec.predict(users, items)
  np.testing.assert_allclose(rec.score_items(users)[np.arange(len(users)), items], last,
                             rtol=1e-5)
  np.testing.assert_allclose(last, rec.predict_rows(test) - rec.time_terms(users, items, day, pair)
                             + rec.time_terms(users, items, rec.days.last_day[users], None),
                             rtol=1e-5)
  # The evaluator scores predict_rows, not predict: its RMSE is the dated one.
  data = evaluator.part_data(store, rec.split, "test", rec.config.eval)
  truth = store.stars(data.test_rows).astype(np.float64)
  dated = np.sqrt(np.mean((np.clip(rec.predict_rows(data.test_rows), 1, 5) - truth) ** 2))
  undated = np.sqrt(np.mean((np.clip(rec.predict(np.take(store.user, data.test_rows),
                                                 np.take(store.item, data.test_rows)), 1, 5)
                             - truth) ** 2))
  assert final["test"]["rmse"] == pytest.approx(dated, rel=1e-9) and dated != undated
  # Fold-in scores a new user with the latest bin's item biases.
  lo, hi = rec.csr.indptr[users[0]], rec.csr.indptr[users[0] + 1]
  factor, bias = rec.fold_in_factor(rec.csr.items[lo:hi], rec.csr.stars[lo:hi])
  np.testing.assert_allclose(
      rec.fold_in(rec.csr.items[lo:hi], rec.csr.stars[lo:hi]),
      rec.global_mean + bias + t["item_bias"][:, 0]
      + t["item_bin_bias"][:, 0].reshape(-1, 8)[:, -1] + t["item_vec"] @ factor, rtol=1e-5)
