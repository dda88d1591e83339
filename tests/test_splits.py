"""Splits: time, random, leave-last-out, official pairs; save/load; cold start; train features."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from netrec_jax.data import features, splits
from netrec_jax.data.builder import StoreBuilder
from netrec_jax.data.errors import DataError
from netrec_jax.data.store import RatingStore, days_to_iso, iso_to_days

# A hand-made store around the 2005-01-01 cutoff. User 4 rates only after the cutoff (cold
# user) and item 13 is only rated after it (cold item).
HAND = [
    # user, item, stars, date
    (1, 11, 4, "2004-01-10"), (1, 12, 3, "2004-06-01"), (1, 13, 5, "2005-02-01"),
    (2, 11, 2, "2003-05-05"), (2, 14, 4, "2004-12-31"), (2, 12, 3, "2005-01-01"),
    (3, 12, 5, "2002-02-02"), (3, 11, 1, "2004-11-11"),
    (4, 13, 4, "2005-03-03"), (4, 14, 2, "2005-04-04"),
]


def _build(dest: Path, ratings, **kwargs) -> RatingStore:
  with StoreBuilder(dest, name=dest.name, **kwargs) as b:
    b.add(np.array([r[0] for r in ratings]), np.array([r[1] for r in ratings]),
          np.array([r[2] for r in ratings], np.int32),
          np.array([iso_to_days(r[3]) for r in ratings], np.int32))
    return b.finish()


def _pairs(store: RatingStore, rows: np.ndarray) -> list[tuple[int, int]]:
  users, items = store.user_original_ids(), store.item_original_ids()
  return sorted(zip(users[store.user[rows]].tolist(), items[store.item[rows]].tolist()))


SPIKE = "2004-06-15"


def _random_store(dest: Path, n_users=400, n_items=120, n=20_000, seed=0,
                  spike: bool = True) -> RatingStore:
  rng = np.random.default_rng(seed)
  pairs = rng.choice(n_users * n_items, n, replace=False)
  days = rng.integers(iso_to_days("2000-01-01"), iso_to_days("2006-01-01"), n)
  if spike:  # 30% of ratings on one day, so same-day ties are common
    days = np.where(rng.random(n) < 0.3, iso_to_days(SPIKE), days)
  with StoreBuilder(dest, name="random") as b:
    b.add(pairs // n_items + 1, pairs % n_items + 1, rng.integers(1, 6, n).astype(np.int32),
          days.astype(np.int32))
    return b.finish()


@pytest.fixture(scope="module")
def hand(tmp_path_factory) -> RatingStore:
  return _build(tmp_path_factory.mktemp("hand") / "hand", HAND)


@pytest.fixture(scope="module")
def rand(tmp_path_factory) -> RatingStore:
  return _random_store(tmp_path_factory.mktemp("rand") / "rand")


# -------------------------------------------------------------------------- time split
def test_time_split_hand(hand):
  split = splits.time_split(hand, "2005-01-01")
  assert split.name == "time_2005" and split.protocol == "time_2005"
  assert split.sizes() == {"train": 6, "valid": 0, "test": 4, "unused": 0}
  assert _pairs(hand, split.rows("test")) == [(1, 13), (2, 12), (4, 13), (4, 14)]
  assert split.assignment.dtype == np.int8


def test_time_split_dates(tmp_path):
  cut = iso_to_days("2005-01-01")
  rand = _random_store(tmp_path / "flat", spike=False)
  split = splits.time_split(rand, "2005-01-01", valid_fraction=0.1)
  assert split.name == "time_2005_valid" and split.protocol == "time_2005"
  date = np.asarray(rand.date)
  train, valid, test = (date[split.rows(p)] for p in ("train", "valid", "test"))
  assert np.all(train < cut) and np.all(valid < cut) and np.all(test >= cut)
  assert len(train) + len(valid) == int((date < cut).sum())
  assert len(test) == int((date >= cut).sum())
  # Validation is the latest slice of the pre-cutoff ratings, about 10% of them.
  assert train.max() < valid.min()
  assert split.params["valid_from"] == days_to_iso(int(valid.min()))
  assert len(valid) / (len(train) + len(valid)) == pytest.approx(0.1, abs=0.01)
  assert split.sizes()["unused"] == 0


def test_time_split_validation_is_whole_days(rand):
  # The 90% quantile of pre-cutoff dates falls on the spike day, which cannot be split: the
  # validation slice starts the day after and is smaller than asked.
  split = splits.time_split(rand, "2005-01-01", valid_fraction=0.1)
  assert split.params["valid_from"] == "2004-06-16"
  date = np.asarray(rand.date)
  valid = date[split.rows("valid")]
  assert valid.min() >= iso_to_days("2004-06-16")
  assert np.all(date[split.rows("train")] <= iso_to_days(SPIKE))
  assert 0 < len(valid) < 0.1 * (date < iso_to_days("2005-01-01")).sum()


def test_time_split_needs_dates(tmp_path):
  with StoreBuilder(tmp_path / "undated", name="undated", has_dates=False) as b:
    b.add(np.array([1, 2]), np.array([1, 1]), np.array([3, 4], np.int32))
    store = b.finish()
  with pytest.raises(DataError, match="needs dates"):
    splits.time_split(store)


# ------------------------------------------------------------------------ random split
def test_random_split_sizes_and_seed(rand):
  split = splits.random_split(rand, test_fraction=0.1, valid_fraction=0.1, seed=0)
  assert split.name == split.protocol == "random_90_10_seed0"
  sizes = split.sizes()
  n = rand.n_ratings
  assert sum(sizes.values()) == n and sizes["unused"] == 0
  # Binomial: within 5 standard deviations.
  assert abs(sizes["test"] - 0.1 * n) < 5 * np.sqrt(n * 0.1 * 0.9)
  assert abs(sizes["valid"] - 0.09 * n) < 5 * np.sqrt(n * 0.09 * 0.91)
  again = splits.random_split(rand, test_fraction=0.1, valid_fraction=0.1, seed=0)
  np.testing.assert_array_equal(again.assignment, split.assignment)
  other = splits.random_split(rand, test_fraction=0.1, valid_fraction=0.1, seed=1)
  assert other.name == "random_90_10_seed1"
  assert (other.assignment != split.assignment).mean() > 0.1
  # The test set does not depend on valid_fraction (same seed): validation comes from train.
  no_valid = splits.random_split(rand, test_fraction=0.1, valid_fraction=0.0, seed=0)
  np.testing.assert_array_equal(no_valid.rows("test"), split.rows("test"))
  assert no_valid.sizes()["valid"] == 0
  assert splits.random_split(rand, 0.2, 0.0).name == "random_80_20_seed0"


@pytest.mark.parametrize("test_fraction, valid_fraction", [(0, 0.1), (1, 0.1), (0.1, 1.0),
                                                           (0.1, -0.1)])
def test_random_split_rejects_bad_fractions(rand, test_fraction, valid_fraction):
  with pytest.raises(ValueError, match="fractions"):
    splits.random_split(rand, test_fraction, valid_fraction)


# --------------------------------------------------------------------- leave-last-out
def test_leave_last_out_hand(hand):
  split = splits.leave_last_out(hand, n_valid=1)
  assert split.name == "loo_valid1" and split.protocol == "loo"
  # Users 1 and 2 have 3 ratings (train, valid, test); users 3 and 4 have 2: all train.
  assert _pairs(hand, split.rows("test")) == [(1, 13), (2, 12)]
  assert _pairs(hand, split.rows("valid")) == [(1, 12), (2, 14)]
  assert split.params["users_held_out"] == 2
  split = splits.leave_last_out(hand, n_valid=0)
  assert split.name == "loo"
  assert _pairs(hand, split.rows("test")) == [(1, 13), (2, 12), (3, 11), (4, 14)]
  assert split.sizes()["valid"] == 0
  split = splits.leave_last_out(hand, n_valid=0, min_train=2)
  assert _pairs(hand, split.rows("test")) == [(1, 13), (2, 12)]


def test_leave_last_out_takes_the_latest_rating(rand):
  split = splits.leave_last_out(rand, n_valid=1, min_train=2)
  counts = rand.ratings_per_user()
  date = np.asarray(rand.date)
  assignment = np.asarray(split.assignment)
  for u in range(rand.n_users):
    rows = rand.user_rows(u)
    part = assignment[rows]
    if counts[u] < 4:
      assert np.all(part == splits.TRAIN)
      continue
    assert sorted(part.tolist()) == [0] * (counts[u] - 2) + [1, 2]
    d = date[rows]
    # The test rating is on the latest day; the validation one on no later day.
    test_day, valid_day = d[part == 2][0], d[part == 1][0]
    assert test_day == d.max() and valid_day <= test_day
    assert (d[part == 0] <= valid_day).all()
  assert split.sizes()["test"] == int((counts >= 4).sum())


def test_leave_last_out_breaks_same_day_ties_at_random_not_by_item_index(tmp_path):
  """All of a user's ratings on one day: the held-out one must not be the highest item."""
  n_users, per_user = 200, 10
  store = _build(tmp_path / "same_day", [(u, i, 4, "2003-03-03") for u in range(n_users)
                                         for i in range(per_user)])
  split = splits.leave_last_out(store, n_valid=1)
  held_out = np.take(store.item, split.rows("test"))
  assert len(held_out) == n_users
  # Seeded random order: every position is held out sometimes, none always.
  counts = np.bincount(held_out, minlength=per_user)
  assert counts.max() < n_users / 4 and (counts > 0).sum() >= per_user - 1
  again = splits.leave_last_out(store, n_valid=1)
  np.testing.assert_array_equal(again.rows("test"), split.rows("test"))
  other = splits.leave_last_out(store, n_valid=1, seed=1)
  assert (other.rows("test") != split.rows("test")).any()


# ----------------------------------------------------------------------- cold start
def test_cold_start_stats_hand(hand):
  stats = splits.cold_start_stats(hand, splits.time_split(hand, "2005-01-01"))
  # Test: (1,13) cold item; (2,12) warm; (4,13) cold user and item; (4,14) cold user.
  assert stats == {"n_test": 4, "cold_user": 2, "cold_item": 2, "cold_any": 3,
                   "cold_share": 0.75, "users_in_test": 3}


def test_cold_start_stats_match_numpy(rand):
  split = splits.random_split(rand, 0.3, 0.0, seed=5)
  stats = splits.cold_start_stats(rand, split)
  user, item = np.asarray(rand.user), np.asarray(rand.item)
  train, test = split.rows("train"), split.rows("test")
  cold_user = ~np.isin(user[test], user[train])
  cold_item = ~np.isin(item[test], item[train])
  assert stats["cold_user"] == cold_user.sum() and stats["cold_item"] == cold_item.sum()
  assert stats["cold_any"] == (cold_user | cold_item).sum()
  assert stats["n_test"] == len(test)
  assert stats["users_in_test"] == len(np.unique(user[test]))


# ----------------------------------------------------------------- save and load
def test_save_load_round_trip(hand, tmp_path):
  store_dir = tmp_path / "hand"
  shutil.copytree(hand.path, store_dir)
  store = RatingStore.open(store_dir)
  split = splits.time_split(store, "2005-01-01", valid_fraction=0.2)
  path = splits.save_split(store, split)
  assert path == store_dir / "splits" / "time_2005_valid.json"
  assert store.list_splits() == ["time_2005_valid"]
  assert sorted(p.name for p in (store_dir / "splits").iterdir()) == [
      "time_2005_valid.json", "time_2005_valid.npy"]
  loaded = splits.load_split(store, "time_2005_valid")
  np.testing.assert_array_equal(loaded.assignment, split.assignment)
  assert loaded.assignment.dtype == np.int8
  assert (loaded.name, loaded.protocol) == (split.name, split.protocol)
  assert loaded.params == split.params
  assert loaded.info["sizes"] == split.sizes()
  assert loaded.info["cold_start"] == splits.cold_start_stats(store, split)
  assert loaded.info["store_fingerprint"] == store.fingerprint
  doc = json.loads(path.read_text())
  assert doc["sizes"] == split.sizes() and doc["protocol"] == "time_2005"
  assert store.summary()["splits"] == ["time_2005_valid"]
  # Saving again replaces it in place.
  splits.save_split(store, splits.time_split(store, "2005-01-01", valid_fraction=0.2))
  assert store.list_splits() == ["time_2005_valid"]

  with pytest.raises(DataError, match="no split named 'nope'") as err:
    splits.load_split(store, "nope")
  assert "time_2005_valid" in str(err.value)


def test_load_split_of_another_store_is_refused(hand, tmp_path):
  split = splits.time_split(hand, "2005-01-01")
  first = _build(tmp_path / "a", HAND)
  splits.save_split(first, split)
  changed = list(HAND)
  changed[0] = (1, 11, 5, "2004-01-10")  # same shape, one rating differs
  second = _build(tmp_path / "b", changed)
  second.splits_dir.mkdir()
  for suffix in (".json", ".npy"):
    shutil.copy(first.splits_dir / f"time_2005{suffix}", second.splits_dir)
  with pytest.raises(DataError, match="another version of this store"):
    splits.load_split(second, "time_2005")
  shorter = _build(tmp_path / "c", HAND[:-1])
  shorter.splits_dir.mkdir()
  for suffix in (".json", ".npy"):
    shutil.copy(first.splits_dir / f"time_2005{suffix}", shorter.splits_dir)
  with pytest.raises(DataError, match="split length differs"):
    splits.load_split(shorter, "time_2005")
  with pytest.raises(ValueError, match="length differs"):
    splits.save_split(shorter, split)


# ------------------------------------------------------------------ pairs and features
def test_from_test_pairs(hand, tmp_path):
  split = splits.from_test_pairs(hand, np.array([4, 1]), np.array([14, 11]), name="pairs",
                                 protocol="pairs", source=tmp_path / "pairs.txt")
  assert _pairs(hand, split.rows("test")) == [(1, 11), (4, 14)]
  assert split.sizes() == {"train": 8, "valid": 0, "test": 2, "unused": 0}
  split = splits.from_test_pairs(hand, np.array([4]), np.array([14]), name="p", protocol="p",
                                 source="x", train_pairs=(np.array([1, 2]), np.array([11, 11])))
  assert split.sizes() == {"train": 2, "valid": 0, "test": 1, "unused": 7}
  with pytest.raises(DataError, match="1 of 2 test pairs are not in the store") as err:
    splits.from_test_pairs(hand, np.array([4, 4]), np.array([14, 11]), name="p", protocol="p",
                           source=tmp_path / "pairs.txt")
  assert err.value.path == str(tmp_path / "pairs.txt")
  with pytest.raises(DataError, match="overlap"):
    splits.from_test_pairs(hand, np.array([4]), np.array([14]), name="p", protocol="p",
                           source="x", train_pairs=(np.array([4]), np.array([14])))


def test_locate_pairs(rand):
  rows = np.array([0, 17, 5000, rand.n_ratings - 1])
  found = splits.locate_pairs(rand, np.asarray(rand.user)[rows], np.asarray(rand.item)[rows])
  np.testing.assert_array_equal(found, rows)
  missing = splits.locate_pairs(rand, np.array([-1, 0, rand.n_users - 1]),
                                np.array([0, -1, rand.n_items + 5]))
  np.testing.assert_array_equal(missing, [-1, -1, -1])


def test_split_features_use_training_rows_only(tmp_path):
  store = _build(tmp_path / "a", HAND)
  split = splits.time_split(store, "2005-01-01")
  feats = features.split_features(store, split)
  # Training ratings: user 1: 4, 3; user 2: 2, 4; user 3: 5, 1; user 4: none.
  np.testing.assert_array_equal(feats["user"]["n_ratings"], [2, 2, 2, 0])
  train_mean = (4 + 3 + 2 + 4 + 5 + 1) / 6
  np.testing.assert_allclose(feats["user"]["mean_rating"], [3.5, 3.0, 3.0, train_mean],
                             rtol=1e-6)
  np.testing.assert_allclose(feats["user"]["log_n_ratings"], np.log1p([2, 2, 2, 0]), rtol=1e-6)
  # Items 11..14: 11 rated 4, 2, 1; 12 rated 3, 5; 13 never in train; 14 rated 4.
  np.testing.assert_array_equal(feats["item"]["n_ratings"], [3, 2, 0, 1])
  np.testing.assert_allclose(feats["item"]["mean_rating"], [7 / 3, 4.0, train_mean, 4.0],
                             rtol=1e-6)

  # Changing a test rating changes the whole-store features but not the split features.
  changed = [(u, i, 1 if (u, i) == (1, 13) else s, d) for u, i, s, d in HAND]
  other = _build(tmp_path / "b", changed)
  other_split = splits.time_split(other, "2005-01-01")
  np.testing.assert_array_equal(other_split.assignment, split.assignment)
  other_feats = features.split_features(other, other_split)
  for side in ("user", "item"):
    for name, values in feats[side].items():
      np.testing.assert_array_equal(other_feats[side][name], values, err_msg=f"{side} {name}")
  assert other.fingerprint != store.fingerprint
  whole = store.users_table(["mean_rating"]).column(0).to_pylist()
  other_whole = other.users_table(["mean_rating"]).column(0).to_pylist()
  assert whole[0] == pytest.approx(4.0) and other_whole[0] == pytest.approx(8 / 3)


def test_split_features_without_training_rows_is_an_error(hand):
  split = splits.time_split(hand, "1990-01-01")
  with pytest.raises(ValueError, match="no training rows"):
    features.split_features(hand, split)


def test_split_rows_rejects_unknown_part(hand):
  with pytest.raises(ValueError, match="unknown split part"):
    splits.time_split(hand).rows("training")


def test_item_cold_split_holds_out_whole_movies(rand):
  split = splits.item_cold_split(rand, item_fraction=0.2, valid_fraction=0.1, seed=3)
  assert split.protocol == "item_cold_20_seed3"
  train_items = set(np.take(rand.item, split.rows("train")).tolist())
  test_items = set(np.take(rand.item, split.rows("test")).tolist())
  assert test_items and not train_items & test_items  # no test movie has a training rating
  held = np.isin(np.asarray(rand.item), list(test_items))
  assert held.sum() == split.sizes()["test"]  # and every rating of those movies is test
  assert 0.1 < len(test_items) / rand.n_items < 0.3
  assert splits.cold_start_stats(rand, split)["cold_item"] == split.sizes()["test"]
  again = splits.item_cold_split(rand, item_fraction=0.2, valid_fraction=0.1, seed=3)
  np.testing.assert_array_equal(again.rows("test"), split.rows("test"))
