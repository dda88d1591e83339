"""YouTube-style candidate model: log-Q sampled softmax, no target leakage, sharding, restore."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_run_config

from netrec_jax.eval import evaluator
from netrec_jax.train import family, loop
from netrec_jax.models.youtube import full_softmax_loss, sampled_softmax_loss



def youtube_config(tmp_path, **youtube):
  """A small synthetic youtube_dnn setup that trains in seconds."""
  fields = {**dict(embed_dim=8, tower=(16,), out_dim=8, dropout=0.0, max_history=24,
                   num_sampled=16), **youtube}
  return tiny_run_config(tmp_path / "stores", "youtube_dnn", n_users=200, n_items=80,
                         n_ratings=6000, **{f"youtube.{k}": v for k, v in fields.items()},
                         **{"train.batch_size": 256, "optimizer.lr": 3e-3})


# ------------------------------------------------------------------- sampled softmax, log Q
def test_log_q_correction_approaches_the_full_softmax_gradient():
  n_items, dim, k = 12, 4, 100_000
  rng = np.random.default_rng(0)
  items = jnp.asarray(rng.normal(size=(n_items, dim)), jnp.float32)
  user = jnp.asarray(rng.normal(size=(1, dim)), jnp.float32)
  popularity = 1.0 / np.arange(1, n_items + 1) ** 1.2  # Zipf: item 0 is the most popular
  q = popularity / popularity.sum()
  target = jnp.array([5])
  sampled = jnp.asarray(rng.choice(n_items, k, p=q), jnp.int32)
  log_q = jnp.asarray(np.log(k * q), jnp.float32)

  def full(u):
    return full_softmax_loss(u @ items.T, target)[0]

  def sampled_loss(u, correct):
    logits = u @ items.T
    return sampled_softmax_loss(logits[:, 5], logits[:, sampled], log_q[target],
                                log_q[sampled], correct=correct)[0]

  g_full = jax.grad(full)(user)
  g_corrected = jax.grad(sampled_loss)(user, True)
  g_plain = jax.grad(sampled_loss)(user, False)
  err_corrected = float(jnp.linalg.norm(g_corrected - g_full) / jnp.linalg.norm(g_full))
  err_plain = float(jnp.linalg.norm(g_plain - g_full) / jnp.linalg.norm(g_full))
  assert err_corrected < 0.05, err_corrected
  assert err_plain > 4 * err_corrected, (err_plain, err_corrected)
  # The corrected loss is the full one shifted by the constant log Q(target).
  assert float(sampled_loss(user, True)) - float(log_q[5]) == pytest.approx(
      float(full(user)), abs=0.02)

  # Uncorrected, the popular item takes too much of the negative gradient mass.
  def logit_grads(correct):
    def loss(z):
      return sampled_softmax_loss(z[:, 5], z[:, sampled], log_q[target], log_q[sampled],
                                  correct=correct)[0]
    return jax.grad(loss)(user @ items.T)[0]

  def loss_full(z):
    return full_softmax_loss(z, target)[0]

  p_full = jax.grad(loss_full)(user @ items.T)[0]
  assert float(logit_grads(False)[0]) > 1.5 * float(p_full[0])
  np.testing.assert_allclose(logit_grads(True), p_full, atol=0.03)


def test_sampled_softmax_drops_accidental_hits():
  logits = jnp.array([[2.0, 1.0, 0.5]])
  loss = sampled_softmax_loss(logits[:, 0], logits[:, jnp.array([0, 1])], jnp.zeros(1),
                              jnp.zeros(2), jnp.array([[True, False]]), correct=False)
  # Only item 1 remains as a negative.
  expected = -jax.nn.log_softmax(jnp.array([2.0, 1.0]))[0]
  assert float(loss[0]) == pytest.approx(float(expected), abs=1e-6)


# ------------------------------------------------------------------------ no target leakage
def test_the_target_is_never_in_its_own_history(tmp_path):
  from netrec_jax.train import youtube
  config = youtube_config(tmp_path)
  s = youtube._setup(family.resolve(config))
  store, rows, hist = s["store"], s["rows"]["train"], s["hist"]
  width = int(np.median(hist.counts[hist.counts > 0]))  # some users fit, some do not
  config.youtube.max_history = width
  batch = youtube.train_batch(s, config, rows[:256], np.random.default_rng(0))
  hist_items, weight, target = batch["history"], batch["weight"], batch["target"]
  assert ((hist_items == target[:, None]) & (weight > 0)).sum() == 0
  users = np.take(store.user, rows[:256])
  n = hist.counts[users]
  # Every other training movie of the user fits the window when the user has few ratings.
  small = n <= width
  assert small.any() and (~small).any()
  np.testing.assert_array_equal((weight[small] > 0).sum(1), n[small] - 1)
  assert ((weight[~small] > 0).sum(1) >= width - 1).all()
  # The activity features leave the target's rating out as well.
  stars = store.stars(rows[:256])
  loo_mean = (hist.sums[users] - stars) / np.maximum(n - 1, 1)
  mean_col = (loo_mean - s["side"].mean_stars_stats[0]) / s["side"].mean_stars_stats[1]
  np.testing.assert_allclose(batch["side"][:256, -1], mean_col, rtol=1e-5, atol=1e-5)


# ------------------------------------------------- sharding, checkpoints, resume, fold-in
def test_restores_folds_in_and_resumes(tmp_path):
  """(4 devices = 1 is the family contract's, tests/test_families.py.)"""
  results = {}
  config = youtube_config(tmp_path)
  config.mesh.data = 4
  results[4] = loop.train_and_evaluate(config, tmp_path / "run4")
  assert results[4]["protocol"] == "random_90_10_seed0"
  assert results[4]["test"]["ranking_protocol"] == "random_90_10_seed0_full_ranking"

  # The restored best checkpoint reproduces the run's metrics.
  restored = loop.load_recommender(tmp_path / "run4", youtube_config(tmp_path))
  again = evaluator.evaluate_run(restored)
  assert again["test"]["rmse"] == pytest.approx(results[4]["test"]["rmse"], abs=1e-6)
  assert again["test"]["recall@10"] == pytest.approx(results[4]["test"]["recall@10"], abs=1e-9)

  # Natural fold-in: a "new" user with an existing user's training ratings gets that user's
  # scores (same history mean, same activity features; synthetic users have no demographics).
  hist = restored._s["hist"]
  user = int(np.argmax(hist.counts))
  lo, hi = hist.indptr[user], hist.indptr[user + 1]
  fold = restored.fold_in(hist.items[lo:hi], hist.stars[lo:hi])
  np.testing.assert_allclose(fold, restored.score_items(np.array([user]))[0], rtol=1e-4,
                             atol=1e-4)
  assert restored.item_vectors().shape == (restored.store.n_items, 8)
  assert restored.user_vectors().shape == (restored.store.n_users, 8)
  with pytest.raises(ValueError, match="dense movie indices"):
    restored.fold_in(np.array([10 ** 6]), np.array([4.0]))

  # Resume: one more epoch continues after the saved ones.
  config = youtube_config(tmp_path)
  config.mesh.data = 4
  config.train.epochs = 3
  config.train.early_stopping_patience = 0
  loop.train_and_evaluate(config, tmp_path / "run4")
  log = [json.loads(x) for x in (tmp_path / "run4" / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in log] == [0, 1, 2]


def test_bad_config_is_a_clear_error(tmp_path):
  config = youtube_config(tmp_path, history_weighting="log")
  with pytest.raises(ValueError, match="history_weighting"):
    loop.train_and_evaluate(config, tmp_path / "bad")
