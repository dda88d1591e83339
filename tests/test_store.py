"""Tests for the rating store and its builder: layout, id maps, ordering, features, atomicity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from netrec_jax.data import builder as builder_lib
from netrec_jax.data.builder import StoreBuilder, group_positions, stable_argsort
from netrec_jax.data.errors import DataError
from netrec_jax.data.store import (NO_DATE, SCHEMA_VERSION, RatingStore, days_to_iso,
                                   iso_to_days)

# (original user, original item, stars, date): users and items deliberately out of id order,
# two same-day pairs (user 30 on 2003-05-01, user 10 on 2001-01-01) to check the item tie-break.
RATINGS = [
    (30, 7, 4, "2003-05-01"),
    (10, 3, 5, "2001-01-01"),
    (20, 5, 2, "2002-02-02"),
    (10, 7, 3, "2000-06-15"),
    (30, 3, 1, "2003-05-01"),
    (40, 9, 5, "2004-12-31"),
    (20, 9, 4, "2001-07-04"),
    (10, 100, 2, "2001-01-01"),
    (30, 5, 3, "1999-12-31"),
    (20, 3, 4, "2005-03-03"),
]
USER_IDS = [10, 20, 30, 40]
ITEM_IDS = [3, 5, 7, 9, 100]


def _columns(ratings=RATINGS):
  users = np.array([r[0] for r in ratings], np.int64)
  items = np.array([r[1] for r in ratings], np.int64)
  stars = np.array([r[2] for r in ratings], np.int32)
  days = np.array([iso_to_days(r[3]) for r in ratings], np.int32)
  return users, items, stars, days


def _build(dest: Path, ratings=RATINGS, *, chunk: int = 4, source: Path | None = None,
           **kwargs) -> RatingStore:
  users, items, stars, days = _columns(ratings)
  with StoreBuilder(dest, name="hand", **kwargs) as b:
    if source is not None:
      b.add_source(source, role="ratings")
    for lo in range(0, len(users), chunk):
      sl = slice(lo, lo + chunk)
      b.add(users[sl], items[sl], stars[sl], days[sl])
    return b.finish()


def _leftovers(parent: Path, name: str) -> list[str]:
  return sorted(p.name for p in parent.iterdir()
                if p.name.startswith(f".{name}.building-") or p.name.startswith(f".{name}.old-"))


@pytest.fixture(scope="module")
def source_file(tmp_path_factory) -> Path:
  path = tmp_path_factory.mktemp("src") / "ratings.txt"
  path.write_text("".join(f"{u},{i},{s},{d}\n" for u, i, s, d in RATINGS))
  return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, source_file) -> RatingStore:
  return _build(tmp_path_factory.mktemp("stores") / "hand", source=source_file)


# -------------------------------------------------------------------------- contents
def test_counts_and_dtypes(store):
  assert (store.n_ratings, store.n_users, store.n_items) == (10, 4, 5)
  for name in ("user", "item", "rating", "date"):
    column = getattr(store, name)
    assert column.dtype == np.int32, name
    assert column.shape == (10,)
  assert store.user_offsets.dtype == np.int64
  assert store.item_offsets.dtype == np.int64
  assert store.user_offsets.shape == (5,) and store.item_offsets.shape == (6,)
  assert store.item_order.dtype == np.int32  # fewer than 2^31 rows
  np.testing.assert_array_equal(store.ratings_per_user(), [3, 3, 3, 1])
  np.testing.assert_array_equal(store.ratings_per_item(), [3, 2, 2, 2, 1])
  assert store.rating_scale == 1 and store.rating_range == (1.0, 5.0)


def test_id_maps(store):
  np.testing.assert_array_equal(store.user_original_ids(), USER_IDS)
  np.testing.assert_array_equal(store.item_original_ids(), ITEM_IDS)
  np.testing.assert_array_equal(store.user_index([30, 10, 40, 20]), [2, 0, 3, 1])
  np.testing.assert_array_equal(store.item_index([100, 3, 9]), [4, 0, 3])
  # Unknown ids (below, between, above the known ones, negative) map to -1.
  np.testing.assert_array_equal(store.user_index([5, 15, 41, -10, 10**12]), [-1] * 5)
  np.testing.assert_array_equal(store.item_index([0, 4, 101, -3]), [-1] * 4)
  assert store.user_index([30]).dtype == np.int64
  # Both directions agree.
  np.testing.assert_array_equal(store.user_index(store.user_original_ids()), np.arange(4))
  np.testing.assert_array_equal(store.item_index(store.item_original_ids()), np.arange(5))
  users = store.users_table().to_pydict()
  assert users["index"] == [0, 1, 2, 3] and users["original_id"] == USER_IDS


def test_rows_are_grouped_by_user_and_ordered_by_date_then_item(store):
  user_ids, item_ids = store.user_original_ids(), store.item_original_ids()
  user = np.asarray(store.user)
  assert np.all(np.diff(user) >= 0)  # user-major: each user's rows are contiguous
  for u in range(store.n_users):
    rows = store.user_rows(u)
    assert np.all(user[rows] == u)
    got = [(int(item_ids[i]), int(r), days_to_iso(int(d))) for i, r, d in
           zip(store.item[rows], store.rating[rows], store.date[rows])]
    expected = sorted(((i, s, d) for uu, i, s, d in RATINGS if uu == user_ids[u]),
                      key=lambda t: (t[2], t[0]))
    assert got == expected, f"user {user_ids[u]}"
  # The same-day ties are broken by item: user 30 rated 3 then 7 on 2003-05-01.
  rows = store.user_rows(2)
  assert [int(item_ids[i]) for i in store.item[rows]] == [5, 3, 7]
  assert [int(item_ids[i]) for i in store.item[store.user_rows(0)]] == [7, 3, 100]
  assert store.user_rows(3) == slice(9, 10)


def test_item_rows_are_exactly_the_items_rows(store):
  item = np.asarray(store.item)
  seen = []
  for i in range(store.n_items):
    rows = store.item_rows(i)
    np.testing.assert_array_equal(rows, np.flatnonzero(item == i))  # exact set, ascending
    seen.extend(rows.tolist())
  assert sorted(seen) == list(range(store.n_ratings))
  # Item 3 (dense 0) was rated by users 10, 20 and 30 with 5, 4 and 1 stars.
  rows = store.item_rows(0)
  assert store.user_original_ids()[store.user[rows]].tolist() == [10, 20, 30]
  assert store.stars(rows).tolist() == [5.0, 4.0, 1.0]


def test_feature_tables_match_numpy(store):
  users, items, stars, _ = _columns()
  global_mean = stars.mean()
  for table, ids, key in ((store.users_table(), USER_IDS, users),
                          (store.items_table(), ITEM_IDS, items)):
    data = table.to_pydict()
    counts = np.array([(key == x).sum() for x in ids])
    means = np.array([stars[key == x].mean() for x in ids])
    assert data["original_id"] == ids
    np.testing.assert_array_equal(data["n_ratings"], counts)
    np.testing.assert_allclose(data["mean_rating"], means, rtol=1e-6)
    np.testing.assert_allclose(data["log_n_ratings"], np.log1p(counts), rtol=1e-6)
  assert store.meta["global_mean"] == pytest.approx(global_mean)


def test_meta_json(store, source_file):
  meta = json.loads((store.path / "meta.json").read_text())
  assert meta["schema_version"] == SCHEMA_VERSION == 1
  assert (meta["n_ratings"], meta["n_users"], meta["n_items"], meta["n_read"]) == (10, 4, 5, 10)
  assert meta["rating_range"] == [1.0, 5.0] and meta["rating_scale"] == 1
  assert meta["observed_rating_range"] == [1.0, 5.0]
  assert meta["date_range"] == ["1999-12-31", "2005-03-03"]
  assert meta["has_dates"] is True
  assert meta["fingerprint"] == store.fingerprint
  assert len(meta["fingerprint"]) == 32 and int(meta["fingerprint"], 16) >= 0
  assert meta["filters"] == {"min_user_ratings": 0, "min_item_ratings": 0}
  assert meta["bad_lines"] == {"count": 0, "by_reason": {}, "examples": []}
  [source] = meta["sources"]
  assert source["path"] == str(source_file.resolve())
  assert source["bytes"] == source_file.stat().st_size and source["role"] == "ratings"
  summary = store.summary()
  assert summary["n_ratings"] == 10 and summary["density"] == pytest.approx(10 / 20)
  assert summary["fingerprint"] == store.fingerprint and summary["splits"] == []


def test_dates_are_days_since_epoch(store):
  assert iso_to_days("1970-01-01") == 0 and iso_to_days("2000-01-01") == 10957
  assert days_to_iso(10957) == "2000-01-01" and days_to_iso(NO_DATE) is None
  row = store.user_rows(3).start  # user 40's one rating, 2004-12-31
  assert int(store.date[row]) == iso_to_days("2004-12-31") == 12783


def test_builder_filters(tmp_path):
  # min_user_ratings=2 drops user 40 (1 rating), and then item 9 keeps only user 20's rating;
  # min_item_ratings=2 then drops item 9 and item 100 (1 rating each).
  store = _build(tmp_path / "f", min_user_ratings=2, min_item_ratings=2)
  np.testing.assert_array_equal(store.user_original_ids(), [10, 20, 30])
  np.testing.assert_array_equal(store.item_original_ids(), [3, 5, 7])
  assert store.n_ratings == 7 and store.meta["n_read"] == 10
  assert store.meta["filters"] == {"min_user_ratings": 2, "min_item_ratings": 2}
  assert set(np.unique(store.user)) == {0, 1, 2} and set(np.unique(store.item)) == {0, 1, 2}
  with pytest.raises(DataError, match="no ratings left after filtering"):
    _build(tmp_path / "none", min_user_ratings=100)
  assert not (tmp_path / "none").exists() and _leftovers(tmp_path, "none") == []


# ----------------------------------------------------------------------- fingerprint
def test_fingerprint_is_a_function_of_the_data(tmp_path, store):
  shuffled = [RATINGS[k] for k in np.random.default_rng(3).permutation(len(RATINGS))]
  same = _build(tmp_path / "same", shuffled, chunk=3)  # other input order and chunking
  assert same.fingerprint == store.fingerprint
  changed = list(RATINGS)
  changed[3] = (10, 7, 4, "2000-06-15")  # one rating 3 -> 4 stars
  assert _build(tmp_path / "rating", changed).fingerprint != store.fingerprint
  changed = list(RATINGS)
  changed[3] = (10, 7, 3, "2000-06-16")  # one date a day later
  assert _build(tmp_path / "date", changed).fingerprint != store.fingerprint
  changed = list(RATINGS)
  changed[5] = (41, 9, 5, "2004-12-31")  # one original user id
  assert _build(tmp_path / "id", changed).fingerprint != store.fingerprint


def _random_ratings(rng, n_users, n_items, n, id_scale):
  pairs = rng.choice(n_users * n_items, size=n, replace=False)
  user_ids = np.sort(rng.choice(id_scale, n_users, replace=False)) + 1
  item_ids = np.sort(rng.choice(id_scale, n_items, replace=False)) + 1
  users = user_ids[pairs // n_items]
  items = item_ids[pairs % n_items]
  stars = rng.integers(1, 6, n).astype(np.int32)
  days = rng.integers(iso_to_days("2000-01-01"), iso_to_days("2000-03-01"), n).astype(np.int32)
  return users, items, stars, days


# Small ids are counted and mapped through dense tables, huge ones by sorting; "mixed" starts
# with small ids and switches to huge ones mid-stream.
@pytest.mark.parametrize("ids", ["small", "huge", "mixed"])
def test_random_store_matches_numpy_and_small_blocks_agree(tmp_path, monkeypatch, ids):
  id_scale = 10_000 if ids == "small" else 10**11
  users, items, stars, days = _random_ratings(np.random.default_rng(0), 150, 60, 3000, id_scale)
  if ids == "mixed":  # half the ids small; the first chunk has only small user and item ids
    for ids_ in (users, items):
      uniq, rank = np.unique(ids_, return_inverse=True)
      ids_[:] = np.where(rank < len(uniq) // 2, rank + 1, ids_)
    order = np.argsort(np.maximum(users, items) > 10**6, kind="stable")
    users, items, stars, days = users[order], items[order], stars[order], days[order]
    assert users[:700].max() < 100 and items[:700].max() < 100 and users.max() > 10**6

  def build(dest):
    with StoreBuilder(dest, name="random") as b:
      for lo in range(0, len(users), 700):
        b.add(users[lo:lo + 700], items[lo:lo + 700], stars[lo:lo + 700], days[lo:lo + 700])
      return b.finish()

  store = build(tmp_path / "default_blocks")
  user_ids, item_ids = np.unique(users), np.unique(items)
  np.testing.assert_array_equal(store.user_original_ids(), user_ids)
  np.testing.assert_array_equal(store.item_original_ids(), item_ids)
  u, i = np.searchsorted(user_ids, users), np.searchsorted(item_ids, items)
  order = np.lexsort((i, days, u))
  np.testing.assert_array_equal(store.user, u[order])
  np.testing.assert_array_equal(store.item, i[order])
  np.testing.assert_array_equal(store.rating, stars[order])
  np.testing.assert_array_equal(store.date, days[order])
  np.testing.assert_array_equal(store.user_offsets, np.searchsorted(u[order], np.arange(151)))
  for item in (0, 17, 59):
    np.testing.assert_array_equal(store.item_rows(item), np.flatnonzero(store.item == item))

  # Many small buckets, chunks and buckets spilled to disk, and int64 (date, item) columns:
  # each gives the same store.
  monkeypatch.setattr(builder_lib, "BLOCK_ROWS", 97)
  small = build(tmp_path / "small_blocks")
  monkeypatch.setattr(builder_lib, "MEMORY_BUDGET_BYTES", 5000)
  spilled = build(tmp_path / "spilled")
  stats = spilled.meta["build_stats"]
  assert stats["spilled_chunks"] > 0 and stats["spilled_bucket_parts"] > 0
  assert stats["buckets"] > 20 and stats["column_dtype"] == "int32"
  monkeypatch.setattr(builder_lib.RowOrder, "INT32_BITS", 0)
  unpacked = build(tmp_path / "unpacked")
  assert unpacked.meta["build_stats"]["column_dtype"] == "int64"
  for other in (small, spilled, unpacked):
    assert other.fingerprint == store.fingerprint
    np.testing.assert_array_equal(other.item_order, store.item_order)
    np.testing.assert_array_equal(other.item_offsets, store.item_offsets)
    np.testing.assert_array_equal(other.rating, store.rating)
  leftovers = [p.name for d in (small, spilled, unpacked) for p in d.path.iterdir()
               if p.name.startswith(("chunk", "bucket", "spill"))]
  assert leftovers == []


def test_ratings_without_dates(tmp_path):
  users, items, stars, _ = _columns()
  with StoreBuilder(tmp_path / "undated", name="undated", has_dates=False) as b:
    b.add(users, items, stars)
    store = b.finish()
  assert not store.has_dates and store.meta["date_range"] is None
  assert np.all(np.asarray(store.date) == NO_DATE)
  # Without dates, each user's rows are ordered by item.
  for u in range(store.n_users):
    assert np.all(np.diff(store.item[store.user_rows(u)]) > 0)


def test_half_star_scale(tmp_path):
  users, items, _, days = _columns()
  halves = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], np.int32)  # 0.5 .. 5.0 stars
  with StoreBuilder(tmp_path / "half", name="half", rating_scale=2,
                    rating_range=(0.5, 5.0)) as b:
    b.add(users, items, halves, days)
    store = b.finish()
  assert store.rating_scale == 2 and store.rating_range == (0.5, 5.0)
  assert sorted(store.stars().tolist()) == [0.5 * k for k in range(1, 11)]
  assert store.stars().dtype == np.float32
  with pytest.raises(ValueError, match="outside"):
    with StoreBuilder(tmp_path / "bad", name="bad", rating_scale=2, rating_range=(0.5, 5.0)) as b:
      b.add(users[:1], items[:1], np.array([11], np.int32), days[:1])
  assert not (tmp_path / "bad").exists() and _leftovers(tmp_path, "bad") == []


# ------------------------------------------------------------------------- atomicity
def test_exception_mid_build_leaves_nothing(tmp_path):
  users, items, stars, days = _columns()
  dest = tmp_path / "out" / "store"
  with pytest.raises(RuntimeError, match="boom"):
    with StoreBuilder(dest, name="x") as b:
      b.add(users[:5], items[:5], stars[:5], days[:5])
      b.add(users[5:], items[5:], stars[5:], days[5:])
      assert len(_leftovers(dest.parent, "store")) == 1  # the temp folder exists meanwhile
      raise RuntimeError("boom")
  assert not dest.exists()
  assert list(dest.parent.iterdir()) == []


def test_failure_inside_finish_leaves_nothing(tmp_path):
  dest = tmp_path / "dup"
  with pytest.raises(DataError, match="duplicate rating: user 10 rated item 3"):
    _build(dest, RATINGS + [(10, 3, 2, "2006-01-01")])
  assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_no_ratings_is_an_error(tmp_path):
  with pytest.raises(DataError, match="no ratings were read"):
    with StoreBuilder(tmp_path / "empty", name="empty") as b:
      b.finish()
  assert list(tmp_path.iterdir()) == []


def test_overwrite(tmp_path):
  dest = tmp_path / "store"
  first = _build(dest)
  with pytest.raises(DataError, match="already exists") as err:
    _build(dest, RATINGS[:5])
  assert err.value.path == str(dest)
  assert RatingStore.open(dest).fingerprint == first.fingerprint  # untouched
  assert _leftovers(tmp_path, "store") == []
  second = _build(dest, RATINGS[:5], overwrite=True)
  assert second.n_ratings == 5 and second.fingerprint != first.fingerprint
  assert RatingStore.open(dest).n_ratings == 5
  assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no .old-/.building- left


# --------------------------------------------------------------------- opening errors
@pytest.fixture
def copy(store, tmp_path) -> Path:
  dest = tmp_path / "copy"
  shutil.copytree(store.path, dest)
  assert RatingStore.open(dest).fingerprint == store.fingerprint
  return dest


def test_open_missing_folder(tmp_path):
  with pytest.raises(DataError, match="folder does not exist") as err:
    RatingStore.open(tmp_path / "nowhere")
  assert str(tmp_path / "nowhere") in str(err.value)


def test_open_without_meta(copy):
  (copy / "meta.json").unlink()
  with pytest.raises(DataError, match="meta.json is missing") as err:
    RatingStore.open(copy)
  assert str(copy) in str(err.value)


def test_open_corrupt_meta(copy):
  (copy / "meta.json").write_text("{not json")
  with pytest.raises(DataError, match="corrupt metadata") as err:
    RatingStore.open(copy)
  assert err.value.path == str(copy / "meta.json")


def test_open_other_schema_version(copy):
  meta = json.loads((copy / "meta.json").read_text())
  meta["schema_version"] = 99
  (copy / "meta.json").write_text(json.dumps(meta))
  with pytest.raises(DataError, match="schema version 99") as err:
    RatingStore.open(copy)
  assert err.value.path == str(copy / "meta.json")


@pytest.mark.parametrize("name", ["user.npy", "item.npy", "rating.npy", "date.npy",
                                  "user_offsets.npy", "item_order.npy", "item_offsets.npy",
                                  "users.parquet", "items.parquet"])
def test_open_missing_file(copy, name):
  (copy / name).unlink()
  with pytest.raises(DataError, match="missing file") as err:
    RatingStore.open(copy)
  assert err.value.path == str(copy / name)
  assert str(err.value).startswith(f"{copy / name}: ")


@pytest.mark.parametrize("name", ["user", "item", "rating", "date", "item_order",
                                  "user_offsets", "item_offsets"])
def test_open_truncated_column(copy, name):
  column = np.load(copy / f"{name}.npy")
  np.save(copy / f"{name}.npy", column[:-1])
  with pytest.raises(DataError, match="inconsistent") as err:
    RatingStore.open(copy)
  assert err.value.path == str(copy / f"{name}.npy")
  assert f"{name}.npy" in str(err.value) and f"({len(column) - 1},)" in str(err.value)


def test_open_column_cut_mid_file(copy):
  data = (copy / "rating.npy").read_bytes()
  (copy / "rating.npy").write_bytes(data[:-7])
  with pytest.raises(DataError, match="rating.npy"):
    RatingStore.open(copy)


def test_open_wrong_dtype(copy):
  np.save(copy / "item.npy", np.load(copy / "item.npy").astype(np.int64))
  with pytest.raises(DataError, match="dtype int64, expected int32") as err:
    RatingStore.open(copy)
  assert err.value.path == str(copy / "item.npy")


def test_open_offsets_not_ending_at_n_ratings(copy):
  offsets = np.load(copy / "user_offsets.npy")
  offsets[-1] += 1
  np.save(copy / "user_offsets.npy", offsets)
  with pytest.raises(DataError, match="offsets do not end at n_ratings"):
    RatingStore.open(copy)


def test_columns_are_read_only(store):
  with pytest.raises((ValueError, OSError)):
    store.rating[0] = 3


# ------------------------------------------------------------------ int64 arithmetic
def counting_sort_positions(keys, cursor):
  """The store build's CSC step: a stable radix argsort, then each row's destination."""
  order = stable_argsort(keys, len(cursor))
  return order, group_positions(keys[order], cursor)


def test_stable_argsort_wide_keys():
  keys = np.random.default_rng(0).integers(0, 3 * 2**16 + 5, 5000)
  np.testing.assert_array_equal(stable_argsort(keys, 3 * 2**16 + 5),
                                np.argsort(keys, kind="stable"))


def test_counting_sort_positions_groups_stably():
  keys = np.array([2, 0, 2, 1, 0, 2], np.int32)
  cursor = np.array([0, 2, 3], np.int64)
  order, positions = counting_sort_positions(keys, cursor)
  out = np.empty(6, np.int64)
  out[positions] = np.arange(6)[order]
  np.testing.assert_array_equal(out, [1, 4, 3, 0, 2, 5])  # stable within each group
  np.testing.assert_array_equal(cursor, [2, 3, 6])  # advanced to the ends of the groups


def test_counting_sort_positions_past_2_31():
  base = 2**31 + 12_345
  cursor = np.array([base, 2**32 + 7, 2**40], np.int64)
  keys = np.array([1, 0, 1, 0, 0, 2, 1], np.int32)
  order, positions = counting_sort_positions(keys, cursor)
  assert positions.dtype == np.int64
  np.testing.assert_array_equal(keys[order], [0, 0, 0, 1, 1, 1, 2])
  expected = [base, base + 1, base + 2, 2**32 + 7, 2**32 + 8, 2**32 + 9, 2**40]
  assert positions.tolist() == expected  # exact, not wrapped to negative int32 values
  assert cursor.tolist() == [base + 3, 2**32 + 10, 2**40 + 1]
  # A second chunk continues from the advanced cursor.
  _, more = counting_sort_positions(np.array([0, 2], np.int32), cursor)
  assert more.tolist() == [base + 3, 2**40 + 1]


def test_user_blocks_past_2_31():
  offsets = np.array([0, 2**31 - 5, 2**31 + 3, 2**32 + 1, 2**32 + 2], np.int64)
  blocks = list(builder_lib._user_blocks(offsets, 1 << 22))
  assert blocks == [(0, 1), (1, 2), (2, 3), (3, 4)]
  assert list(builder_lib._user_blocks(offsets, 2**33)) == [(0, 4)]


def test_offsets_past_2_31_through_the_store_api(store):
  # A fake store whose offsets exceed int32 (no data behind them): arithmetic stays exact.
  user_offsets = np.array([0, 2**31 - 3, 2**31 + 40, 3 * 2**31], np.int64)
  fake = RatingStore(path=store.path, meta=dict(store.meta), user=store.user, item=store.item,
                     rating=store.rating, date=store.date, user_offsets=user_offsets,
                     item_order=store.item_order,
                     item_offsets=np.array([0, 2**31 + 1, 3 * 2**31], np.int64))
  assert fake.user_rows(1) == slice(2**31 - 3, 2**31 + 40)
  assert fake.user_rows(2) == slice(2**31 + 40, 3 * 2**31)
  np.testing.assert_array_equal(fake.ratings_per_user(), [2**31 - 3, 43, 3 * 2**31 - 2**31 - 40])
  np.testing.assert_array_equal(fake.ratings_per_item(), [2**31 + 1, 2 * 2**31 - 1])
  width = 64  # row offset x embedding width, as when slicing a flat [rows * width] buffer
  assert int(fake.user_offsets[-1] * width) == 3 * 2**31 * 64
  assert (fake.user_offsets * width).tolist() == [x * 64 for x in user_offsets.tolist()]
  # The real store's offsets are int64 too, so the same products are exact there.
  assert store.user_offsets.dtype == np.int64 and store.item_offsets.dtype == np.int64
  assert (store.user_offsets + np.int64(2**31)).dtype == np.int64
  assert int((store.user_offsets[-1] + 2**31) * width) == (10 + 2**31) * 64
