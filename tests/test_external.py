"""Predictions written by another tool, scored by our evaluator into our comparison."""

import copy
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import tiny_run_config
from netrec_jax import compare
from netrec_jax.baselines.external import ExternalFileError, ExternalPredictions
from netrec_jax.data import datasets
from netrec_jax.eval import metrics as metrics_lib


@pytest.fixture(scope="module")
def run(store_root):
  config = tiny_run_config(store_root, "mf")
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  return config, store, split


def _write_csv(path, header, rows):
  path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
  return path


def test_a_file_scores_exactly_like_the_model_that_wrote_it(run, tmp_path):
  """jax_als's own scores and item-mean ratings, written with original ids and read back
  through compare.external, give the same metrics as the model (rankings) and as numpy
  (RMSE computed here from the file)."""
  config, store, split = run
  config = copy.deepcopy(config)
  train, test = split.rows("train"), split.rows("test")
  als = compare.fit_baseline("jax_als", store, train, {"factors": 8, "iterations": 3})
  users = np.unique(np.take(store.user, test))
  scores = als.score_items(users)
  sums = np.bincount(np.take(store.item, train), store.stars(train), store.n_items)
  counts = np.bincount(np.take(store.item, train), minlength=store.n_items)
  item_mean = np.where(counts > 0, sums / np.maximum(counts, 1), store.stars(train).mean())
  uid, iid = store.user_original_ids(), store.item_original_ids()
  # Scores: every item of every test user; ratings: the item means, for every item as well.
  u = np.repeat(users, store.n_items)
  i = np.tile(np.arange(store.n_items), len(users))
  table = pa.table({"user": uid[u], "item": iid[i], "score": scores.reshape(-1),
                    "rating": item_mean[i]})
  pq.write_table(table, tmp_path / "als.parquet")
  with config.unlocked():
    config.compare.models = "jax_als"
    config.compare.external = f"als_file={tmp_path / 'als.parquet'}"
  # The comparison's jax_als is refitted with the same settings (deterministic, seed 0).
  settings = {"factors": 8, "iterations": 3}
  compare.BASELINES["jax_als_small"] = ("jax", "als", {**compare.BASELINES["jax_als"][2],
                                                        **settings})
  try:
    with config.unlocked():
      config.compare.models = "jax_als_small"
    results = {r["model"]: r for r in compare.compare(config, tmp_path / "cmp")}
  finally:
    del compare.BASELINES["jax_als_small"]
  ours, theirs = results["jax_als_small"]["ranking"], results["als_file"]["ranking"]
  for key in ("recall@10", "ndcg@10", "mrr"):
    assert theirs[key] == pytest.approx(ours[key], abs=1e-12), key
  expected = metrics_lib.rating_metrics(item_mean[np.take(store.item, test)],
                                        store.stars(test), store.rating_range)
  assert results["als_file"]["rating"]["rmse"] == pytest.approx(expected["rmse"])
  md = (tmp_path / "cmp" / "comparison.md").read_text()
  assert "als_file" in md
  saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
  assert {r["model"] for r in saved} == {"jax_als_small", "als_file"}


def test_a_top_n_list_ranks_listed_items_first(run, tmp_path):
  _, store, split = run
  uid, iid = store.user_original_ids(), store.item_original_ids()
  path = _write_csv(tmp_path / "top.csv", "user,item,score",
                    [(uid[0], iid[5], 2.0), (uid[0], iid[3], 1.0)])
  model = ExternalPredictions(path, "top").fit(store, split.rows("train"))
  scores = model.score_items(np.array([0, 1]))
  assert np.argsort(-scores[0], kind="stable")[:2].tolist() == [5, 3]
  assert scores[0, 3] > scores[0, 0] and np.ptp(scores[1]) == 0
  assert model.predict(np.array([0]), np.array([5])) is None  # scores only: ranks, rates none


@pytest.mark.parametrize("rows, message", [
    ([("U", "I0", 3.0), ("U", "I0", 4.0)], "line 3: user .* item .* is given twice"),
    ([("U", "I0", 3.0), (999999, "I0", 4.0)], "line 3: user id 999999 is not in store"),
    ([("U", "I0", "nan")], "line 2: rating is missing"),
    ([("U", "I0", "inf")], "line 2: rating inf is not a finite number"),
    ([("U", "I0", "x")], "x"),
])
def test_bad_lines_are_named(run, tmp_path, rows, message):
  _, store, split = run
  uid, iid = store.user_original_ids(), store.item_original_ids()
  fill = {"U": uid[0], "I0": iid[0]}
  rows = [tuple(fill.get(v, v) if isinstance(v, str) else v for v in r) for r in rows]
  path = _write_csv(tmp_path / "bad.csv", "user,item,rating", rows)
  with pytest.raises(ExternalFileError, match=message) as info:
    ExternalPredictions(path, "bad").fit(store, split.rows("train"))
  assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_missing_test_rating_is_named(run, tmp_path):
  _, store, split = run
  uid, iid = store.user_original_ids(), store.item_original_ids()
  path = _write_csv(tmp_path / "few.csv", "user,item,rating", [(uid[0], iid[0], 3.0)])
  model = ExternalPredictions(path, "few").fit(store, split.rows("train"))
  with pytest.raises(ExternalFileError, match="no rating for 1 of the 2 pairs"):
    model.predict(np.array([0, 1]), np.array([0, 0]))


# ---------------------------------------------------------------------------- the blend
def test_the_blend_is_ridge_on_validation_predictions(run, tmp_path):
  """The blend row's test predictions equal a ridge fitted here by normal equations on the
  same validation features (computed another way), at the alpha it chose."""
  pytest.importorskip("surprise")
  config, store, split = run
  config = copy.deepcopy(config)
  with config.unlocked():
    config.split.valid_fraction = 0.1
    config.compare.models = "surprise_baseline,jax_als"
    config.compare.blend = True
    config.compare.baseline = "surprise_baseline"
  results = {r["model"]: r for r in compare.compare(config, tmp_path / "cmp")}
  weights = json.loads((tmp_path / "cmp" / "blend_weights.json").read_text())
  assert set(weights["features"]) >= {"pred:surprise_baseline", "pred:jax_als", "log_n_user"}
  split = datasets.make_split(store, config.split)
  train, valid, test = (split.rows(p) for p in ("train", "valid", "test"))
  models = [compare.fit_baseline(n, store, train) for n in ("surprise_baseline", "jax_als")]

  def features(rows):
    u, i = np.take(store.user, rows), np.take(store.item, rows)
    preds = np.stack([m.predict(u, i) for m in models], 1)
    lu = np.log1p(np.bincount(np.take(store.user, train), minlength=store.n_users))[u]
    li = np.log1p(np.bincount(np.take(store.item, train), minlength=store.n_items))[i]
    cross = [preds[:, k] * s for k in range(preds.shape[1]) for s in (lu, li)]
    return np.column_stack([preds, lu, li, *cross])

  x, y = features(valid), store.stars(valid)
  mean_x, mean_y = x.mean(0), y.mean()
  xc = x - mean_x
  coef = np.linalg.solve(xc.T @ xc + weights["alpha"] * np.eye(x.shape[1]), xc.T @ (y - mean_y))
  expected = np.clip((features(test) - mean_x) @ coef + mean_y, *store.rating_range)
  truth = store.stars(test)
  rmse = float(np.sqrt(np.mean((expected - truth) ** 2)))
  assert results["blend"]["rating"]["rmse"] == pytest.approx(rmse, rel=1e-6)
  assert np.allclose(list(weights["features"].values()), coef, atol=1e-6)
  # Every model is also tested against the chosen baseline (the blend beats it or ties).
  vs_base = results["blend"]["significance"]["rmse"]
  assert {"p_vs_baseline_holm", "tied_with_baseline"} <= set(vs_base)
  assert results["surprise_baseline"]["significance"]["rmse"]["tied_with_baseline"]  # itself
  assert "vs_baseline" in (tmp_path / "cmp" / "significance.md").read_text()
  assert results["blend"]["rating"]["rmse"] <= min(
      results[n]["rating"]["rmse"] for n in ("surprise_baseline", "jax_als")) + 0.01
