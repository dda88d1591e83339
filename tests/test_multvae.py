"""Mult-VAE / Mult-DAE: the forward pass and loss against a numpy hand computation, fold-in
against full-catalog scoring, and a run through the loop (the family contract covers resume,
device layouts and the restored best)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_run_config
from netrec_jax.models.multvae import MultVAE, annealed_beta, multinomial_loss
from netrec_jax.train import family, loop


def _numpy_forward(params, rows, latent):
  """The encoder's mean and log-variance and the decoder's logits, by hand."""
  p = {k: {n: np.asarray(v, np.float64) for n, v in layer.items()}
       for k, layer in params["params"].items()}
  x = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
  x = np.tanh(x @ p["enc_0"]["kernel"] + p["enc_0"]["bias"])
  h = x @ p["code"]["kernel"] + p["code"]["bias"]
  mean, logvar = h[:, :latent], h[:, latent:]
  z = np.tanh(mean @ p["dec_0"]["kernel"] + p["dec_0"]["bias"])
  return mean, logvar, z @ p["out"]["kernel"] + p["out"]["bias"]


def test_forward_and_loss_equal_a_hand_computation():
  rng = np.random.default_rng(0)
  rows = (rng.random((5, 12)) < 0.3).astype(np.float32)
  rows[0, :] = 0.0  # an empty row: normalisation must not divide by zero
  rows[1, 3] = 1.0
  model = MultVAE(12, hidden=(6,), latent=3, dropout=0.5)
  params = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 12)))
  logits, kl = model.apply(params, jnp.asarray(rows))  # inference: mean code, no dropout
  mean, logvar, ref_logits = _numpy_forward(params, rows.astype(np.float64), 3)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-5)
  ref_kl = 0.5 * np.sum(np.exp(logvar) + mean ** 2 - 1 - logvar, axis=1)
  np.testing.assert_allclose(kl, ref_kl, rtol=1e-4, atol=1e-6)

  weight = np.array([1, 1, 1, 1, 0], np.float32)  # the last row is padding
  log_softmax = ref_logits - np.log(np.exp(ref_logits).sum(1, keepdims=True))
  nll_rows = -(log_softmax * rows).sum(1)
  ref_nll = nll_rows[:4].mean()
  loss, nll = multinomial_loss(logits, jnp.asarray(rows), kl, jnp.asarray(0.2),
                               jnp.asarray(weight))
  np.testing.assert_allclose(nll, ref_nll, rtol=1e-5)
  np.testing.assert_allclose(loss, ref_nll + 0.2 * ref_kl[:4].mean(), rtol=1e-5)


def test_dae_has_no_kl_and_beta_anneals_to_its_cap():
  model = MultVAE(10, hidden=(4,), latent=2, variational=False)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 10)))
  _, kl = model.apply(params, jnp.ones((3, 10)))
  assert np.all(np.asarray(kl) == 0)
  assert float(annealed_beta(50, 0.2, 1000)) == pytest.approx(0.05)
  assert float(annealed_beta(10_000, 0.2, 1000)) == pytest.approx(0.2)


@pytest.mark.parametrize("model", ["mult_vae", "mult_dae"])
def test_trains_ranks_and_folds_in_like_it_scores(model, store_root, tmp_path):
  config = tiny_run_config(store_root, model, epochs=5, **{
      "vae.hidden": (32,), "vae.latent": 8, "train.batch_size": 64, "train.eval_every": 1,
      "optimizer.lr": 3e-3})
  final = loop.train_and_evaluate(config, tmp_path / "run")
  assert "rmse" not in final["test"] and 0 <= final["test"]["ndcg@100"] <= 1
  recommender = loop.load_recommender(tmp_path / "run")
  # A training user folded in from their training row scores every item as score_items does.
  user = int(recommender.setup.users[0])
  items = recommender.setup.matrix[user].indices
  np.testing.assert_allclose(recommender.fold_in(items, np.ones(len(items))),
                             recommender.score_items(np.array([user]))[0], rtol=1e-5,
                             atol=1e-5)
  import scipy.sparse as sp
  batch = sp.csr_matrix(recommender.setup.matrix[recommender.setup.users[:3]] * 4.0)
  np.testing.assert_allclose(recommender.fold_in_batch(batch),
                             recommender.score_items(recommender.setup.users[:3]), rtol=1e-5,
                             atol=1e-5)
  # Training taught it something: validation NDCG@100 (the loop's logged figure) rises well
  # past its first epoch's (measured: 0.33 after one epoch, 0.46 after six).
  log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert len(log) == 5
  assert log[-1]["valid_ndcg@100"] > log[0]["valid_ndcg@100"] + 0.05


def test_fields_of_another_family_are_refused(store_root):
  config = tiny_run_config(store_root, "mult_vae", **{"autoencoder.layers": (8,)})
  with pytest.raises(ValueError, match="autoencoder.layers"):
    family.resolve(config)
