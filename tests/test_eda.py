"""Tests for netrec_jax.analysis.eda on small stores built in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
import pytest

from netrec_jax.analysis import eda
from netrec_jax.data.builder import StoreBuilder
from netrec_jax.data.store import NO_DATE, RatingStore, iso_to_days

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N_USERS, N_ITEMS = 40, 25
TOP_TITLE = "Popular Film"  # item 0: every user rates it, so it is the most rated
NULL_YEAR_ITEM = 103  # original id of the movie without a year


def _ratings(seed: int, scale: int, rating_range: tuple[float, float]):
  """A few hundred ratings with skewed user activity and movie popularity."""
  rng = np.random.default_rng(seed)
  popularity = 1.0 / np.arange(1, N_ITEMS)  # for items 1.. ; item 0 is added to every user
  popularity /= popularity.sum()
  users, items = [], []
  for u in range(N_USERS):
    k = int(min(N_ITEMS - 1, 1 + rng.pareto(1.2) * 3))
    picked = 1 + rng.choice(N_ITEMS - 1, size=k, replace=False, p=popularity)
    chosen = np.concatenate(([0], picked))
    users.append(np.full(len(chosen), 1000 + u))
    items.append(100 + chosen)
  users, items = np.concatenate(users), np.concatenate(items)
  lo, hi = int(rating_range[0] * scale), int(rating_range[1] * scale)
  ratings = rng.integers(lo, hi + 1, size=len(users)).astype(np.int32)
  days = rng.integers(iso_to_days("2000-01-15"), iso_to_days("2001-06-30"), size=len(users))
  return users, items, ratings, days.astype(np.int32)


def _item_info() -> pa.Table:
  ids = 100 + np.arange(N_ITEMS)
  titles = [TOP_TITLE] + [f"Movie {i}" for i in ids[1:]]
  years = [None if i == NULL_YEAR_ITEM else 1980 + int(i) % 30 for i in ids]
  return pa.table({"original_id": pa.array(ids, pa.int64()), "title": titles,
                   "year": pa.array(years, pa.int32())})


def _build(dest: Path, *, scale: int = 1, rating_range=(1.0, 5.0), dates: str = "all",
           seed: int = 0) -> RatingStore:
  """dates: "all", "none" (a store without dates) or "some" (a tail of undated rows)."""
  users, items, ratings, days = _ratings(seed, scale, rating_range)
  with StoreBuilder(dest, name=dest.name, rating_scale=scale, rating_range=rating_range,
                    has_dates=dates != "none") as b:
    if dates == "all":
      b.add(users, items, ratings, days)
    elif dates == "none":
      b.add(users, items, ratings)
    else:
      cut = len(users) - 30
      b.add(users[:cut], items[:cut], ratings[:cut], days[:cut])
      b.add(users[cut:], items[cut:], ratings[cut:])
    b.set_item_info(_item_info())
    return b.finish()


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, RatingStore]:
  root = tmp_path_factory.mktemp("stores")
  return {
      "whole": _build(root / "whole_stars"),
      "half": _build(root / "half_stars", scale=2, rating_range=(0.5, 5.0), seed=1),
      "undated": _build(root / "undated", dates="none", seed=2),
      "some_dates": _build(root / "some_dates", dates="some", seed=3),
  }


def _numpy_histogram(store: RatingStore) -> dict[float, int]:
  values, counts = np.unique(np.asarray(store.rating), return_counts=True)
  return {v / store.rating_scale: int(c) for v, c in zip(values, counts)}


def _assert_png(path: Path) -> None:
  assert path.is_file() and path.stat().st_size > 1000
  assert path.read_bytes()[:8] == PNG_SIGNATURE
  image = mpimg.imread(path)
  assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400


def _top_table_titles(summary: str) -> list[str]:
  lines = summary.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith("## Top"))
  rows = [line for line in lines[start + 1:] if line.startswith("| ") and line[2].isdigit()]
  return [row.split(" | ")[1] for row in rows]


# ----------------------------------------------------------------------------- helpers
@pytest.mark.parametrize("name", ["whole", "half", "undated", "some_dates"])
def test_rating_histogram_matches_numpy(stores, name):
  store = stores[name]
  hist = eda.rating_histogram(store)
  assert {v: c for v, c in hist.items() if c} == _numpy_histogram(store)
  assert sum(hist.values()) == store.n_ratings
  assert eda.rating_histogram(store, block_rows=7) == hist  # blockwise sums agree
  lo, hi = store.rating_range
  step = 1 / store.rating_scale
  assert list(hist) == pytest.approx(list(np.arange(lo, hi + step / 2, step)))


def test_half_star_values_are_exact(stores):
  hist = eda.rating_histogram(stores["half"])
  assert list(hist)[:3] == [0.5, 1.0, 1.5] and list(hist)[-1] == 5.0
  mean, std = eda.histogram_moments(hist)
  stars = np.asarray(stores["half"].rating) / 2
  assert mean == pytest.approx(stars.mean()) and std == pytest.approx(stars.std())


def test_monthly_ratings_match_numpy(stores):
  store = stores["some_dates"]
  days = np.asarray(store.date)
  stars = np.asarray(store.rating) / store.rating_scale
  dated = days != NO_DATE
  months = days[dated].astype("datetime64[D]").astype("datetime64[M]")
  expected_months, expected_counts = np.unique(months, return_counts=True)
  monthly = eda.monthly_ratings(store, block_rows=13)
  assert monthly.n_undated == int((~dated).sum()) == 30
  present = monthly.counts > 0
  np.testing.assert_array_equal(monthly.months[present], expected_months)
  np.testing.assert_array_equal(monthly.counts[present], expected_counts)
  assert monthly.counts.sum() == dated.sum()
  assert np.all(np.diff(monthly.months.astype(np.int64)) == 1)  # consecutive months
  for month, mean in zip(monthly.months[present], monthly.mean_rating[present]):
    assert mean == pytest.approx(stars[dated][months == month].mean())
  assert monthly.first_day == str(days[dated].min().astype("datetime64[D]"))
  assert monthly.last_day == str(days[dated].max().astype("datetime64[D]"))
  default = eda.monthly_ratings(store)
  np.testing.assert_array_equal(default.counts, monthly.counts)


def test_activity_helpers():
  values = np.array([1, 1, 2, 3, 5, 8, 13, 100, 1000, 1000])
  edges = eda.log_bin_edges(values)
  assert edges[0] == 1 and edges[-1] == 1001 and np.all(np.diff(edges) > 0)
  assert np.histogram(values, bins=edges)[0].sum() == len(values)
  assert eda.activity_stats(values) == {"n": 10, "min": 1, "median": 6.5,
                                        "mean": pytest.approx(values.mean()), "max": 1000}
  x, p = eda.ccdf(values)
  np.testing.assert_array_equal(x, np.unique(values))
  np.testing.assert_allclose(p, [(values >= v).mean() for v in x])
  assert eda.top_share(values, 0.1) == pytest.approx(1000 / values.sum())
  assert eda.top_share(values, 0.2) == pytest.approx(2000 / values.sum())


def test_top_items(stores):
  store = stores["whole"]
  top = eda.top_items(store, k=N_ITEMS)
  counts = [row["n_ratings"] for row in top]
  assert counts == sorted(counts, reverse=True)
  assert counts == sorted(store.ratings_per_item().tolist(), reverse=True)
  assert top[0]["title"] == TOP_TITLE and top[0]["n_ratings"] == N_USERS
  by_id = {row["original_id"]: row for row in top}
  assert by_id[NULL_YEAR_ITEM]["year"] is None
  assert by_id[101]["year"] == 1980 + 101 % 30
  assert len(eda.top_items(store, k=3)) == 3


# ---------------------------------------------------------------------------- write_eda
def test_write_eda(stores, tmp_path):
  store = stores["whole"]
  out = tmp_path / "nested" / "eda"  # created on demand
  written = eda.write_eda(store, out, top_k=5)
  assert set(written) == {"rating_distribution", "user_activity", "movie_popularity",
                          "ratings_over_time", "summary"}
  for name, path in written.items():
    assert path.parent == out
    if name != "summary":
      assert path.name == f"{name}.png"
      _assert_png(path)
  assert plt.get_fignums() == []  # every figure closed

  summary = written["summary"].read_text()
  assert f"# EDA: {store.name}" in summary
  assert f"| ratings | {store.n_ratings:,} |" in summary
  assert f"| users | {N_USERS:,} |" in summary
  assert f"| movies | {N_ITEMS:,} |" in summary
  titles = _top_table_titles(summary)
  assert len(titles) == 5 and titles[0] == TOP_TITLE
  for value, count in _numpy_histogram(store).items():
    assert f"| {value:g} | {count:,} |" in summary
  per_user = store.ratings_per_user()
  assert (f"| per user | {per_user.min()} | {np.median(per_user):g} | {per_user.mean():,.1f} | "
          f"{per_user.max()} |") in summary
  assert f"| dates | {store.meta['date_range'][0]} to {store.meta['date_range'][1]}" in summary
  for name in ("rating_distribution", "user_activity", "movie_popularity", "ratings_over_time"):
    assert f"[{name}.png]({name}.png)" in summary


def test_write_eda_half_stars(stores, tmp_path):
  store = stores["half"]
  written = eda.write_eda(store, tmp_path)
  _assert_png(written["rating_distribution"])
  summary = written["summary"].read_text()
  assert "0.5 to 5 stars in steps of 0.5" in summary
  for value, count in _numpy_histogram(store).items():
    assert f"| {value:g} | {count:,} |" in summary
  assert _top_table_titles(summary)[0] == TOP_TITLE


def test_write_eda_without_dates(stores, tmp_path):
  store = stores["undated"]
  assert not store.has_dates
  written = eda.write_eda(store, tmp_path)
  assert "ratings_over_time" not in written
  assert not (tmp_path / "ratings_over_time.png").exists()
  for name in ("rating_distribution", "user_activity", "movie_popularity"):
    _assert_png(written[name])
  summary = written["summary"].read_text()
  assert "| dates | none" in summary
  assert "ratings_over_time.png: not written (the store has no dates)" in summary
  assert "[ratings_over_time.png]" not in summary


def test_write_eda_counts_undated_rows(stores, tmp_path):
  written = eda.write_eda(stores["some_dates"], tmp_path)
  _assert_png(written["ratings_over_time"])
  assert "| undated ratings | 30 |" in written["summary"].read_text()
