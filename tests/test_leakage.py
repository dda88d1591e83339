"""The leakage audit: each check catches a planted leak, clean splits pass, a run stops."""

from __future__ import annotations

import dataclasses
import json
import types

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import tiny_run_config

from netrec_jax import configs
from netrec_jax.data import datasets, features, negatives, splits, synthetic
from netrec_jax.data.store import RatingStore, iso_to_days
from netrec_jax.eval import evaluator, leakage
from netrec_jax.train import loop

POP20 = types.SimpleNamespace(sampled_negatives=20, negative_sampler="popularity")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> RatingStore:
  cfg = synthetic.SyntheticConfig(n_users=300, n_items=120, n_ratings=9000)
  return synthetic.build_synthetic_store(cfg, tmp_path_factory.mktemp("leak") / "s")


def _names(record, failed_only=True):
  return [c["name"] for c in record["checks"] if not failed_only or not c["passed"]]


def _with_items(store, changes: dict[int, int]) -> RatingStore:
  """The store with some rows' items changed (a leak planted in its columns)."""
  item = np.array(store.item)
  for row, value in changes.items():
    item[row] = value
  return dataclasses.replace(store, item=item)


def _rows_of(store, split, part, user):
  rows = split.rows(part)
  return rows[np.take(store.user, rows) == user]


def _original(store, user, item) -> str:
  return f"user {store.user_original_ids()[user]} item {store.item_original_ids()[item]}"


# ----------------------------------------------------------------------------- clean splits
def test_clean_splits_pass_every_applicable_check(store):
  cases = {
      "random": (splits.random_split(store), POP20,
                 {"test_pairs_not_in_train_or_valid", "valid_pairs_not_in_train",
                  "features_from_train_rows", "popularity_from_train_rows",
                  "negatives_exclude_positives"}),
      "time": (splits.time_split(store, "2004-01-01", 0.1), None,
               {"test_pairs_not_in_train_or_valid", "valid_pairs_not_in_train",
                "train_before_cutoff", "features_from_train_rows",
                "popularity_from_train_rows"}),
      "loo": (splits.leave_last_out(store), POP20,
              {"test_pairs_not_in_train_or_valid", "valid_pairs_not_in_train",
               "time_order_per_user", "features_from_train_rows",
               "popularity_from_train_rows", "negatives_exclude_positives"}),
      "strong": (splits.strong_generalization(store, heldout_users=30, threshold=3), POP20,
                 {"test_pairs_not_in_train_or_valid", "valid_pairs_not_in_train",
                  "features_from_train_rows", "popularity_from_train_rows",
                  "fold_in_excludes_targets", "heldout_users_not_in_train"}),
  }
  for name, (split, eval_cfg, applicable) in cases.items():
    data = evaluator.prepare(store, split)
    record = leakage.audit(store, split, eval_cfg=eval_cfg, eval_data=data, features=True)
    assert record["passed"], (name, record.get("message"))
    assert {c["name"] for c in record["checks"] if c["applicable"]} == applicable, name
    assert record["split_fingerprint"] == splits.fingerprint_of(split)
    json.dumps(record)  # what leakage_audit.json holds
  # The counts are counts of this split: the pair check looked at every test row.
  split = cases["random"][0]
  record = leakage.audit(store, split)
  pairs = next(c for c in record["checks"] if c["name"] == "test_pairs_not_in_train_or_valid")
  assert pairs["counts"] == {"test_pairs": len(split.rows("test")), "in_train": 0, "in_valid": 0}


# ------------------------------------------------------------------------------ (a) pairs
def test_a_test_pair_copied_into_train_is_caught(store):
  split = splits.random_split(store)
  test_row = split.rows("test")[5]
  user, item = int(store.user[test_row]), int(store.item[test_row])
  train_row = _rows_of(store, split, "train", user)[0]
  leaky = _with_items(store, {int(train_row): item})  # a training rating of the test pair
  with pytest.raises(leakage.LeakageError) as e:
    leakage.audit(leaky, split)
  message = str(e.value)
  assert "\n" not in message
  assert "test_pairs_not_in_train_or_valid: 1 test (user, item) pairs also in train" in message
  assert f"e.g. {_original(store, user, item)} (original ids)" in message
  # A validation pair in train: the other pair check.
  valid_row = split.rows("valid")[3]
  user, item = int(store.user[valid_row]), int(store.item[valid_row])
  leaky = _with_items(store, {int(_rows_of(store, split, "train", user)[0]): item})
  record = leakage.audit(leaky, split, raise_on_failure=False)
  assert _names(record) == ["valid_pairs_not_in_train"]
  assert _original(store, user, item) in record["message"]


# ------------------------------------------------------------------------------- (b) time
def test_a_training_rating_after_the_cutoff_is_caught(store):
  split = splits.time_split(store, "2004-01-01")
  assert leakage.audit(store, split)["passed"]
  late = split.rows("test")[0]
  assignment = np.array(split.assignment)
  assignment[late] = splits.TRAIN
  leaky = dataclasses.replace(split, assignment=assignment)
  assert int(store.date[late]) >= iso_to_days("2004-01-01")
  with pytest.raises(leakage.LeakageError, match="train_before_cutoff: 1 training/validation "
                     "ratings dated on or after the cutoff 2004-01-01, e.g. train user"):
    leakage.audit(store, leaky)


def test_leave_last_out_with_a_later_training_rating_is_caught(store):
  split = splits.leave_last_out(store, n_valid=0)
  # Swap a user's held-out (latest) rating with that user's earliest training rating.
  user = next(u for u in range(store.n_users)
              if (d := np.take(store.date, _rows_of(store, split, "train", u))).size
              and d.min() < int(store.date[_rows_of(store, split, "test", u)[0]]))
  test_row, first_train = _rows_of(store, split, "test", user)[0], _rows_of(
      store, split, "train", user)[np.argmin(np.take(store.date, _rows_of(
          store, split, "train", user)))]
  assignment = np.array(split.assignment)
  assignment[test_row], assignment[first_train] = splits.TRAIN, splits.TEST
  record = leakage.audit(store, dataclasses.replace(split, assignment=assignment),
                         raise_on_failure=False)
  assert _names(record) == ["time_order_per_user"]
  assert f"user {store.user_original_ids()[user]} item" in record["message"]


# -------------------------------------------------------------- (c) features and popularity
def test_features_computed_from_all_rows_are_caught(store, monkeypatch):
  split = splits.random_split(store)
  assert leakage.audit(store, split, features=True)["passed"]

  def from_all_rows(store, split):  # the leak features.py warns about
    out = {}
    for name, column, n in (("user", store.user, store.n_users),
                            ("item", store.item, store.n_items)):
      counts, sums = features.count_and_sum(column, store.rating, n)
      out[name] = features.activity_features(counts, sums, store.rating_scale, 3.5)
    return out

  monkeypatch.setattr(features, "split_features", from_all_rows)
  with pytest.raises(leakage.LeakageError, match="features_from_train_rows: features."
                     "split_features user table differs from training-row counts at user"):
    leakage.audit(store, split, features=True)


def test_the_pair_setups_side_features_are_audited(store_root, monkeypatch):
  from netrec_jax.train import family
  config = family.resolve(tiny_run_config(store_root, "hybrid", **{"model.use_features": True}))
  setup = family.family("hybrid").setup(config)
  record = leakage.audit(setup.store, setup.split, setup=setup)
  check = next(c for c in record["checks"] if c["name"] == "features_from_train_rows")
  assert check["passed"] and "pair setup's standardised side features" in check["covers"]
  # The same setup with its user table built from every rating: the run's own table differs.
  counts, sums = features.count_and_sum(setup.store.user, setup.store.rating,
                                        setup.store.n_users)
  leaky = features.activity_features(counts, sums, setup.store.rating_scale, 3.5)
  x = np.stack([leaky["log_n_ratings"], leaky["mean_rating"]], 1)
  setup.aux = dict(setup.aux, user_features=(x - x.mean(0)) / x.std(0))
  with pytest.raises(leakage.LeakageError, match="the run's user_features differ from "
                     "features of the training rows at user"):
    leakage.audit(setup.store, setup.split, setup=setup)


def test_popularity_from_all_rows_is_caught(store):
  split = splits.random_split(store)
  data = evaluator.prepare(store, split)
  assert leakage.audit(store, split, eval_data=data)["passed"]
  data.item_popularity = np.asarray(store.ratings_per_item())  # every rating, test included
  with pytest.raises(leakage.LeakageError, match="popularity_from_train_rows: the evaluator's "
                     "item popularity differs from training counts"):
    leakage.audit(store, split, eval_data=data)


# ------------------------------------------------------------------------- (d) negatives
def test_a_negative_that_is_a_positive_is_caught(store):
  split = splits.leave_last_out(store)
  fixed = negatives.fixed_negatives(store, split, "popularity", 20)
  assert leakage.audit(store, split, eval_cfg=POP20)["passed"]
  user = int(fixed.users[7])
  positive = int(store.item[_rows_of(store, split, "valid", user)[0]])
  items = fixed.items.copy()
  items[7, 3] = positive
  planted = dataclasses.replace(fixed, items=items)
  with pytest.raises(leakage.LeakageError) as e:
    leakage.audit(store, split, eval_cfg=POP20, negatives=planted)
  assert "negatives_exclude_positives: 1 sampled negatives are known positives of their " \
         f"user, e.g. {_original(store, user, positive)}" in str(e.value)


# --------------------------------------------------------------------------- (e) fold-in
def test_a_fold_in_input_equal_to_a_scored_item_is_caught(store):
  split = splits.strong_generalization(store, heldout_users=30, threshold=3)
  data = evaluator.prepare(store, split)
  assert leakage.audit(store, split, eval_data=data)["passed"]
  # In the evaluator's fold-in matrix: one of a user's scored targets given as input.
  user = int(np.flatnonzero(np.diff(data.relevant.indptr))[0])
  target = int(data.relevant.indices[data.relevant.indptr[user]])
  planted = dataclasses.replace(data, fold_in=data.fold_in + sp.csr_matrix(
      ([4.0], ([user], [target])), shape=data.fold_in.shape))
  with pytest.raises(leakage.LeakageError, match="fold_in_excludes_targets: the evaluator "
                     f"folds in 1 items it scores, e.g. {_original(store, user, target)}"):
    leakage.audit(store, split, eval_data=planted)
  # In the split's rows: a fold-in row made equal to a target of the same user.
  fold_in_row = _rows_of(store, split, "test_fold_in", user)[0]
  leaky = _with_items(store, {int(fold_in_row): target})
  record = leakage.audit(leaky, split, raise_on_failure=False)
  assert _names(record) == ["fold_in_excludes_targets"]
  assert "1 test targets are also fold-in inputs" in record["message"]
  # A held-out user's row moved to train.
  assignment = np.array(split.assignment)
  assignment[fold_in_row] = splits.TRAIN
  record = leakage.audit(store, dataclasses.replace(split, assignment=assignment),
                         raise_on_failure=False)
  assert "heldout_users_not_in_train: 1 held-out users have training rows" in record["message"]


# ------------------------------------------------------------------------- through the loop
class _TrainSeesTest(splits.Split):
  """A split whose training rows also hold its test rows: the leak a bad split function
  would hand every family."""

  def rows(self, part):
    rows = super().rows(part)
    if part == "train":
      rows = np.sort(np.concatenate([rows, super().rows("test")[:3]]))
    return rows


@pytest.mark.parametrize("model", ["mf", "ease"])
def test_a_run_with_a_planted_leak_stops_before_training(store_root, tmp_path, monkeypatch,
                                                         model):
  make_split = datasets.make_split

  def leaky(store, split_cfg):
    split = make_split(store, split_cfg)
    return _TrainSeesTest(**{f.name: getattr(split, f.name)
                             for f in dataclasses.fields(split)})

  monkeypatch.setattr(datasets, "make_split", leaky)
  config = tiny_run_config(store_root, model, epochs=1)
  if model == "ease":  # trains nothing: no training fields
    with config.unlocked():
      config.train = configs.base_config().train
  workdir = tmp_path / "run"
  with pytest.raises(leakage.LeakageError, match="test_pairs_not_in_train_or_valid: 3 test "
                     r"\(user, item\) pairs also in train, e.g. user \d+ item \d+ "
                     r"\(original ids\)"):
    loop.train_and_evaluate(config, workdir)
  # Stopped before training: no checkpoint, no log, no saved model; the audit says why.
  assert not (workdir / "checkpoints").exists() and not (workdir / "metrics.jsonl").exists()
  assert not (workdir / loop.SAVED_MODEL).exists()
  record = json.loads((workdir / leakage.AUDIT_FILE).read_text())
  assert record["passed"] is False and "test_pairs_not_in_train_or_valid" in record["message"]


def test_a_clean_run_writes_its_audit_beside_the_metrics(store_root, tmp_path):
  config = tiny_run_config(store_root, "mf", epochs=1)
  loop.train_and_evaluate(config, tmp_path / "run")
  record = json.loads((tmp_path / "run" / leakage.AUDIT_FILE).read_text())
  final = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
  assert record["passed"] and record["split"] == final["split"]
  assert record["store_fingerprint"] == final["store_fingerprint"]
  applicable = _names(record, failed_only=False)
  assert "test_pairs_not_in_train_or_valid" in applicable
  popularity = next(c for c in record["checks"] if c["name"] == "popularity_from_train_rows")
  assert popularity["applicable"] and "evaluator" in popularity["covers"]
