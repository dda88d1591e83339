"""GLocal-K's pieces against computations written another way (numpy loops, by hand).

- the local kernel max(0, 1 - |u_i - v_j|^2) and a kernelised layer, elementwise in numpy;
- the global kernel (item pooling x item kernels) and its SAME-padded 3x3 convolution, as
  explicit loops over the zero-padded matrix;
- the training objective on a tiny matrix: half the squared error on observed entries plus
  lambda_2 / 2 |W|^2 and lambda_s / 2 |K|^2 of every layer, with the network evaluated in numpy;
- the loop's warm-up: a pre-training epoch is never `best`, even when its validation RMSE
  is the lowest of the run;
- the item codes (item_vectors) are what the output layer reads.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import TINY_MODEL_FIELDS, tiny_run_config
from netrec_jax.models import glocal_k as gk


def _np_local_kernel(u, v):
  out = np.zeros((len(u), len(v)))
  for i in range(len(u)):
    for j in range(len(v)):
      out[i, j] = max(0.0, 1.0 - float(np.sum((u[i] - v[j]) ** 2)))
  return out


def _np_layer(x, p, sigmoid):
  y = x @ (p["W"] * _np_local_kernel(p["u"], p["v"])) + p["b"]
  return 1 / (1 + np.exp(-y)) if sigmoid else y


def _np_conv_same(r, k):
  """Cross-correlation with zero padding keeping r's shape (odd kernel), then ReLU."""
  h = k.shape[0] // 2
  padded = np.pad(r, h)
  out = np.zeros_like(r)
  for i in range(r.shape[0]):
    for j in range(r.shape[1]):
      out[i, j] = np.sum(padded[i:i + k.shape[0], j:j + k.shape[1]] * k)
  return np.maximum(out, 0.0)


def _params(seed=0, n_items=5, n_users=4, hidden=3, layers=2, kernel_dim=2):
  model = gk.GLocalK(n_items=n_items, n_users=n_users, hidden=hidden, layers=layers,
                     kernel_dim=kernel_dim, gk_size=3, dot_scale=0.7)
  params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, n_users)))
  # Spread u and v (init is 1e-3 wide, K ~ 1) so that the kernel's max(0, .) clips some.
  key = jax.random.PRNGKey(seed + 1)
  p = jax.tree.map(lambda a: a, params)
  for name in p["params"]:
    if name != "conv_kernel":
      key, k1, k2 = jax.random.split(key, 3)
      layer = p["params"][name]
      layer["u"] = 0.6 * jax.random.normal(k1, layer["u"].shape)
      layer["v"] = 0.6 * jax.random.normal(k2, layer["v"].shape)
  return model, p


def _np_tree(params):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), params)["params"]


def test_local_kernel_and_kernel_layer_equal_numpy():
  rng = np.random.default_rng(0)
  u, v = rng.normal(0, 0.6, (6, 3)), rng.normal(0, 0.6, (4, 3))
  expected = _np_local_kernel(u, v)
  assert (expected == 0).any() and (expected > 0).any()  # both sides of the max
  np.testing.assert_allclose(gk.local_kernel(jnp.asarray(u, jnp.float32),
                                             jnp.asarray(v, jnp.float32)),
                             expected, rtol=1e-5, atol=1e-6)

  model, params = _params()
  x = rng.integers(0, 6, (5, 4)).astype(np.float32)
  p = _np_tree(params)
  h = _np_layer(x, p["local_0"], True)
  h = _np_layer(h, p["local_1"], True)
  expected = _np_layer(h, p["out"], False)
  got = model.apply(params, jnp.asarray(x), False)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_global_kernel_and_convolution_equal_numpy():
  rng = np.random.default_rng(1)
  n_items, n_users = 5, 4
  recon = rng.normal(3, 1, (n_items + 3, n_users))  # 3 padded rows: not pooled
  conv_kernel = rng.normal(0, 0.1, (n_items, 9))
  pooled = recon[:n_items].mean(axis=1)
  expected_kernel = 0.7 * np.einsum("i,ik->k", pooled, conv_kernel).reshape(3, 3)
  kernel = gk.global_kernel(jnp.asarray(recon, jnp.float32),
                            jnp.asarray(conv_kernel, jnp.float32), 3, 0.7)
  np.testing.assert_allclose(kernel, expected_kernel, rtol=1e-5, atol=1e-6)

  ratings = rng.integers(0, 6, (n_items, n_users)).astype(np.float64)
  signed = np.array([[0.5, -1.0, 0.2], [1.0, 0.3, -0.4], [-0.2, 0.8, 0.1]])  # asymmetric
  np.testing.assert_allclose(gk.global_conv(jnp.asarray(ratings, jnp.float32),
                                            jnp.asarray(signed, jnp.float32)),
                             _np_conv_same(ratings, signed), rtol=1e-5, atol=1e-5)

  # The fine-tuning network: pool the local AE's reconstruction, convolve, reconstruct.
  model, params = _params()
  p = _np_tree(params)

  def local(x):
    return _np_layer(_np_layer(_np_layer(x, p["local_0"], True), p["local_1"], True),
                     p["out"], False)

  kernel = 0.7 * (local(ratings).mean(axis=1) @ p["conv_kernel"]).reshape(3, 3)
  expected = local(_np_conv_same(ratings, kernel))
  got = model.apply(params, jnp.asarray(ratings, jnp.float32), True)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("finetune", [False, True])
def test_objective_equals_hand_computation(finetune):
  model, params = _params(seed=3)
  ratings = np.array([[5, 0, 3, 0], [0, 4, 0, 1], [2, 0, 0, 0], [0, 0, 5, 4], [1, 2, 0, 0]],
                     np.float32)
  mask = (ratings > 0).astype(np.float32)
  lambda_2, lambda_s = 0.3, 0.05
  pred = np.asarray(model.apply(params, jnp.asarray(ratings), finetune), np.float64)
  observed = [(i, j) for i in range(5) for j in range(4) if ratings[i, j] > 0]
  squared = sum((ratings[i, j] - pred[i, j]) ** 2 for i, j in observed) / 2
  p = _np_tree(params)
  reg = sum(lambda_2 / 2 * np.sum(p[name]["W"] ** 2)
            + lambda_s / 2 * np.sum(_np_local_kernel(p[name]["u"], p[name]["v"]) ** 2)
            for name in ("local_0", "local_1", "out"))  # conv_kernel is not regularised
  got = gk.objective(model, params, jnp.asarray(ratings), jnp.asarray(mask), finetune,
                     lambda_2, lambda_s)
  assert float(got) == pytest.approx(squared + reg, rel=1e-5)
  # An unobserved entry's value does not enter the squared error (only through the input).
  assert len(observed) < ratings.size


def test_pretraining_epochs_are_never_best(store_root, tmp_path):
  """The contract test's tiny run on one device (its programs compiled once for both): the
  pre-training epoch validates better than the fine-tuning one (whose global kernel starts
  untrained), yet best is the fine-tuning epoch, restored with the fine-tuning network."""
  from netrec_jax.train import loop
  config = tiny_run_config(store_root, "glocal_k", **{
      **TINY_MODEL_FIELDS["glocal_k"], "mesh.data": 1, "train.early_stopping_patience": 0,
      "eval.ranking": "never"})
  final = loop.train_and_evaluate(config, tmp_path / "run")
  log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in log] == [0, 1]
  rmse = [r["valid_rmse"] for r in log]
  assert rmse[0] < rmse[1]  # the pre-training epoch would have been best
  assert final["best_epoch"] == final["checkpoint_epoch"] == 1
  assert "fine-tuned" in final["predictions"]
  assert final["valid"]["rmse"] == pytest.approx(rmse[1], rel=1e-6)


@pytest.mark.parametrize("finetune", [False, True])
def test_item_codes_feed_the_output_layer(finetune):
  """The item vectors the use modes read are what the output layer turns into ratings."""
  model, params = _params(seed=5)
  ratings = jnp.asarray(np.random.default_rng(5).integers(0, 6, (5, 4)), jnp.float32)
  codes = np.asarray(model.apply(params, ratings, finetune, method=gk.GLocalK.codes),
                     np.float64)
  out = _np_tree(params)["out"]
  np.testing.assert_allclose(model.apply(params, ratings, finetune),
                             _np_layer(codes, out, False), rtol=1e-5, atol=1e-5)


def test_a_netflix_sized_matrix_is_refused_before_it_is_built():
  from netrec_jax import configs
  from netrec_jax.train import glocal_k as family_lib
  g = configs.base_config().glocal_k
  # ML-100K fits in 1 GiB; Netflix (17,770 x 480,189: 34 GB per dense copy) does not in 24.
  family_lib.check_fits(1682, 943, g, 2**30, "host MemAvailable")
  assert family_lib.bytes_needed(17_770, 480_189, g) > 4 * 4 * 17_770 * 480_189
  with pytest.raises(ValueError, match=r"17,770 x 480,189 needs about .* GiB, but only 24.0 "
                     "GiB of host MemAvailable is free"):
    family_lib.check_fits(17_770, 480_189, g, 24 * 2**30, "host MemAvailable")
