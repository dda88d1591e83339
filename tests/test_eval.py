"""The common evaluator and the baselines behind it."""

import json
import types

import jax
import numpy as np
import pytest
import scipy.sparse as sp

from conftest import tiny_run_config
from netrec_jax.data import splits
from netrec_jax.data.row_batches import interaction_matrix
from netrec_jax.data.synthetic import SyntheticConfig, build_synthetic_store
from netrec_jax.eval import evaluator
from netrec_jax.train import loop


@pytest.fixture(scope="module")
def store_and_split(tmp_path_factory):
  store = build_synthetic_store(SyntheticConfig(n_users=300, n_items=120, n_ratings=12000),
                                tmp_path_factory.mktemp("s") / "store")
  split = splits.random_split(store, 0.2, 0.0, seed=1)
  splits.save_split(store, split)
  return store, splits.load_split(store, split.name)


def tiny_config(tmp_path, n_users=300, n_items=120, n_ratings=12000):
  """A config that trains in a second or two on a small synthetic store."""
  config = tiny_run_config(tmp_path / "stores", n_users=n_users, n_items=n_items,
                           n_ratings=n_ratings, epochs=1,
                           **{"train.batch_size": 1024, "model.embed_dim": 8})
  config.eda = True  # as before
  return config


class Oracle:
  """Knows the test ratings: RMSE 0, and ranks every relevant item first."""

  name, rating_note, cold_rule = "oracle", "", "n/a"

  def __init__(self, store, data):
    self.store = store
    self.truth = {(u, i): r for u, i, r in zip(np.take(store.user, data.test_rows),
                                                np.take(store.item, data.test_rows),
                                                store.stars(data.test_rows))}
    self.relevant = data.relevant

  def predict(self, users, items):
    return np.array([self.truth[(u, i)] for u, i in zip(users, items)])

  def score_items(self, users):
    return np.asarray(self.relevant[users].todense(), np.float64)


def test_oracle_scores_perfectly_and_batches_do_not_matter(store_and_split):
  store, split = store_and_split
  data = evaluator.prepare(store, split)
  small = evaluator.evaluate(Oracle(store, data), data, ks=(5, 10), user_batch=7)
  large = evaluator.evaluate(Oracle(store, data), data, ks=(5, 10), user_batch=1000)
  assert small["rating"]["rmse"] == 0.0 and small["rating"]["clipped"]
  assert small["protocol"] == split.protocol
  assert small["ranking"]["hit_rate@10"] == 1.0
  assert small["ranking"]["recall_capped@5"] == 1.0
  for key, value in small["ranking"].items():
    if isinstance(value, float):
      assert value == pytest.approx(large["ranking"][key], rel=1e-12), key


def test_training_items_are_never_recommended(store_and_split):
  store, split = store_and_split
  data = evaluator.prepare(store, split)

  class LovesTrainItems(Oracle):
    def score_items(self, users):  # the highest scores go to items the user trained on
      return np.asarray(data.train_matrix[users].todense() > 0, np.float64)

  result = evaluator.evaluate(LovesTrainItems(store, data), data, ks=(10,))
  from netrec_jax.eval import metrics
  scores = LovesTrainItems(store, data).score_items(np.arange(20))
  topk = metrics.topk_from_scores(scores, data.train_matrix[np.arange(20)], 10)
  for u in range(20):
    seen = set(data.train_matrix[u].indices)
    assert not seen & set(topk[u][topk[u] >= 0])
  assert result["ranking"]["n_users"] > 0


def test_surprise_svd_vectorised_predictions_match_surprise(store_and_split):
  pytest.importorskip("surprise")
  from netrec_jax.baselines.surprise_models import SurpriseRecommender
  store, split = store_and_split
  data = evaluator.prepare(store, split)
  model = SurpriseRecommender("SVD", {"random_state": 0, "n_epochs": 5}).fit(store,
                                                                              data.train_rows)
  users, items = np.take(store.user, data.test_rows), np.take(store.item, data.test_rows)
  ours = model.predict(users, items)
  theirs = np.array([model.algo.predict(int(u), int(i), clip=False).est
                     for u, i in zip(users, items)])
  np.testing.assert_allclose(ours, theirs, atol=1e-9)
  baseline = SurpriseRecommender("BaselineOnly").fit(store, data.train_rows)
  theirs = np.array([baseline.algo.predict(int(u), int(i), clip=False).est
                     for u, i in zip(users[:200], items[:200])])
  np.testing.assert_allclose(baseline.predict(users[:200], items[:200]), theirs, atol=1e-9)


def test_surprise_refuses_sizes_that_do_not_fit():
  from netrec_jax.baselines.surprise_models import TooLargeError, check_size
  with pytest.raises(TooLargeError, match="Python objects"):
    check_size(100_000_000, "SVD", available=8 * 2**30)
  check_size(100_000, "SVD", available=8 * 2**30)


def test_implicit_transposed_matrix_is_caught(store_and_split):
  implicit = pytest.importorskip("implicit")
  from netrec_jax.baselines import implicit_models
  store, split = store_and_split
  matrix = interaction_matrix(store, split.rows("train"))
  wrong = implicit.als.AlternatingLeastSquares(factors=4, iterations=1, random_state=0)
  wrong.fit(sp.csr_matrix(matrix.T), show_progress=False)  # items x users: accepted silently
  with pytest.raises(implicit_models.OrientationError, match="transposed"):
    implicit_models.check_orientation(wrong, store.n_users, store.n_items)
  right = implicit_models.ImplicitRecommender("als", factors=4, iterations=2).fit(
      store, split.rows("train"))
  assert right.predict(np.array([0]), np.array([0])) is None
  assert right.score_items(np.array([0, 1])).shape == (2, store.n_items)


def test_jax_als_fits_ratings_better_than_the_mean(store_and_split):
  from netrec_jax.baselines.jax_als import JaxALS
  store, split = store_and_split
  data = evaluator.prepare(store, split)
  model = JaxALS(factors=8, reg=0.1, iterations=5, chunk=2048).fit(store, data.train_rows)
  result = evaluator.evaluate(model, data, ranking=False)
  truth = store.stars(data.test_rows)
  mean_rmse = float(np.sqrt(np.mean((truth - store.stars(data.train_rows).mean()) ** 2)))
  assert result["rating"]["rmse"] < 0.95 * mean_rmse
  # Items are solved last, given the final user factors: their normal equations hold, i.e.
  # the gradient of each item's weighted-lambda objective is ~0.
  for i in (0, 5, 17):
    rows = data.train_rows[np.take(store.item, data.train_rows) == i]
    p = model.user_factors[np.take(store.user, rows)]
    r = store.stars(rows) - model.mean
    grad = p.T @ (p @ model.item_factors[i] - r) + 0.1 * len(rows) * model.item_factors[i]
    assert np.abs(grad).max() < 1e-3 * max(1, len(rows))


def test_compare_writes_one_table_for_all_models(tmp_path):
  pytest.importorskip("surprise")
  pytest.importorskip("implicit")
  from netrec_jax import compare
  config = tiny_config(tmp_path, n_users=400, n_items=150, n_ratings=16000)
  config.train.epochs = 2
  config.compare.models = "mf,surprise_baseline,implicit_als,jax_als,jax_ials"
  config.eval.ks = (5, 10)
  config.eval.sampled_negatives = 20
  results = compare.compare(config, tmp_path / "cmp")
  by_name = {r["model"]: r for r in results}
  assert set(by_name) == {"mf", "surprise_baseline", "implicit_als", "jax_als", "jax_ials"}
  assert by_name["implicit_als"]["rating"]["applicable"] is False
  assert by_name["jax_ials"]["rating"]["applicable"] is False
  # jax_ials is implicit_als's model at its settings: the same ranking, computed by implicit.
  assert by_name["jax_ials"]["ranking"]["ndcg@10"] == pytest.approx(
      by_name["implicit_als"]["ranking"]["ndcg@10"], abs=0.01)
  assert {r["protocol"] for r in results} == {"random_90_10_seed0"}
  assert all("ndcg@10" in r["ranking"] and "hr@10" in r["sampled"] for r in results)
  md = (tmp_path / "cmp" / "comparison.md").read_text()
  assert "protocol **random_90_10_seed0**" in md and "not applicable" in md
  # The leakage audit ran once for the split, and every model ranked the same negatives.
  audit = json.loads((tmp_path / "cmp" / "leakage_audit.json").read_text())
  assert audit["passed"] and "Leakage audit: **passed**" in md
  assert len({r["sampled"]["negatives_sha256"] for r in results}) == 1
  assert f"sha256 `{results[0]['sampled']['negatives_sha256']}`" in md
  for name in ("comparison.png", "predicted_vs_true.png", "error_by_user_activity.png",
               "training_curves.png", "comparison.csv", "comparison.json", "significance.md"):
    assert (tmp_path / "cmp" / name).stat().st_size > 0, name
  # Intervals and tests: point estimates equal the table's own metrics (computed another way,
  # from the per-user values), intervals hold them, the best model is untested against itself.
  for r in results:
    sig = r["significance"]
    assert ("rmse" in sig) == (r["rating"].get("applicable", True))
    for metric, s in sig.items():
      value = r["rating"][metric] if metric in ("rmse", "mae") else r["ranking"][metric]
      assert s["estimate"] == pytest.approx(value, rel=1e-9), (r["model"], metric)
      assert s["ci_low"] <= s["estimate"] <= s["ci_high"]
      assert s["is_best"] or 0 <= s["p_vs_best_holm"] <= 1
  best_rmse = min((r for r in results if "rmse" in r["significance"]),
                  key=lambda r: r["rating"]["rmse"])
  assert best_rmse["significance"]["rmse"]["is_best"]
  assert "## Intervals and tests" in md and "| **best** |" in md
  import pyarrow.parquet as pq
  mf_users = pq.read_table(tmp_path / "cmp" / "per_user" / "mf.rating.parquet").to_pydict()
  assert sum(mf_users["n"]) == by_name["mf"]["rating"]["n"]


def test_jax_model_metrics_do_not_depend_on_device_count(tmp_path):
  config = tiny_config(tmp_path)
  config.mesh.update(data=1, model=1)
  loop.train_and_evaluate(config, tmp_path / "run")
  results = []
  for data_axis in (1, 4):
    with config.unlocked():
      config.mesh.data = data_axis
      config.train.eval_batch_size = 1000 if data_axis == 1 else 64
    model = loop.load_recommender(tmp_path / "run", config)
    assert model.exp.mesh.devices.size == data_axis
    data = evaluator.prepare(model.exp.store, model.exp.split)
    results.append(evaluator.evaluate(model, data, ks=(10,), user_batch=50 * data_axis))
  assert results[0]["rating"]["rmse"] == pytest.approx(results[1]["rating"]["rmse"], abs=1e-6)
  assert results[0]["ranking"]["ndcg@10"] == pytest.approx(results[1]["ranking"]["ndcg@10"],
                                                            abs=1e-6)


def test_train_mode_ends_in_a_comparison_when_asked(tmp_path):
  pytest.importorskip("surprise")
  from netrec_jax import pipeline
  config = tiny_config(tmp_path)
  config.eda = False
  config.compare.after_train = True
  config.compare.models = "mf,surprise_baseline"
  pipeline.train(config, tmp_path / "run")
  rows = {r["model"]: r for r in json.loads(
      (tmp_path / "run" / "comparison" / "comparison.json").read_text())}
  final = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
  # The trained run itself is what the comparison evaluated, with its own training time.
  assert rows["mf"]["rating"]["rmse"] == pytest.approx(final["test"]["rmse"], abs=1e-9)
  assert rows["mf"]["fit_seconds"] == pytest.approx(final["train_seconds"])
  assert "surprise_baseline" in rows


def test_model_overrides_parse_and_reject_malformed():
  from netrec_jax.compare import model_overrides
  assert model_overrides("hybrid:model.dropout=0.2,model.use_features=true;neumf:a.b=1") == {
      "hybrid": [("model.dropout", "0.2"), ("model.use_features", "true")],
      "neumf": [("a.b", "1")]}
  assert model_overrides("") == {}
  with pytest.raises(ValueError, match="FIELD=VALUE"):
    model_overrides("hybrid:model.dropout")


def test_compare_over_seeds_reports_mean_and_spread(store_root, tmp_path):
  pytest.importorskip("implicit")
  from netrec_jax import pipeline
  config = tiny_run_config(store_root, "mf", **{"model.embed_dim": 8})
  config.compare.models = "mf,implicit_als"
  config.compare.seeds = "0,1"
  config.eval.ks = (10,)
  summary = pipeline.compare(config, tmp_path / "cmp")
  per_seed = [{r["model"]: r for r in json.loads(
      (tmp_path / "cmp" / f"seed_{s}" / "comparison.json").read_text())} for s in (0, 1)]
  by_model = {r["model"]: r for r in summary}
  assert by_model["mf"]["runs"] == 2 and by_model["mf"]["seeds"] == 2
  rmses = [run["mf"]["rating"]["rmse"] for run in per_seed]
  assert by_model["mf"]["rmse_mean"] == pytest.approx(np.mean(rmses))
  assert by_model["mf"]["rmse_std"] == pytest.approx(np.std(rmses, ddof=1))
  assert rmses[0] != rmses[1]  # the seed reached the model
  ndcgs = [run["implicit_als"]["ranking"]["ndcg@10"] for run in per_seed]
  assert ndcgs[0] != ndcgs[1]  # and the baseline's random state
  assert (tmp_path / "cmp" / "comparison_seeds.md").is_file()


def test_compare_over_folds_averages_the_per_fold_tables(shared_data, tmp_path):
  """compare.folds on the real ML-100K folds: one table per fold, and mean / spread that
  equal the per-fold figures averaged here."""
  pytest.importorskip("surprise")
  if not (shared_data / "ml-100k" / "u1.base").is_file():
    pytest.skip(f"ML-100K not found under {shared_data}")
  from netrec_jax import configs, pipeline
  config = configs.load_experiment("ml100k")
  config.data.store_root = str(tmp_path / "stores")
  config.compare.models = "surprise_baseline"
  config.compare.folds = "u1,u2"
  config.eval.ranking = "never"
  summary = pipeline.compare(config, tmp_path / "cmp")
  rmses = [json.loads((tmp_path / "cmp" / f"fold_{f}" / "comparison.json").read_text())[0]
           ["rating"]["rmse"] for f in ("u1", "u2")]
  assert summary[0]["protocol"] == "ml100k_folds_u1_u2" and summary[0]["runs"] == 2
  assert summary[0]["rmse_mean"] == pytest.approx(np.mean(rmses))
  assert summary[0]["rmse_std"] == pytest.approx(np.std(rmses, ddof=1))
  assert (tmp_path / "cmp" / "comparison_folds.md").is_file()


def test_the_device_ranker_equals_the_host_top_k(store_and_split):
  """JaxALS's top-K on the device (eval.ranker=device) equals the numpy path's, training items
  excluded, ties by the lower index (a duplicated item column makes exact ties), and the
  ranking metrics match."""
  from netrec_jax.baselines.jax_als import JaxALS
  from netrec_jax.eval import device_topk, metrics as metrics_lib
  store, split = store_and_split
  data = evaluator.prepare(store, split)
  model = JaxALS(factors=8, reg=0.1, iterations=3).fit(store, data.train_rows)
  model.item_factors = np.array(model.item_factors)
  model.item_factors[7] = model.item_factors[3]  # exact ties between items 3 and 7
  users = np.flatnonzero(np.diff(data.relevant.indptr) > 0)
  ranker = device_topk.ranker_for(model, 20, 64, "device", len(users), store.n_items)
  device = ranker(users, data.train_matrix[users])
  scores = np.asarray(model.score_items(users), np.float64)
  host = metrics_lib.topk_from_scores(scores, data.train_matrix[users], 20)
  np.testing.assert_array_equal(device, host)
  # Each batch is split over conftest's 4 devices; a batch of 30 is rounded up to 32.
  assert ranker.n_devices == jax.local_device_count() == 4
  odd = device_topk.ranker_for(model, 20, 30, "device", len(users), store.n_items)
  assert odd.batch == 32
  np.testing.assert_array_equal(odd(users, data.train_matrix[users]), host)
  streamed = odd.stream((users[lo:lo + 32], data.train_matrix[users[lo:lo + 32]])
                        for lo in range(0, len(users), 32))
  np.testing.assert_array_equal(np.concatenate(list(streamed)), host)
  on_host = evaluator.evaluate(model, data, ks=(10, 20), ranker="host")["ranking"]
  on_device = evaluator.evaluate(model, data, ks=(10, 20), ranker="device")["ranking"]
  assert on_device["ranker"].startswith("device") and on_host["ranker"] == "host"
  for key in ("recall@10", "ndcg@20", "mrr", "coverage@10"):
    assert on_device[key] == pytest.approx(on_host[key], abs=1e-12), key
  with pytest.raises(ValueError, match="does not score by a dot product"):
    device_topk.ranker_for(types.SimpleNamespace(name="gcmc"), 20, 64, "device", 10, 10)
