"""compare.refit, the Netflix Prize recipe: components refitted on train + validation for the
epochs validation chose, and the validation-fitted blend weights applied to them."""

import copy
import json

import numpy as np
import pytest

from conftest import TINY_MODEL_FIELDS, tiny_run_config
from netrec_jax import compare
from netrec_jax.data import datasets
from netrec_jax.data import splits as splits_lib


def _log(run_dir):
  return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]


@pytest.fixture(scope="module")
def run(store_root):
  config = tiny_run_config(store_root, "mf", epochs=8, **{
      **TINY_MODEL_FIELDS["mf"], "split.valid_fraction": 0.1, "eval.ranking": "never",
      "optimizer.sparse_lr": 0.3, "optimizer.embed_l2": 0.0, "model.embed_dim": 32})
  store = datasets.open_or_build(config.data)
  return config, store, datasets.make_split(store, config.split)


def test_the_refit_split_trains_on_train_and_valid_and_keeps_test(run):
  config, store, split = run
  merged = datasets.make_split(store, compare.refit_config(config).split)
  assert merged.name == f"{split.name}_refit" and merged.protocol == split.protocol
  assert merged.name in store.list_splits()  # saved beside the store, like every split
  expected = np.union1d(split.rows("train"), split.rows("valid"))
  assert len(split.rows("valid")) > 0
  assert np.array_equal(merged.rows("train"), expected)
  assert np.array_equal(merged.rows("test"), split.rows("test"))
  assert len(merged.rows("valid")) == 0
  assert merged.info["sizes"]["train"] == len(expected)
  strong = splits_lib.Split("s", splits_lib.STRONG_PROTOCOL, np.zeros(3, np.int8), {})
  with pytest.raises(ValueError, match="strong-generalization"):
    splits_lib.merge_valid(strong)


def test_refit_rows_train_for_the_chosen_epochs_and_blend_with_the_same_weights(run, tmp_path):
  """The refitted MF runs exactly best epoch + 1 epochs (best read here from the first run's
  validation log) on the refit split; `blend (refit)` equals the saved weights times the
  refitted models' features, computed here."""
  pytest.importorskip("surprise")
  from netrec_jax.train import loop
  config, store, split = run
  config = copy.deepcopy(config)
  with config.unlocked():
    config.compare.models = "mf,surprise_baseline"
    config.compare.blend = True
    config.compare.refit = True
  results = {r["model"]: r for r in compare.compare(config, tmp_path / "cmp")}
  assert {"mf", "surprise_baseline", "blend", "mf (refit)", "surprise_baseline (refit)",
          "blend (refit)"} == set(results)
  # eval.ranking=never holds for every row, the blend's and the refits' too.
  assert not any("ranking" in r for r in results.values())

  first = _log(tmp_path / "cmp" / "models" / "mf")
  best = int(np.argmin([r["valid_rmse"] for r in first]))
  assert best + 1 < len(first)  # early stopping or overfitting: the count is not all epochs
  refit_dir = tmp_path / "cmp" / "refit" / "mf"
  refit_log = _log(refit_dir)
  assert [r["epoch"] for r in refit_log] == list(range(best + 1))
  assert not any("valid_rmse" in r for r in refit_log)  # nothing left to validate on
  meta, _ = loop.run_meta(refit_dir)
  assert meta["split"] == f"{split.name}_refit"

  weights = json.loads((tmp_path / "cmp" / "blend_weights.json").read_text())
  assert weights["refit"]["components"] == {"mf": "mf (refit)",
                                            "surprise_baseline": "surprise_baseline (refit)"}
  train = np.union1d(split.rows("train"), split.rows("valid"))
  test = split.rows("test")
  mf = loop.load_recommender(refit_dir)
  baseline = compare.fit_baseline("surprise_baseline", store, train)
  u, i = np.take(store.user, test), np.take(store.item, test)
  preds = [np.asarray(mf.predict(u, i), np.float64), baseline.predict(u, i)]
  lu = np.log1p(np.bincount(np.take(store.user, train), minlength=store.n_users))[u]
  li = np.log1p(np.bincount(np.take(store.item, train), minlength=store.n_items))[i]
  w = weights["features"]
  blended = weights["intercept"] + w["log_n_user"] * lu + w["log_n_item"] * li
  for name, p in zip(("mf", "surprise_baseline"), preds):
    blended = blended + p * (w[f"pred:{name}"] + w[f"pred:{name}*log_n_user"] * lu
                             + w[f"pred:{name}*log_n_item"] * li)
  expected = np.clip(blended, *store.rating_range)
  rmse = float(np.sqrt(np.mean((expected - store.stars(test)) ** 2)))
  assert results["blend (refit)"]["rating"]["rmse"] == pytest.approx(rmse, rel=1e-6)
  assert results["mf (refit)"]["rating"]["rmse"] == pytest.approx(float(np.sqrt(np.mean(
      (np.clip(preds[0], *store.rating_range) - store.stars(test)) ** 2))), rel=1e-6)
  # Same rows, same tests: every row has its interval and paired test.
  assert "rmse" in results["blend (refit)"]["significance"]
  md = (tmp_path / "cmp" / "comparison.md").read_text()
  # No row ranked: the Markdown leaves the ranking columns out, the CSV keeps them.
  header = next(line for line in md.splitlines() if line.startswith("| model |"))
  assert "rmse" in header and "recall@10" not in header
  assert "recall@10" in (tmp_path / "cmp" / "comparison.csv").read_text().splitlines()[0]
  assert "blend (refit)" in md and "Netflix Prize recipe" in md


def test_glocal_k_refit_counts_its_pre_training_epochs(store_root, tmp_path):
  """GLocal-K's best is a fine-tuning epoch (Setup.select_from_epoch); the refit runs the
  pre-training epoch and the fine-tuning ones up to that best, then stops."""
  config = tiny_run_config(store_root, "glocal_k", epochs=3, **{
      **TINY_MODEL_FIELDS["glocal_k"], "mesh.data": 1, "train.early_stopping_patience": 0,
      "eval.ranking": "never"})
  with config.unlocked():
    config.compare.models = "glocal_k"
    config.compare.refit = True
  compare.compare(config, tmp_path / "cmp")
  final = json.loads((tmp_path / "cmp" / "models" / "glocal_k" / "final_metrics.json")
                     .read_text())
  first = _log(tmp_path / "cmp" / "models" / "glocal_k")
  best = 1 + int(np.argmin([r["valid_rmse"] for r in first[1:]]))  # epoch 0 pre-trains
  assert final["best_epoch"] == best
  refit = _log(tmp_path / "cmp" / "refit" / "glocal_k")
  assert [r["epoch"] for r in refit] == list(range(best + 1))
