"""Sources into stores: Netflix, MovieLens 100K / 1M / latest, synthetic, Parquet, real data."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest

from netrec_jax.data import movielens, netflix, parquet_io, splits, synthetic, textio
from netrec_jax.data.store import RatingStore, days_to_iso, iso_to_days

# ----------------------------------------------------------------------------- Netflix
# (movie, customer, stars, date), in file order; two files of `MOVIE:` blocks.
NETFLIX_FILE_1 = {
    1: [(1488844, 3, "2005-09-06"), (822109, 5, "2005-05-13"), (885013, 4, "2005-10-19"),
        (30878, 4, "2005-12-26")],
    2: [(2059652, 4, "2005-09-05"), (1488844, 4, "2005-06-20"), (30878, 1, "2004-01-01")],
}
NETFLIX_FILE_2 = {
    3: [(1488844, 5, "2004-04-04"), (30878, 2, "2003-03-03"), (2059652, 1, "2005-01-31")],
    17770: [(1488844, 2, "1999-11-11"), (30878, 3, "2000-01-06")],
}
# Latin-1, a title with commas, a non-ASCII title with a NULL year, and a movie nobody rated.
TITLES = ("1,2003,Dinosaur Planet\n"
          "2,2004,Isle of Man TT 2004 Review\n"
          "3,1997,Character, Part Two, Revisited\n"
          "4,1994,Paula Abdul's Get Up & Dance\n"
          "17770,NULL,Smokey Joe's Café\n")
PROBE = "1:\n30878\n3:\n2059652\n1488844\n"
PROBE_PAIRS = [(30878, 1), (2059652, 3), (1488844, 3)]


def _blocks_text(blocks) -> str:
  return "".join(f"{movie}:\n" + "".join(f"{c},{s},{d}\n" for c, s, d in rows)
                 for movie, rows in blocks.items())


def _netflix_ratings() -> list[tuple[int, int, int, str]]:
  """(customer, movie, stars, date) of every rating in the fixture."""
  return [(c, m, s, d) for blocks in (NETFLIX_FILE_1, NETFLIX_FILE_2)
          for m, rows in blocks.items() for c, s, d in rows]


def write_netflix(folder: Path, probe: bool = True) -> Path:
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "combined_data_1.txt").write_text(_blocks_text(NETFLIX_FILE_1))
  (folder / "combined_data_2.txt").write_text(_blocks_text(NETFLIX_FILE_2))
  (folder / "movie_titles.txt").write_bytes(TITLES.encode("latin-1"))
  if probe:
    (folder / "probe.txt").write_text(PROBE)
  return folder


def _store_tuples(store: RatingStore) -> list[tuple[int, int, int, str]]:
  """(original user, original item, stars, ISO date) of each row, in row order."""
  user_ids, item_ids = store.user_original_ids(), store.item_original_ids()
  return [(int(user_ids[u]), int(item_ids[i]), float(r), days_to_iso(int(d)))
          for u, i, r, d in zip(store.user, store.item, store.stars(), store.date)]


def _expected_rows(ratings, keep_user=lambda u: True, keep_item=lambda i: True):
  """Store row order: by user id, then date, then item id."""
  rows = [(u, i, float(s), d) for u, i, s, d in ratings if keep_user(u) and keep_item(i)]
  return sorted(rows, key=lambda t: (t[0], t[3], t[1]))


@pytest.fixture(scope="module")
def netflix_dir(tmp_path_factory) -> Path:
  return write_netflix(tmp_path_factory.mktemp("netflix") / "nf")


@pytest.fixture(scope="module")
def netflix_store(netflix_dir, tmp_path_factory) -> RatingStore:
  return netflix.build_netflix_store(netflix_dir, tmp_path_factory.mktemp("s") / "netflix",
                                     min_user_ratings=0)


def test_read_movie_titles(netflix_dir):
  table = netflix.read_movie_titles(netflix_dir / "movie_titles.txt").to_pydict()
  assert table["original_id"] == [1, 2, 3, 4, 17770]
  assert table["title"] == ["Dinosaur Planet", "Isle of Man TT 2004 Review",
                            "Character, Part Two, Revisited", "Paula Abdul's Get Up & Dance",
                            "Smokey Joe's Café"]
  assert table["year"] == [2003, 2004, 1997, 1994, None]


def test_netflix_counts_ids_and_rows(netflix_store):
  store = netflix_store
  assert (store.n_ratings, store.n_users, store.n_items) == (12, 5, 4)
  np.testing.assert_array_equal(store.user_original_ids(),
                                [30878, 822109, 885013, 1488844, 2059652])
  np.testing.assert_array_equal(store.item_original_ids(), [1, 2, 3, 17770])
  np.testing.assert_array_equal(store.user_index([1488844, 30878, 12345]), [3, 0, -1])
  np.testing.assert_array_equal(store.item_index([17770, 4, 1]), [3, -1, 0])
  assert _store_tuples(store) == _expected_rows(_netflix_ratings())
  np.testing.assert_array_equal(store.ratings_per_user(), [4, 1, 1, 4, 2])
  np.testing.assert_array_equal(store.ratings_per_item(), [4, 3, 3, 2])


def test_netflix_dates(netflix_store):
  store = netflix_store
  # Customer 30878 rated movie 17770 on 2000-01-06: day 10962 since 1970-01-01.
  row = store.user_rows(0).start  # that is 30878's earliest rating
  assert store.item_original_ids()[store.item[row]] == 17770
  assert int(store.date[row]) == 10962 == iso_to_days("2000-01-06")
  assert store.meta["date_range"] == ["1999-11-11", "2005-12-26"]
  assert store.has_dates


def test_netflix_titles_and_years_in_items_table(netflix_store):
  items = netflix_store.items_table().to_pydict()
  assert items["original_id"] == [1, 2, 3, 17770]  # movie 4 has no ratings: not an item
  assert items["title"] == ["Dinosaur Planet", "Isle of Man TT 2004 Review",
                            "Character, Part Two, Revisited", "Smokey Joe's Café"]
  assert items["year"] == [2003, 2004, 1997, None]
  assert items["n_ratings"] == [4, 3, 3, 2]
  assert items["mean_rating"] == pytest.approx([4.0, 3.0, 8 / 3, 2.5])


def test_netflix_meta(netflix_store, netflix_dir):
  meta = netflix_store.meta
  assert [(Path(s["path"]).name, s["role"]) for s in meta["sources"]] == [
      ("combined_data_1.txt", "ratings"), ("combined_data_2.txt", "ratings"),
      ("movie_titles.txt", "titles")]
  assert meta["sources"][0]["bytes"] == (netflix_dir / "combined_data_1.txt").stat().st_size
  assert meta["rating_range"] == [1.0, 5.0] and meta["bad_lines"]["count"] == 0
  assert meta["build_params"]["source"] == "netflix"


def test_netflix_probe_split(netflix_store):
  assert netflix_store.list_splits() == ["netflix_probe"]
  split = splits.load_split(netflix_store, "netflix_probe")
  assert split.protocol == "netflix_probe"
  assert split.sizes() == {"train": 9, "valid": 0, "test": 3, "unused": 0}
  test = split.rows("test")
  pairs = sorted(zip(netflix_store.user_original_ids()[netflix_store.user[test]].tolist(),
                     netflix_store.item_original_ids()[netflix_store.item[test]].tolist()))
  assert pairs == sorted(PROBE_PAIRS)
  assert split.info["sizes"]["test"] == 3
  assert split.info["store_fingerprint"] == netflix_store.fingerprint


@pytest.mark.parametrize("min_user, min_item, users, items, n", [
    (2, 0, [30878, 1488844, 2059652], [1, 2, 3, 17770], 10),
    (3, 0, [30878, 1488844], [1, 2, 3, 17770], 8),
    (0, 3, [30878, 822109, 885013, 1488844, 2059652], [1, 2, 3], 10),
    # Items are counted among the surviving users: movie 1 has 4 ratings, 2 of them kept.
    (2, 3, [30878, 1488844, 2059652], [2, 3], 6),
])
def test_netflix_filters(tmp_path, min_user, min_item, users, items, n):
  # No probe.txt here: probe pairs of dropped users would not be in the store.
  folder = write_netflix(tmp_path / "nf", probe=False)
  store = netflix.build_netflix_store(folder, tmp_path / "f", min_user_ratings=min_user,
                                      min_item_ratings=min_item)
  np.testing.assert_array_equal(store.user_original_ids(), users)
  np.testing.assert_array_equal(store.item_original_ids(), items)
  assert store.n_ratings == n and (store.n_users, store.n_items) == (len(users), len(items))
  # Re-indexed densely: indices 0..n-1 all used, rows still exact.
  np.testing.assert_array_equal(np.unique(store.user), np.arange(len(users)))
  np.testing.assert_array_equal(np.unique(store.item), np.arange(len(items)))
  assert _store_tuples(store) == _expected_rows(_netflix_ratings(), lambda u: u in users,
                                                lambda i: i in items)
  assert store.meta["filters"] == {"min_user_ratings": min_user, "min_item_ratings": min_item}
  assert store.meta["n_read"] == 12


def test_netflix_default_filter_drops_light_users(netflix_dir, tmp_path):
  big = {5: [(c, 3, "2005-01-01") for c in range(1, 31)]}  # customers 1..30 once each ...
  heavy = {m: [(7, 4, "2005-02-02")] for m in range(10, 40)}  # ... and customer 7 on 30 more
  folder = tmp_path / "nf"
  folder.mkdir()
  (folder / "combined_data_1.txt").write_text(_blocks_text({**big, **heavy}))
  store = netflix.build_netflix_store(folder, tmp_path / "s")  # min_user_ratings=25
  np.testing.assert_array_equal(store.user_original_ids(), [7])
  assert store.n_ratings == 31 and store.meta["filters"]["min_user_ratings"] == 25


def test_netflix_per_movie_files_and_explicit_files(netflix_dir, netflix_store, tmp_path):
  # The training_set/mv_XXXXXXX.txt layout gives the same store.
  folder = tmp_path / "nf"
  (folder / "training_set").mkdir(parents=True)
  for blocks in (NETFLIX_FILE_1, NETFLIX_FILE_2):
    for movie, rows in blocks.items():
      (folder / "training_set" / f"mv_{movie:07d}.txt").write_text(_blocks_text({movie: rows}))
  (folder / "movie_titles.txt").write_bytes(TITLES.encode("latin-1"))
  store = netflix.build_netflix_store(folder, tmp_path / "s1", min_user_ratings=0)
  assert store.fingerprint == netflix_store.fingerprint
  # Explicit files, CRLF line endings.
  crlf = tmp_path / "crlf.txt"
  crlf.write_bytes((_blocks_text(NETFLIX_FILE_1) + _blocks_text(NETFLIX_FILE_2))
                   .replace("\n", "\r\n").encode())
  store = netflix.build_netflix_store(None, tmp_path / "s2", rating_files=[crlf],
                                      titles_file=netflix_dir / "movie_titles.txt",
                                      min_user_ratings=0)
  assert store.fingerprint == netflix_store.fingerprint
  assert store.items_table(["title"]).column(0).to_pylist()[-1] == "Smokey Joe's Café"


def test_netflix_fast_and_exact_parsers_agree(netflix_store, tmp_path, monkeypatch):
  calls = []
  exact = netflix._parse_exact
  monkeypatch.setattr(netflix, "_parse_exact", lambda *a: calls.append(a) or exact(*a))
  monkeypatch.setattr(textio, "BLOCK_BYTES", 64)  # many blocks and batches per file
  clean = write_netflix(tmp_path / "clean", probe=False)
  store = netflix.build_netflix_store(clean, tmp_path / "s1", min_user_ratings=0)
  assert calls == []  # clean files take the typed fast path
  assert store.fingerprint == netflix_store.fingerprint
  # A blank line sends a file through the exact line-by-line parser: same store.
  irregular = write_netflix(tmp_path / "irregular", probe=False)
  path = irregular / "combined_data_2.txt"
  path.write_text(path.read_text().replace("17770:", "\n17770:"))
  store = netflix.build_netflix_store(irregular, tmp_path / "s2", min_user_ratings=0)
  assert [Path(c[0]).name for c in calls] == ["combined_data_2.txt"]
  assert store.fingerprint == netflix_store.fingerprint
  # Both report a bad line at the same line number.
  for folder, extra in ((clean, ""), (irregular, "\n")):
    path = folder / "combined_data_1.txt"
    path.write_text(_blocks_text(NETFLIX_FILE_1).replace("885013,4", "885013,7") + extra)
    store = netflix.build_netflix_store(folder, tmp_path / f"bad_{folder.name}",
                                        min_user_ratings=0)
    [example] = store.meta["bad_lines"]["examples"]
    assert (example["line"], example["reason"]) == (4, "rating outside 1..5")
    assert store.n_ratings == 11


# ------------------------------------------------------------------------ MovieLens 100K
_GENRE_FLAGS = {"Animation": 3, "Children's": 4, "Comedy": 5, "Drama": 8, "Thriller": 16}


def _u_item_line(item, title, date, genres):
  flags = ["0"] * 19
  for g in genres:
    flags[movielens.ML100K_GENRES.index(g)] = "1"
  return f"{item}|{title}|{date}||http://us.imdb.com/M/x|" + "|".join(flags) + "\n"


# (user, item, stars, unix seconds)
ML100K = [
    (196, 242, 3, 881250949), (186, 302, 3, 891717742), (22, 377, 1, 878887116),
    (244, 51, 2, 880606923), (166, 346, 1, 886397596), (298, 474, 4, 884182806),
    (196, 51, 5, 881250950), (22, 242, 4, 878887000), (186, 51, 4, 891717000),
    (244, 242, 5, 880606000), (166, 302, 2, 886397000), (298, 302, 3, 884182000),
]
U1_TEST = [0, 4, 8]  # indices into ML100K
U1_UNUSED = [11]  # in neither u1.base nor u1.test


@pytest.fixture(scope="module")
def ml100k_dir(tmp_path_factory) -> Path:
  folder = tmp_path_factory.mktemp("ml100k") / "ml-100k"
  folder.mkdir()

  def lines(rows):
    return "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)

  (folder / "u.data").write_text(lines(ML100K))
  (folder / "u1.test").write_text(lines([ML100K[k] for k in U1_TEST]))
  (folder / "u1.base").write_text(lines([r for k, r in enumerate(ML100K)
                                         if k not in U1_TEST + U1_UNUSED]))
  items = (_u_item_line(51, "Legends of the Fall (1994)", "01-Jan-1994", ["Drama"])
           + _u_item_line(242, "Kolya (1996)", "24-Jan-1997", ["Comedy"])
           + _u_item_line(302, "L.A. Confidential (1997)", "01-Jan-1997", ["Drama", "Thriller"])
           + _u_item_line(346, "Misérables, Les (1995)", "01-Jan-1995", ["Drama"])
           + _u_item_line(377, "Heavyweights (1994)", "", ["Children's", "Comedy"])
           + _u_item_line(474, "unknown", "", []))
  (folder / "u.item").write_bytes(items.encode("latin-1"))
  users = "".join(f"{u}|{20 + k}|{'MF'[k % 2]}|student|0{k}123\n"
                  for k, u in enumerate(sorted({r[0] for r in ML100K})))
  (folder / "u.user").write_text(users)
  return folder


@pytest.fixture(scope="module")
def ml100k_store(ml100k_dir, tmp_path_factory) -> RatingStore:
  return movielens.build_ml100k_store(ml100k_dir, tmp_path_factory.mktemp("s") / "ml100k")


def test_ml100k_store(ml100k_store):
  store = ml100k_store
  assert (store.n_ratings, store.n_users, store.n_items) == (12, 6, 6)
  np.testing.assert_array_equal(store.user_original_ids(), [22, 166, 186, 196, 244, 298])
  np.testing.assert_array_equal(store.item_original_ids(), [51, 242, 302, 346, 377, 474])
  expected = [(u, i, r, days_to_iso(t // 86400)) for u, i, r, t in ML100K]
  assert _store_tuples(store) == _expected_rows(expected)
  assert store.meta["date_range"] == ["1997-11-07", "1998-04-04"]  # 878887000 .. 891717742 s


def test_ml100k_items_and_users(ml100k_store):
  items = ml100k_store.items_table().to_pydict()
  assert items["title"] == ["Legends of the Fall (1994)", "Kolya (1996)",
                            "L.A. Confidential (1997)", "Misérables, Les (1995)",
                            "Heavyweights (1994)", "unknown"]
  # The year comes from the release date, else from the title, else null.
  assert items["year"] == [1994, 1997, 1997, 1995, 1994, None]
  assert items["genres"] == [["Drama"], ["Comedy"], ["Drama", "Thriller"], ["Drama"],
                             ["Children's", "Comedy"], []]
  users = ml100k_store.users_table().to_pydict()
  assert users["age"] == [20, 21, 22, 23, 24, 25]
  assert users["gender"] == ["M", "F", "M", "F", "M", "F"]
  assert users["occupation"] == ["student"] * 6


def test_ml100k_u1_split(ml100k_store):
  assert ml100k_store.list_splits() == ["ml100k_u1"]  # only the fold whose files exist
  split = splits.load_split(ml100k_store, "ml100k_u1")
  assert split.sizes() == {"train": 8, "valid": 0, "test": 3, "unused": 1}
  assert split.params["fold"] == "u1"
  user_ids, item_ids = ml100k_store.user_original_ids(), ml100k_store.item_original_ids()

  def pairs(part):
    rows = split.rows(part)
    return sorted(zip(user_ids[ml100k_store.user[rows]].tolist(),
                      item_ids[ml100k_store.item[rows]].tolist()))

  assert pairs("test") == sorted((ML100K[k][0], ML100K[k][1]) for k in U1_TEST)
  assert pairs("unused") == [(298, 302)]


def test_ml100k_with_filters_saves_no_folds(ml100k_dir, tmp_path):
  # Every user has 2 ratings, so min_user_ratings=2 keeps them all; folds are only saved for
  # unfiltered stores (a filtered store may lack fold pairs).
  store = movielens.build_ml100k_store(ml100k_dir, tmp_path / "s", min_user_ratings=2)
  assert store.n_ratings == 12 and store.list_splits() == []
  # Item 51 (3 ratings) and items 242, 302 (3 each) survive min_item_ratings=3.
  store = movielens.build_ml100k_store(ml100k_dir, tmp_path / "s3", min_item_ratings=3)
  np.testing.assert_array_equal(store.item_original_ids(), [51, 242, 302])
  assert store.n_ratings == 9


# ---------------------------------------------------------------------------- MovieLens 1M
ML1M = [(1, 1193, 5, 978300760), (1, 661, 3, 978302109), (1, 914, 3, 978301968),
        (2, 1193, 4, 978298413), (2, 3105, 5, 978298673), (10, 661, 1, 978224000)]
ML1M_MOVIES = ("661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
               "914::My Fair Lady (1964)::Musical|Romance\n"
               "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
               "3105::Awakenings (1990)::Drama\n"
               "3106::Café au lait (1993)::Comedy\n")


def _ml1m_text(rows) -> str:
  return "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows)


def test_ml1m_gz(tmp_path):
  folder = tmp_path / "ml-1m"
  folder.mkdir()
  (folder / "ratings.dat.gz").write_bytes(gzip.compress(_ml1m_text(ML1M).encode()))
  (folder / "movies.dat").write_bytes(ML1M_MOVIES.encode("latin-1"))
  (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n"
                                    "10::F::35::1::95370\n")
  store = movielens.build_ml1m_store(folder, tmp_path / "s")
  assert (store.n_ratings, store.n_users, store.n_items) == (6, 3, 4)
  expected = [(u, i, r, days_to_iso(t // 86400)) for u, i, r, t in ML1M]
  assert _store_tuples(store) == _expected_rows(expected)
  assert store.meta["build_params"]["ratings_file"] == "ratings.dat.gz"
  items = store.items_table().to_pydict()
  assert items["original_id"] == [661, 914, 1193, 3105]
  assert items["year"] == [1996, 1964, 1975, 1990]
  assert items["genres"][0] == ["Animation", "Children's", "Musical"]
  assert items["title"][2] == "One Flew Over the Cuckoo's Nest (1975)"
  users = store.users_table().to_pydict()
  assert users["gender"] == ["F", "M", "F"] and users["age"] == [1, 56, 35]
  assert users["occupation"] == [10, 16, 1]
  # The same ratings uncompressed give the same store.
  plain = tmp_path / "plain"
  plain.mkdir()
  (plain / "ratings.dat").write_text(_ml1m_text(ML1M))
  assert movielens.build_ml1m_store(plain, tmp_path / "s2").fingerprint == store.fingerprint


# --------------------------------------------------------------------------- ML latest
LATEST = [(1, 1, "4.0", 964982703), (1, 3, "4.5", 964981247), (1, 11, "0.5", 964982224),
          (2, 11, "5.0", 1445714835), (2, 3, "3.5", 1445715000), (3, 1, "2.5", 1306463578)]
LATEST_MOVIES = ('movieId,title,genres\n'
                 '1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n'
                 '3,Grumpier Old Men (1995),Comedy|Romance\n'
                 '11,"American President, The (1995)",Comedy|Drama|Romance\n'
                 '12,"Dracula: Dead and Loving It (1995)",Comedy|Horror\n')


def test_ml_latest_half_stars(tmp_path):
  folder = tmp_path / "ml-latest-small"
  folder.mkdir()
  (folder / "ratings.csv").write_text(
      "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in LATEST))
  (folder / "movies.csv").write_text(LATEST_MOVIES)
  store = movielens.build_latest_store(folder, tmp_path / "s")
  assert store.rating_scale == 2 and store.rating_range == (0.5, 5.0)
  assert (store.n_ratings, store.n_users, store.n_items) == (6, 3, 3)
  expected = [(u, i, float(r), days_to_iso(t // 86400)) for u, i, r, t in LATEST]
  assert _store_tuples(store) == _expected_rows(expected)
  # Exact half stars: stored as stars * 2.
  assert sorted(store.stars().tolist()) == [0.5, 2.5, 3.5, 4.0, 4.5, 5.0]
  assert sorted(np.asarray(store.rating).tolist()) == [1, 5, 7, 8, 9, 10]
  assert store.meta["observed_rating_range"] == [0.5, 5.0]
  items = store.items_table().to_pydict()
  assert items["title"] == ["Toy Story (1995)", "Grumpier Old Men (1995)",
                            "American President, The (1995)"]
  assert items["year"] == [1995, 1995, 1995]
  assert items["genres"][2] == ["Comedy", "Drama", "Romance"]
  assert items["mean_rating"] == pytest.approx([(4.0 + 2.5) / 2, 4.0, 2.75])


# --------------------------------------------------------------------------- synthetic
SMALL = synthetic.SyntheticConfig(n_users=1500, n_items=400, n_ratings=60_000)


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory) -> RatingStore:
  return synthetic.build_synthetic_store(SMALL, tmp_path_factory.mktemp("syn") / "s0")


def test_synthetic_is_deterministic_in_the_seed(synthetic_store, tmp_path):
  again = synthetic.build_synthetic_store(SMALL, tmp_path / "again")
  assert again.fingerprint == synthetic_store.fingerprint
  other = synthetic.build_synthetic_store(dataclasses.replace(SMALL, seed=1), tmp_path / "seed1")
  assert other.fingerprint != synthetic_store.fingerprint
  assert abs(other.n_ratings - synthetic_store.n_ratings) < 0.05 * SMALL.n_ratings


def test_synthetic_looks_like_netflix(synthetic_store):
  store = synthetic_store
  assert 0.9 * SMALL.n_ratings <= store.n_ratings <= SMALL.n_ratings
  assert store.n_users == SMALL.n_users and store.n_items <= SMALL.n_items
  stars = np.asarray(store.rating)
  assert stars.min() >= 1 and stars.max() <= 5
  share = np.bincount(stars, minlength=6)[1:] / len(stars)
  assert share[2] + share[3] > 0.5  # most mass on 3 and 4 stars
  assert share[2] > share[0] and share[3] > share[0] and share[3] > share[4]
  assert 3.3 < stars.mean() < 3.9
  per_user = store.ratings_per_user()
  assert per_user.max() / np.median(per_user) > 5  # long-tailed activity
  assert per_user.min() >= SMALL.min_ratings_per_user
  per_item = store.ratings_per_item()
  assert per_item.max() / np.median(per_item) > 5  # popular and obscure movies
  lo, hi = store.meta["date_range"]
  assert lo >= SMALL.start_date and hi <= SMALL.end_date


def test_synthetic_no_rating_before_its_movies_year(synthetic_store):
  store = synthetic_store
  years = store.items_table(["year"]).column(0)
  year = years.fill_null(0).to_numpy()[np.asarray(store.item)]
  first_day = np.array([iso_to_days(f"{y}-01-01") if y else -10**9 for y in range(2101)])
  assert np.all(np.asarray(store.date) >= first_day[year])
  assert years.null_count <= 5 and (year > 0).mean() > 0.99


def test_synthetic_netflix_files_round_trip(synthetic_store, tmp_path):
  written = netflix.write_netflix_files(synthetic_store, tmp_path / "raw", n_files=2,
                                        probe_fraction=0.05, seed=3)
  assert [p.name for p in written["ratings"]] == ["combined_data_1.txt", "combined_data_2.txt"]
  assert (tmp_path / "raw" / "probe.txt").is_file()
  back = netflix.build_netflix_store(tmp_path / "raw", tmp_path / "back", min_user_ratings=0)
  assert back.fingerprint == synthetic_store.fingerprint
  assert back.meta["bad_lines"]["count"] == 0
  assert back.items_table(["title", "year"]).equals(synthetic_store.items_table(["title", "year"]))
  probe = splits.load_split(back, "netflix_probe")
  assert probe.sizes()["test"] == int(synthetic_store.n_ratings * 0.05)
  assert probe.sizes()["train"] == back.n_ratings - int(synthetic_store.n_ratings * 0.05)


def test_parquet_round_trip(synthetic_store, tmp_path):
  out = parquet_io.export_parquet(synthetic_store, tmp_path / "pq", rows_per_group=7_000)
  assert sorted(p.name for p in out.iterdir()) == ["items.parquet", "ratings.parquet",
                                                   "users.parquet"]
  back = parquet_io.import_parquet(out, tmp_path / "back")
  assert back.fingerprint == synthetic_store.fingerprint
  assert back.name == synthetic_store.name
  assert back.items_table(["title", "year"]).equals(synthetic_store.items_table(["title", "year"]))
  # The ratings file alone, too.
  alone = parquet_io.import_parquet(out / "ratings.parquet", tmp_path / "alone")
  assert alone.fingerprint == synthetic_store.fingerprint


def test_parquet_round_trip_half_stars(tmp_path):
  folder = tmp_path / "latest"
  folder.mkdir()
  (folder / "ratings.csv").write_text(
      "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in LATEST))
  store = movielens.build_latest_store(folder, tmp_path / "s")
  back = parquet_io.import_parquet(parquet_io.export_parquet(store, tmp_path / "pq"),
                                   tmp_path / "back")
  assert back.rating_scale == 2 and back.fingerprint == store.fingerprint
  np.testing.assert_array_equal(back.stars(), store.stars())


# --------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def real_root(shared_data, tmp_path_factory) -> tuple[Path, Path]:
  return shared_data, tmp_path_factory.mktemp("real")


def test_real_ml100k(real_root):
  data, out = real_root
  if not (data / "ml-100k" / "u.data").is_file():
    pytest.skip("ml-100k not in the shared data")
  store = movielens.build_ml100k_store(data / "ml-100k", out / "ml100k")
  assert (store.n_ratings, store.n_users, store.n_items) == (100_000, 943, 1_682)
  assert store.meta["bad_lines"]["count"] == 0
  assert np.bincount(store.rating, minlength=6)[1:].tolist() == [6110, 11370, 27145, 34174,
                                                                  21201]
  u1 = splits.load_split(store, "ml100k_u1")
  assert u1.sizes() == {"train": 80_000, "valid": 0, "test": 20_000, "unused": 0}
  ua = splits.load_split(store, "ml100k_ua")
  assert ua.sizes() == {"train": 90_570, "valid": 0, "test": 9_430, "unused": 0}
  # ua holds out exactly 10 ratings of every user.
  np.testing.assert_array_equal(np.bincount(store.user[ua.rows("test")]), np.full(943, 10))
  items = store.items_table(["original_id", "title", "year"]).to_pydict()
  assert items["title"][0] == "Toy Story (1995)" and items["year"][0] == 1995
  assert any("Misérables" in t for t in items["title"])
  assert store.users_table(["age"]).column(0).null_count == 0


def test_real_ml_latest_small(real_root):
  data, out = real_root
  if not (data / "ml-latest-small" / "ratings.csv").is_file():
    pytest.skip("ml-latest-small not in the shared data")
  store = movielens.build_latest_store(data / "ml-latest-small", out / "latest")
  assert (store.n_ratings, store.n_users, store.n_items) == (100_836, 610, 9_724)
  stars = store.stars()
  assert stars.min() == 0.5 and stars.max() == 5.0
  assert (stars % 1 == 0.5).sum() > 10_000  # many half stars, stored exactly
  assert set(np.unique(stars).tolist()) == {k / 2 for k in range(1, 11)}
  assert store.meta["bad_lines"]["count"] == 0


def test_real_ml1m_sample(real_root):
  data, out = real_root
  files = sorted((data / "ml-1m").glob("ratings*.dat*"))
  if not files:
    pytest.skip("ml-1m ratings not in the shared data")
  store = movielens.build_ml1m_store(data / "ml-1m", out / "ml1m")
  if files[0].name == "ratings.head487650.dat.gz":  # the sample described in PROVENANCE.md
    assert (store.n_ratings, store.n_users, store.n_items) == (487_650, 2_999, 3_615)
  assert store.meta["bad_lines"]["count"] == 0
  assert store.items_table(["title"]).column(0).null_count == 0


def test_real_netflix_movie_titles(shared_data):
  path = shared_data / "netflix-prize-sample" / "movie_titles.txt"
  if not path.is_file():
    pytest.skip("netflix movie_titles.txt not in the shared data")
  table = netflix.read_movie_titles(path)
  assert table.num_rows == 17_770
  assert table.column("year").null_count == 7
  ids = table.column("original_id").to_numpy()
  np.testing.assert_array_equal(ids, np.arange(1, 17_771))
  titles = table.column("title").to_pylist()
  assert titles[0] == "Dinosaur Planet"
  assert "Smokey Joe's Café" in titles
  assert sum("," in t for t in titles) > 100  # titles with commas stay whole


def test_synthetic_netflix_files_source_goes_through_the_netflix_reader(tmp_path):
  from netrec_jax import configs
  from netrec_jax.data import datasets
  config = configs.base_config()
  config.data.source = "synthetic_netflix_files"
  config.data.store_root = str(tmp_path)
  config.data.synthetic.update(n_users=300, n_items=100, n_ratings=9000)
  config.data.min_user_ratings = 5
  store = datasets.open_or_build(config.data)
  assert store.meta["build_params"]["source"] == "netflix"
  assert "netflix_probe" in store.list_splits()
  assert store.ratings_per_user().min() >= 5
  assert not list(tmp_path.glob(".*raw"))  # the raw text is removed after ingest
