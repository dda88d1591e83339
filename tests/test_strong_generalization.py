"""Strong generalization (Liang et al. 2018): the split, the fold-in evaluation, one real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_run_config

from netrec_jax import configs
from netrec_jax.data import datasets, splits
from netrec_jax.data.builder import StoreBuilder
from netrec_jax.data.store import RatingStore
from netrec_jax.eval import evaluator


def _store(dest: Path, triples, name="s") -> RatingStore:
  users, items, stars = (np.array([t[k] for t in triples]) for k in range(3))
  with StoreBuilder(dest, name=name) as b:
    b.add(users, items, stars.astype(np.int32), np.zeros(len(triples), np.int32))
    return b.finish()


@pytest.fixture(scope="module")
def rand(tmp_path_factory) -> RatingStore:
  """600 users x 150 items, about 27,000 random ratings (1..5 stars), with some users and
  items far below the filters' minimum and 40 items rated (5 stars) by one user each."""
  rng = np.random.default_rng(0)
  n_users, n_items, n = 600, 150, 30_000
  pairs = rng.choice(n_users * n_items, n, replace=False)
  rare = (pairs // n_items < 20) | (pairs % n_items >= 140)  # users 1..20, items 141..150
  pairs = pairs[~(rare & (rng.random(n) < 0.9))]
  stars = rng.integers(1, 6, len(pairs))
  single = np.arange(n_items, n_items + 40)  # items 151..190: one rater each
  users = np.concatenate([pairs // n_items, rng.integers(20, n_users, 40)]) + 1
  items = np.concatenate([pairs % n_items, single]) + 1
  stars = np.concatenate([stars, np.full(40, 5)])
  return _store(tmp_path_factory.mktemp("rand") / "rand", list(zip(users, items, stars)))


def _codes_by_user(store, split):
  users = np.asarray(store.user)
  return {code: set(np.unique(users[np.asarray(split.assignment) == code]).tolist())
          for code in (splits.TRAIN, splits.VALID, splits.TEST, splits.VALID_FOLD_IN,
                       splits.TEST_FOLD_IN)}


# ------------------------------------------------------------------------------- the split
def test_split_users_disjoint_and_80_20_per_user(rand):
  split = splits.strong_generalization(rand, heldout_users=50, seed=3)
  assert split.protocol == "strong_generalization" and split.name == "strong_gen_h50_seed3"
  by = _codes_by_user(rand, split)
  train, valid, test = by[splits.TRAIN], by[splits.VALID_FOLD_IN], by[splits.TEST_FOLD_IN]
  assert len(valid) == len(test) == 50 and not (train & valid or train & test or valid & test)
  assert by[splits.VALID] <= valid and by[splits.TEST] <= test
  info = split.info["strong_generalization"]
  assert info["train_users"] == len(train) and info["valid_users"] == info["test_users"] == 50

  a = np.asarray(split.assignment)
  users = np.asarray(rand.user)
  for target, fold in ((splits.VALID, splits.VALID_FOLD_IN), (splits.TEST, splits.TEST_FOLD_IN)):
    n_t = np.bincount(users[a == target], minlength=rand.n_users)
    n_f = np.bincount(users[a == fold], minlength=rand.n_users)
    held = n_t + n_f > 0
    assert (n_t[held] == np.floor(0.2 * (n_t + n_f)[held] + 1e-9)).all()  # Liang's int(0.2 n)
    assert (np.abs(n_t[held] - 0.2 * (n_t + n_f)[held]) < 1).all() and (n_t[held] >= 1).all()
  sizes = split.sizes()
  assert sizes["valid_fold_in"] > 0 and sizes["test_fold_in"] > 0
  assert sum(sizes.values()) == rand.n_ratings


def test_split_threshold_filters_and_catalog_are_reported(rand):
  split = splits.strong_generalization(rand, heldout_users=0.1, min_item_interactions=20)
  info = split.info["strong_generalization"]
  a = np.asarray(split.assignment)
  stars = rand.stars()
  users, items = np.asarray(rand.user), np.asarray(rand.item)
  # Ratings below the threshold are unused, and counted.
  assert (stars[a != splits.UNUSED] >= 4).all()
  assert info["ratings_below_threshold"] == int((stars < 4).sum())
  assert info["interactions"] == int((stars >= 4).sum())
  # Items filter first, then users (Liang's order), each removal counted.
  item_counts = np.bincount(items[stars >= 4], minlength=rand.n_items)
  low_items = (item_counts > 0) & (item_counts < 20)
  assert info["items_removed_by_min_interactions"] == int(low_items.sum()) > 0
  assert split.name.endswith("_i20")
  assert info["interactions_removed_by_item_filter"] == int(item_counts[low_items].sum())
  assert not np.isin(items[a != splits.UNUSED], np.flatnonzero(low_items)).any()
  left = (stars >= 4) & ~low_items[items]
  user_counts = np.bincount(users[left], minlength=rand.n_users)
  low_users = (user_counts > 0) & (user_counts < 5)
  assert info["users_removed_by_min_interactions"] == int(low_users.sum()) > 0
  assert info["interactions_removed_by_user_filter"] == int(user_counts[low_users].sum())
  assert not np.isin(users[a != splits.UNUSED], np.flatnonzero(low_users)).any()
  # Held-out users keep only catalog items (those of training interactions), counted: seen
  # without the item filter, which would remove the one-rater items first.
  split = splits.strong_generalization(rand, heldout_users=0.1)
  info = split.info["strong_generalization"]
  a = np.asarray(split.assignment)
  left = stars >= 4
  catalog = np.bincount(items[a == splits.TRAIN], minlength=rand.n_items) > 0
  assert info["catalog_items"] == int(catalog.sum())
  assert catalog[items[(a != splits.UNUSED) & (a != splits.TRAIN)]].all()
  heldout_users = np.flatnonzero(np.isin(np.arange(rand.n_users),
                                         users[(a != splits.UNUSED) & (a != splits.TRAIN)]))
  lost = left & np.isin(users, heldout_users) & ~catalog[items]
  assert info["heldout_interactions_outside_catalog"] == int(lost.sum()) > 0
  assert info["heldout_items_outside_catalog"] == len(np.unique(items[lost]))
  # n_heldout as a share of the users kept; 0 disables the user filter.
  kept = info["train_users"] + 2 * split.params["n_heldout"]
  assert split.params["n_heldout"] == round(0.1 * kept)
  nofilter = splits.strong_generalization(rand, heldout_users=0.1, min_user_interactions=0)
  assert nofilter.info["strong_generalization"]["users_removed_by_min_interactions"] == 0
  assert nofilter.name.endswith("_u0")


def test_split_is_seeded_and_refuses_too_many_heldout(rand):
  a = splits.strong_generalization(rand, heldout_users=40, seed=1)
  b = splits.strong_generalization(rand, heldout_users=40, seed=1)
  c = splits.strong_generalization(rand, heldout_users=40, seed=2)
  np.testing.assert_array_equal(a.assignment, b.assignment)
  assert not np.array_equal(a.assignment, c.assignment)
  with pytest.raises(ValueError, match="2 \\* n_heldout"):
    splits.strong_generalization(rand, heldout_users=400)


def test_save_load_round_trip_and_make_split(rand):
  cfg = configs.base_config().split
  cfg.kind, cfg.heldout_users, cfg.seed = "strong", 30.0, 5
  split = datasets.make_split(rand, cfg)  # made, saved, loaded back
  fresh = splits.strong_generalization(rand, heldout_users=30, seed=5)
  np.testing.assert_array_equal(split.assignment, fresh.assignment)
  assert split.name == "strong_gen_h30_seed5" and split.protocol == "strong_generalization"
  assert split.info["strong_generalization"] == fresh.info["strong_generalization"]
  assert split.info["sizes"] == fresh.sizes() and "test_fold_in" in split.info["sizes"]
  back = splits.load_split(rand, split.name)
  assert back.info == split.info and back.params == split.params
  np.testing.assert_array_equal(back.assignment, split.assignment)
  # The fingerprint covers the fold-in codes: moving one fold-in row to a target changes it.
  moved = np.array(split.assignment)
  moved[np.flatnonzero(moved == splits.TEST_FOLD_IN)[0]] = splits.TEST
  assert splits._digest(moved) != split.info["fingerprint"]
  # The same config again loads the saved split.
  assert datasets.make_split(rand, cfg).info["fingerprint"] == split.info["fingerprint"]


# -------------------------------------------------------------------------- the evaluation
# A hand split over items a..f (dense 0..5). T trains on a..e (f only below the threshold, so
# f is outside the catalog). Test users A, B, C and validation user V each fold in some
# items and are scored on the others:
#   A: fold-in {a}     targets {c, e}
#   B: fold-in {b, d}  targets {a}
#   C: fold-in {a, b}  targets {c, d, e}
#   V: fold-in {a}     targets {b}
T, A, B, C, V = 1, 2, 3, 4, 5
FOLD = {A: [0], B: [1, 3], C: [0, 1], V: [0]}
TARGETS = {A: [2, 4], B: [0], C: [2, 3, 4], V: [1]}


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
  triples = [(T, i + 1, 5) for i in range(5)] + [(T, 6, 2)]
  for u in (A, B, C, V):
    triples += [(u, i + 1, 4 + (i % 2)) for i in FOLD[u] + TARGETS[u]]
  store = _store(tmp_path_factory.mktemp("hand") / "hand", triples, "hand")
  users = store.user_original_ids()[np.asarray(store.user)]
  items = np.asarray(store.item)
  assert (store.item_original_ids() == np.arange(1, 7)).all()
  assignment = np.full(store.n_ratings, splits.UNUSED, np.int8)
  for r, (u, i) in enumerate(zip(users, items)):
    if u == T:
      assignment[r] = splits.TRAIN if store.stars(np.array([r]))[0] >= 4 else splits.UNUSED
    elif i in TARGETS[u]:
      assignment[r] = splits.VALID if u == V else splits.TEST
    else:
      assignment[r] = splits.VALID_FOLD_IN if u == V else splits.TEST_FOLD_IN
  split = splits.Split(name="hand_strong", protocol=splits.STRONG_PROTOCOL,
                       assignment=assignment, params={"interaction_threshold": 4.0})
  return store, split


class Stub:
  """fold_in scores: item i gets 10 - i, except f (10: outside the catalog) and the fold-in
  items themselves (100: the best scores, so they would top every list if not excluded)."""

  name, rating_note, fold_in_method = "stub", "", "known scores"

  def __init__(self):
    self.calls = []

  def predict(self, users, items):
    raise AssertionError("rating predictions are not asked for under strong generalization")

  def score_items(self, users):
    raise AssertionError("held-out users are scored through fold_in only")

  def fold_in(self, items, stars):
    self.calls.append((list(np.asarray(items)), list(np.asarray(stars))))
    scores = 10.0 - np.arange(6)
    scores[5] = 10.0
    scores[np.asarray(items)] = 100.0
    return scores


class BatchStub(Stub):
  def fold_in_batch(self, inputs):
    return np.stack([Stub.fold_in(self, inputs[r].indices, inputs[r].data)
                     for r in range(inputs.shape[0])])


def _eval_cfg():
  cfg = configs.base_config().eval
  cfg.relevance_threshold = 4.0
  return cfg


def test_recall_and_ndcg_match_a_hand_calculation(hand):
  store, split = hand
  data = evaluator.prepare(store, split)
  model = Stub()
  out = evaluator.evaluate(model, data, ks=(2, 3), per_user=True)
  r = out["ranking"]
  # Rankings (fold-in items and f excluded): A [b c d e], B [a c e], C [c d e].
  #   @2: A [b c] 1 hit of 2, B [a c] 1 of 1, C [c d] 2 of 3.
  #   @3: A [b c d] 1 of 2,   B [a c e] 1 of 1, C [c d e] 3 of 3.
  d = 1 / np.log2(3)
  assert r["recall@2"] == pytest.approx((1 / 2 + 1 + 2 / 2) / 3)  # min(K, n) denominator
  assert r["recall_uncapped@2"] == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
  assert r["recall@3"] == pytest.approx((1 / 2 + 1 + 3 / 3) / 3)
  assert r["ndcg@2"] == pytest.approx((d / (1 + d) + 1 + 1) / 3)
  assert r["ndcg@3"] == pytest.approx((d / (1 + d) + 1 + 1) / 3)
  assert r["n_users"] == 3 and r["protocol"] == "strong_generalization"
  assert "recall_capped@2" not in r and r["catalog_items"] == 5
  assert "rating >= 4" in r["relevance"] and "min(K, n_targets)" in r["recall_definition"]
  # Per-user values, by user id, whose means are the aggregates.
  pu = out["_per_user"]["ranking"]
  dense = store.user_index(np.array([A, B, C]))
  np.testing.assert_array_equal(pu["users"], np.sort(dense))
  by_user = dict(zip(pu["users"].tolist(), pu["recall@2"].tolist()))
  assert [by_user[u] for u in dense] == pytest.approx([0.5, 1.0, 1.0])
  # Rating metrics are absent, not zero; each test user was folded in once, with its stars.
  assert out["rating"]["applicable"] is False and "rmse" not in out["rating"]
  assert sorted(len(items) for items, _ in model.calls) == [1, 2, 2]  # A, B, C
  assert all(s in (4.0, 5.0) for _, stars in model.calls for s in stars)
  # The batched hook gives the same figures.
  batched = evaluator.evaluate(BatchStub(), data, ks=(2, 3))["ranking"]
  assert {k: v for k, v in batched.items() if k != "fold_in"} == {
      k: v for k, v in r.items() if k != "fold_in"}
  assert batched["fold_in"].startswith("fold_in_batch")


def test_fold_in_items_are_never_ranked(hand):
  store, split = hand
  data = evaluator.prepare(store, split)
  model = Stub()
  # The stub scores fold-in items 100 and f 10: the top 3 must still be catalog non-inputs.
  scores = evaluator.fold_in_scores(model, data.fold_in[store.user_index(np.array([A]))])
  assert np.argsort(-scores[0])[0] == 0  # A's fold-in item a has the best score
  out = evaluator.evaluate(model, data, ks=(1,))
  # @1: A gets b (miss), B gets a (hit), C gets c (hit). Without the exclusion every list
  # would start with a fold-in item and hit nothing.
  assert out["ranking"]["recall@1"] == pytest.approx(2 / 3)
  assert out["ranking"]["coverage@1"] == pytest.approx(3 / 6)  # a, b, c; never f


def test_validation_users_feed_validation_and_no_fold_in_is_reported(hand):
  store, split = hand
  valid = evaluator.part_data(store, split, "valid", _eval_cfg())
  assert valid.fold_in.nnz == 1 and valid.relevant.nnz == 1  # V only
  figures = evaluator.validation_metrics(Stub(), valid, "rmse", _eval_cfg())
  assert "rmse" not in figures  # does not apply: the loop finds no value
  assert figures["ndcg@100"] == 1.0 and figures["recall@20"] == 1.0  # V's b ranks first
  asked = evaluator.validation_metrics(Stub(), valid, "ndcg@100", _eval_cfg())
  assert asked["ndcg@100"] == 1.0 and asked["mrr"] == 1.0

  class NoFoldIn:
    name, rating_note = "no_fold_in", ""

  out = evaluator.evaluate(NoFoldIn(), evaluator.prepare(store, split), ks=(20,))
  assert out["ranking"]["applicable"] is False and "fold" in out["ranking"]["reason"]
  assert evaluator._flat(out)["ranking"].startswith("cannot fold in")


# ---------------------------------------------------------------------- one real training run
def test_mf_end_to_end_on_the_strong_split(tmp_path):
  from netrec_jax.train import loop
  config = tiny_run_config(tmp_path / "stores", "mf", split="strong", epochs=1,
                           **{"split.heldout_users": 30.0, "model.embed_dim": 8,
                              "train.batch_size": 1024})
  final = loop.train_and_evaluate(config, tmp_path / "run")
  saved = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
  assert saved["protocol"] == "strong_generalization" and saved["split"] == "strong_gen_h30_seed0"
  for part in ("valid", "test"):
    figures = saved[part]
    assert figures["ranking_protocol"] == "strong_generalization"
    assert 0.0 <= figures["ndcg@100"] <= 1.0 and 0.0 <= figures["recall@20"] <= 1.0
    assert "recall@50" in figures and "rmse" not in figures
    assert figures["rating"].startswith("not applicable")
    assert 0 < figures["n_users"] <= 30
  assert final["test"]["ndcg@100"] == saved["test"]["ndcg@100"]
  # Explicit MF validates by RMSE elsewhere; held-out users have no ratings to predict from,
  # so the loop picks best by the validation users' NDCG@100, logged as such.
  log = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
  assert log["valid_ndcg@100"] == pytest.approx(saved["valid"]["ndcg@100"], abs=1e-9)
  assert "valid_rmse" not in log


def test_config_ranges_of_the_strong_fields():
  from netrec_jax import config_checks
  config = configs.base_config()
  config.split.target_fraction, config.split.heldout_users = 1.0, 0.0
  config.split.min_user_interactions = -1
  found = config_checks.problems(config)
  assert {p.split(" = ")[0] for p in found} == {
      "split.min_user_interactions", "split.target_fraction", "split.heldout_users"}


def test_kcore_iterates_both_filters_to_a_fixed_point(rand):
  """With kcore every user and item that keeps an interaction has at least its minimum,
  checked by a plain Python iteration over (user, item) sets; one pass (Liang's) leaves some
  items below it on this store."""
  k_user, k_item = 5, 6
  interactions = {(int(u), int(i)) for u, i, s in zip(rand.user, rand.item, rand.stars())
                  if s >= 4}
  while True:  # the k-core, computed another way
    users, items = {}, {}
    for u, i in interactions:
      users[u] = users.get(u, 0) + 1
      items[i] = items.get(i, 0) + 1
    kept = {(u, i) for u, i in interactions if users[u] >= k_user and items[i] >= k_item}
    if kept == interactions:
      break
    interactions = kept
  core_users = {u for u, _ in interactions}
  split = splits.strong_generalization(rand, heldout_users=30, min_user_interactions=k_user,
                                       min_item_interactions=k_item, kcore=True, seed=0)
  assert split.name.endswith("_kcore") and split.params["kcore"] is True
  used = np.asarray(split.assignment) != splits.UNUSED
  assert set(np.unique(np.asarray(rand.user)[used]).tolist()) == core_users
  train_items = np.asarray(rand.item)[np.asarray(split.assignment) == splits.TRAIN]
  assert set(train_items.tolist()) <= {i for _, i in interactions}
  info = split.info["strong_generalization"]
  assert info["kcore_rounds"] >= 1 and info["interactions_removed_by_kcore"] > 0
  one_pass = splits.strong_generalization(rand, heldout_users=30, min_user_interactions=k_user,
                                          min_item_interactions=k_item, seed=0)
  kept_one = np.asarray(one_pass.assignment) != splits.UNUSED
  assert kept_one.sum() > used.sum()  # one pass keeps interactions the k-core removes
