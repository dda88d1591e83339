"""iALS as a family (netrec_jax/train/ials.py): the saved-model round trip through the loop,
fold-in against numpy's solve of the normal equations, refusals and the use modes. The
fit itself is tested against implicit's ALS objective in test_als.py."""

import json

import numpy as np
import pytest

from conftest import assert_use_modes, damaged_copy, tiny_run_config
from netrec_jax import config_checks, configs
from netrec_jax.baselines.jax_als import ials_objective
from netrec_jax.data.row_batches import interaction_matrix
from netrec_jax.train import checkpoint as ckpt_lib
from netrec_jax.train import family, ials, loop


def tiny_config(store_root, **fields):
  return tiny_run_config(store_root, "ials", epochs=None, **{
      "eval.ks": (10, 20), "ials.factors": 8, "ials.iterations": 4, **fields})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp("ials")
  config = tiny_config(root / "stores")
  return config, root / "run", loop.train_and_evaluate(config, root / "run")


def test_round_trip_gives_the_same_metrics_and_the_saved_objective(run, tmp_path):
  config, workdir, final = run
  saved = json.loads((workdir / loop.SAVED_MODEL).read_text())
  assert final["checkpoint"] == "saved" and len(saved["iteration_seconds"]) == 4
  for part in ("valid", "test"):
    assert "rmse" not in final[part] and final[part]["rating"].startswith("not applicable")
    assert 0 < final[part]["recall@20"] <= 1
  evaluated = loop.evaluate_checkpoint(config, workdir, tmp_path / "eval")
  for part in ("valid", "test"):
    for key in ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr"):
      assert evaluated[part][key] == final[part][key], (part, key)
  # The restored factors give the objective recorded at fit time, recomputed here in numpy.
  recommender = loop.load_recommender(workdir)
  x = interaction_matrix(recommender.store, recommender.split.rows("train"))
  objective = ials_objective(x, recommender.model.user_factors, recommender.model.item_factors,
                             0.05, 2.0, "linear")
  assert objective == pytest.approx(saved["objective"], rel=1e-9)
  # Scores are the factors' dot products, which the device ranker may use.
  users = np.array([0, 7])
  np.testing.assert_allclose(recommender.score_items(users),
                             recommender.model.user_factors[users]
                             @ recommender.model.item_factors.T, rtol=1e-6)


def test_fold_in_solves_the_normal_equations(run):
  """A new user's factors: (w0 Y^T Y + sum_i (c_i - w0) y_i y_i^T + reg I) x = sum_i c_i y_i,
  c_i = alpha (linear confidence on a binary row), solved here in float64."""
  _, workdir, _ = run
  recommender = loop.load_recommender(workdir)
  y = recommender.model.item_factors.astype(np.float64)
  items = np.array([2, 5, 11, 40])
  alpha, reg, w0 = 2.0, 0.05, 1.0
  a = w0 * y.T @ y + (alpha - w0) * y[items].T @ y[items] + reg * np.eye(y.shape[1])
  x = np.linalg.solve(a, alpha * y[items].sum(0))
  folded = recommender.fold_in(items, np.array([5.0, 4.0, 1.0, 3.0]))
  np.testing.assert_allclose(folded, x @ y.T, rtol=2e-3, atol=2e-5)
  with pytest.raises(ValueError, match="at least one"):
    recommender.fold_in(np.array([], np.int64), np.array([]))


def test_damaged_factors_are_refused(run, tmp_path):
  _, workdir, _ = run
  with pytest.raises(ckpt_lib.CheckpointError, match="checksum"):
    loop.load_recommender(damaged_copy(workdir, ials.MODEL_FILE, tmp_path))


@pytest.mark.parametrize("model,field,value", [("ials", "train.epochs", "7"),
                                               ("ials", "ease.l2", "7"),
                                               ("mf", "ials.factors", "7")])
def test_a_field_the_model_does_not_read_is_refused(model, field, value):
  config = configs.base_config()
  config.model.name = model
  configs.set_field(config, field, value)
  with pytest.raises(config_checks.ConfigError, match=field.replace(".", r"\.")):
    family.resolve(config)


def test_bad_values_are_refused():
  config = configs.base_config()
  config.model.name = "ials"
  config.ials.confidence = "log"
  with pytest.raises(ValueError, match=r"ials\.confidence"):
    family.resolve(config)
  config = configs.base_config()
  config.model.name = "ials"
  config.ials.unobserved_weight = 0.0
  with pytest.raises(config_checks.ConfigError, match=r"ials\.unobserved_weight"):
    family.resolve(config)


def test_use_modes_recommend_a_new_user_and_similar_movies(run):
  _, workdir, _ = run
  opened = assert_use_modes(workdir)
  # Similar movies rank by the cosine of the item factors.
  y = opened.recommender.model.item_factors
  assert opened.recommender.item_vectors() is y and y.shape[1] == 8
