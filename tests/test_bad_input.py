"""Bad input gives one clear DataError (file, line, problem) and never a partial store.

In non-strict mode bad rating lines are counted in meta['bad_lines'] and skipped; with
strict=True the first one is fatal.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from netrec_jax.data import movielens, netflix, parquet_io
from netrec_jax.data.errors import DataError
from netrec_jax.data.store import RatingStore

NETFLIX_TITLES = "1,2000,First Movie\n2,2003,Second, With Comma\n"


def assert_no_partial_store(dest: Path) -> None:
  """Neither the destination nor a temporary build folder is left behind."""
  assert not dest.exists(), f"{dest} exists after a failed build"
  if dest.parent.is_dir():
    leftovers = [p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.")]
    assert leftovers == [], leftovers


def check_error(err: DataError, path: Path, problem: str, line: int | None = None) -> None:
  """The message starts with the file (and line), then says what is wrong."""
  text = str(err)
  assert err.path == str(path)
  assert problem in text, text
  assert problem in err.problem
  if line is None:
    assert text.startswith(f"{path}: "), text
  else:
    assert err.line == line
    assert text.startswith(f"{path}:{line}: "), text
    assert f"{path}:{line}" in text


# ---------------------------------------------------------------------- the formats
def _netflix(folder: Path, text: str | bytes, strict: bool = False,
             dest: Path | None = None) -> RatingStore:
  folder.mkdir(parents=True, exist_ok=True)
  ratings = folder / "combined_data_1.txt"
  ratings.write_bytes(text if isinstance(text, bytes) else text.encode())
  (folder / "movie_titles.txt").write_text(NETFLIX_TITLES)
  return netflix.build_netflix_store(folder, dest or folder.parent / "store",
                                     min_user_ratings=0, strict=strict)


def _ml100k(folder: Path, text: str | bytes, strict: bool = False,
            dest: Path | None = None) -> RatingStore:
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "u.data").write_bytes(text if isinstance(text, bytes) else text.encode())
  return movielens.build_ml100k_store(folder, dest or folder.parent / "store", strict=strict)


def _ml1m(folder: Path, text: str | bytes, strict: bool = False,
          dest: Path | None = None) -> RatingStore:
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "ratings.dat").write_bytes(text if isinstance(text, bytes) else text.encode())
  return movielens.build_ml1m_store(folder, dest or folder.parent / "store", strict=strict)


def _latest(folder: Path, text: str | bytes, strict: bool = False,
            dest: Path | None = None) -> RatingStore:
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "ratings.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
  return movielens.build_latest_store(folder, dest or folder.parent / "store", strict=strict)


FORMATS = {
    # name: (build, rating file name, template with {bad} on a known line, line of {bad},
    #        number of good ratings)
    "netflix": (_netflix, "combined_data_1.txt",
                "1:\n10,3,2005-01-01\n11,4,2005-01-02\n2:\n10,5,2004-03-03\n{bad}\n"
                "12,2,2004-05-05\n", 6, 4),
    "ml100k": (_ml100k, "u.data",
               "1\t10\t3\t881250949\n2\t10\t4\t881250950\n{bad}\n3\t11\t5\t881250951\n", 3, 3),
    "ml1m": (_ml1m, "ratings.dat",
             "1::10::3::978300760\n{bad}\n2::10::4::978300761\n2::11::5::978300762\n", 2, 3),
    "ml_latest": (_latest, "ratings.csv",
                  "userId,movieId,rating,timestamp\n1,10,3.5,964982703\n2,10,4.0,964982704\n"
                  "{bad}\n3,11,0.5,964982705\n", 4, 3),
}

BAD_LINES = [
    # (format, bad line, reason recorded for it)
    ("netflix", "13,6,2005-01-01", "rating outside 1..5"),
    ("netflix", "13,0,2005-01-01", "rating outside 1..5"),
    ("netflix", "13,3.5,2005-01-01", "rating is not an integer"),
    ("netflix", "13,4,2005-13-45", "date is not a valid YYYY-MM-DD date"),
    ("netflix", "13,4,yesterday", "date is not a valid YYYY-MM-DD date"),
    ("netflix", "13,4,05-01-2005", "date is not a valid YYYY-MM-DD date"),
    # Future dates and dates before the movie's release year parse: they are kept and counted
    # as odd lines (tests/test_reliability.py), not rejected.
    ("netflix", "13,4,2005-01-01,extra", "expected 3 fields separated by ','"),
    ("netflix", "13,4", "expected 3 fields separated by ','"),
    ("netflix", "abc,4,2005-01-01", "customer id is not an integer"),
    ("netflix", "0,4,2005-01-01", "customer id must be positive"),
    ("ml100k", "4\t10\t6\t881250952", "rating outside 1..5"),
    ("ml100k", "4\t10\tfive\t881250952", "rating is not an integer"),
    ("ml100k", "4\t10\t4\tyesterday", "timestamp is not an integer"),
    ("ml100k", "4\t10\t4\t-5", "timestamp outside 1970..2100"),
    ("ml100k", "4\t10\t4", "expected 4 fields separated by '\\t'"),
    ("ml100k", "4 10 4 881250952", "expected 4 fields separated by '\\t'"),
    ("ml100k", "x\t10\t4\t881250952", "user id is not an integer"),
    ("ml100k", "4\tten\t4\t881250952", "item id is not an integer"),
    ("ml1m", "4::10::9::978300760", "rating outside 1..5"),
    ("ml1m", "4::10::4", "expected 4 fields separated by '::'"),
    ("ml1m", "4::10::4::9999999999999", "timestamp outside 1970..2100"),
    ("ml_latest", "4,10,5.5,964982706", "rating outside 0.5..5"),
    ("ml_latest", "4,10,0.0,964982706", "rating outside 0.5..5"),
    ("ml_latest", "4,10,2.25,964982706", "rating is not a multiple of 0.5"),
    ("ml_latest", "4,10,abc,964982706", "rating is not a number"),
    ("ml_latest", "4,10,4.0", "expected 4 fields separated by ','"),
]


def _case_id(case):
  return f"{case[0]}-{case[1]}".replace("\t", "<tab>").replace(" ", "_")


@pytest.mark.parametrize("fmt, bad, reason", BAD_LINES, ids=map(_case_id, BAD_LINES))
def test_bad_line_is_counted_and_skipped(tmp_path, fmt, bad, reason):
  build, name, template, line, n_good = FORMATS[fmt]
  store = build(tmp_path / "in", template.format(bad=bad))
  path = tmp_path / "in" / name
  report = store.meta["bad_lines"]
  assert report["count"] == 1
  assert report["by_reason"] == {reason: 1}
  [example] = report["examples"]
  assert example["file"] == str(path) and example["line"] == line and example["reason"] == reason
  # The Netflix fast path (clean-looking files) does not keep the line's text.
  assert example["text"] in (bad, None)
  assert store.n_ratings == n_good
  assert store.summary()["bad_lines"] == 1


@pytest.mark.parametrize("fmt, bad, reason", BAD_LINES, ids=map(_case_id, BAD_LINES))
def test_bad_line_is_fatal_in_strict_mode(tmp_path, fmt, bad, reason):
  build, name, template, line, _ = FORMATS[fmt]
  with pytest.raises(DataError) as err:
    build(tmp_path / "in", template.format(bad=bad), strict=True)
  check_error(err.value, tmp_path / "in" / name, reason, line)
  assert "strict mode" in str(err.value)
  if " (" in err.value.problem:  # the line's text, when shown, is the bad line
    assert f" ({bad!r})" in err.value.problem
  assert_no_partial_store(tmp_path / "store")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_good_template_has_no_bad_lines(tmp_path, fmt):
  build, _, template, _, n_good = FORMATS[fmt]
  good = "\n".join(x for x in template.split("\n") if x != "{bad}")
  store = build(tmp_path / "in", good, strict=True)
  assert store.n_ratings == n_good and store.meta["bad_lines"]["count"] == 0


def test_many_bad_lines_are_summarised(tmp_path):
  lines = ["1:"] + [f"{u},{3 if u % 3 else 9},2005-01-01" for u in range(1, 61)]
  store = _netflix(tmp_path / "in", "\n".join(lines) + "\n")
  report = store.meta["bad_lines"]
  assert report["count"] == 20 and report["by_reason"] == {"rating outside 1..5": 20}
  assert len(report["examples"]) == 20
  assert [e["line"] for e in report["examples"]] == [u + 1 for u in range(3, 61, 3)]
  assert store.n_ratings == 40
  saved = json.loads((store.path / "meta.json").read_text())["bad_lines"]
  assert saved == report


def test_line_numbers_count_blank_lines(tmp_path):
  text = "1:\n10,3,2005-01-01\n\n\n11,4,2005-01-02\n2:\n\n12,9,2005-01-01\n"
  store = _netflix(tmp_path / "in", text)
  assert store.meta["bad_lines"]["examples"][0]["line"] == 8
  with pytest.raises(DataError) as err:
    _netflix(tmp_path / "in2", text, strict=True, dest=tmp_path / "strict")
  assert err.value.line == 8


def test_bad_lines_in_a_second_file_name_that_file(tmp_path):
  folder = tmp_path / "nf"
  folder.mkdir()
  (folder / "combined_data_1.txt").write_text("1:\n10,3,2005-01-01\n")
  (folder / "combined_data_2.txt").write_text("2:\n10,4,2005-01-01\n11,4,2005-02-30x\n")
  with pytest.raises(DataError) as err:
    netflix.build_netflix_store(folder, tmp_path / "store", min_user_ratings=0, strict=True)
  check_error(err.value, folder / "combined_data_2.txt", "date is not a valid", 3)
  assert_no_partial_store(tmp_path / "store")


# ------------------------------------------------------------------------ whole files
def test_rating_line_before_any_header(tmp_path):
  text = "10,3,2005-01-01\n1:\n11,4,2005-01-02\n"
  store = _netflix(tmp_path / "in", text)
  path = tmp_path / "in" / "combined_data_1.txt"
  assert store.meta["bad_lines"]["by_reason"] == {"rating line before any 'MOVIE_ID:' header": 1}
  assert store.meta["bad_lines"]["examples"][0]["line"] == 1
  assert store.n_ratings == 1
  with pytest.raises(DataError) as err:
    _netflix(tmp_path / "in", text, strict=True, dest=tmp_path / "strict")
  check_error(err.value, path, "rating line before any 'MOVIE_ID:' header", 1)
  assert_no_partial_store(tmp_path / "strict")


@pytest.mark.parametrize("strict", [False, True])
def test_malformed_movie_header(tmp_path, strict):
  with pytest.raises(DataError) as err:
    _netflix(tmp_path / "in", "1:\n10,3,2005-01-01\n1x:\n11,4,2005-01-02\n", strict=strict)
  check_error(err.value, tmp_path / "in" / "combined_data_1.txt", "malformed movie header", 3)
  assert_no_partial_store(tmp_path / "store")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_missing_rating_file(tmp_path, fmt):
  build, name, _, _, _ = FORMATS[fmt]
  folder = tmp_path / "in"
  folder.mkdir()
  with pytest.raises(DataError) as err:
    if fmt == "netflix":
      netflix.build_netflix_store(None, tmp_path / "store", rating_files=[folder / name])
    elif fmt == "ml1m":
      movielens.build_ml1m_store(folder, tmp_path / "store")
    else:
      {"ml100k": movielens.build_ml100k_store,
       "ml_latest": movielens.build_latest_store}[fmt](folder, tmp_path / "store")
  if fmt == "ml1m":
    check_error(err.value, folder, "no MovieLens 1M ratings file")
  else:
    check_error(err.value, folder / name, "file not found")
  assert_no_partial_store(tmp_path / "store")


def test_missing_folders_and_side_files(tmp_path):
  with pytest.raises(DataError) as err:
    netflix.build_netflix_store(tmp_path / "nowhere", tmp_path / "store")
  check_error(err.value, tmp_path / "nowhere", "Netflix data folder not found")
  (tmp_path / "empty_dir").mkdir()
  with pytest.raises(DataError) as err:
    netflix.build_netflix_store(tmp_path / "empty_dir", tmp_path / "store")
  check_error(err.value, tmp_path / "empty_dir", "no Netflix rating files")
  with pytest.raises(DataError) as err:
    movielens.build_ml1m_store(tmp_path / "nowhere", tmp_path / "store")
  check_error(err.value, tmp_path / "nowhere", "MovieLens 1M folder not found")
  folder = tmp_path / "nf"
  folder.mkdir()
  (folder / "r.txt").write_text("1:\n10,3,2005-01-01\n")
  with pytest.raises(DataError) as err:
    netflix.build_netflix_store(None, tmp_path / "store", rating_files=[folder / "r.txt"],
                                titles_file=folder / "titles.txt", min_user_ratings=0)
  check_error(err.value, folder / "titles.txt", "file not found")
  with pytest.raises(DataError) as err:
    parquet_io.import_parquet(tmp_path / "nothing.parquet", tmp_path / "store")
  check_error(err.value, tmp_path / "nothing.parquet", "file not found")
  assert_no_partial_store(tmp_path / "store")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_empty_rating_file(tmp_path, fmt):
  build, name, _, _, _ = FORMATS[fmt]
  with pytest.raises(DataError) as err:
    build(tmp_path / "in", "")
  check_error(err.value, tmp_path / "in" / name, "file is empty")
  assert_no_partial_store(tmp_path / "store")


@pytest.mark.parametrize("text", ["\n\n\n", "userId,movieId,rating,timestamp\n"])
def test_file_without_ratings(tmp_path, text):
  build = _latest if text.startswith("userId") else _ml100k
  name = "ratings.csv" if text.startswith("userId") else "u.data"
  with pytest.raises(DataError) as err:
    build(tmp_path / "in", text)
  check_error(err.value, tmp_path / "in" / name, "no ratings were read")
  assert_no_partial_store(tmp_path / "store")


def test_empty_gz(tmp_path):
  folder = tmp_path / "ml-1m"
  folder.mkdir()
  (folder / "ratings.dat.gz").write_bytes(b"")
  with pytest.raises(DataError) as err:
    movielens.build_ml1m_store(folder, tmp_path / "store")
  check_error(err.value, folder / "ratings.dat.gz", "file is empty")
  assert_no_partial_store(tmp_path / "store")


WORDS = "apple,banana,cherry\nquick,brown,fox\njumps,over,dog\n"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_wrong_format_words(tmp_path, fmt):
  build, name, _, _, _ = FORMATS[fmt]
  text = "name,colour,taste\n" + WORDS if fmt == "ml_latest" else WORDS
  with pytest.raises(DataError) as err:
    build(tmp_path / "in", text)
  check_error(err.value, tmp_path / "in" / name, "no ratings were read")
  assert "another format" in str(err.value)
  assert_no_partial_store(tmp_path / "store")
  # Strict mode stops at the first line, and says why (for ml_latest: a header that is not
  # userId,movieId,rating,timestamp).
  with pytest.raises(DataError) as err:
    build(tmp_path / "in", text, strict=True, dest=tmp_path / "strict")
  assert err.value.line == 1 and f"{tmp_path / 'in' / name}:1: " in str(err.value)
  assert_no_partial_store(tmp_path / "strict")


def test_wrong_format_other_rating_layout(tmp_path):
  # A MovieLens u.data given as Netflix ratings, and Netflix blocks given as u.data.
  with pytest.raises(DataError) as err:
    _netflix(tmp_path / "a", "1\t10\t3\t881250949\n2\t10\t4\t881250950\n")
  check_error(err.value, tmp_path / "a" / "combined_data_1.txt", "no ratings were read")
  with pytest.raises(DataError) as err:
    _ml100k(tmp_path / "b", "1:\n10,3,2005-01-01\n")
  check_error(err.value, tmp_path / "b" / "u.data", "no ratings were read")
  assert_no_partial_store(tmp_path / "store")


def test_wrong_format_binary(tmp_path):
  with pytest.raises(DataError) as err:
    _ml100k(tmp_path / "in", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\xfd")
  assert err.value.path == str(tmp_path / "in" / "u.data")
  assert "cannot read as utf8 text lines" in str(err.value)
  assert_no_partial_store(tmp_path / "store")


def test_wrong_format_parquet(tmp_path):
  (tmp_path / "ratings.parquet").write_text(WORDS)
  with pytest.raises(DataError) as err:
    parquet_io.import_parquet(tmp_path / "ratings.parquet", tmp_path / "store")
  check_error(err.value, tmp_path / "ratings.parquet", "not a readable Parquet file")
  assert_no_partial_store(tmp_path / "store")


def test_truncated_last_line(tmp_path):
  text = "1:\n10,3,2005-01-01\n11,4,2005-01-02\n12,5,2005-0"  # cut mid-date, no newline
  store = _netflix(tmp_path / "in", text)
  path = tmp_path / "in" / "combined_data_1.txt"
  assert store.n_ratings == 2
  assert store.meta["bad_lines"]["examples"] == [
      {"file": str(path), "line": 4, "reason": "date is not a valid YYYY-MM-DD date",
       "text": "12,5,2005-0"}]
  with pytest.raises(DataError) as err:
    _netflix(tmp_path / "in", text, strict=True, dest=tmp_path / "strict")
  check_error(err.value, path, "date is not a valid YYYY-MM-DD date", 4)
  assert_no_partial_store(tmp_path / "strict")


def _truncated_gz(folder: Path) -> Path:
  folder.mkdir()
  text = "".join(f"{u}::{i}::{1 + (u + i) % 5}::97830{u:04d}\n"
                 for u in range(1, 300) for i in range(1, 40))
  data = gzip.compress(text.encode())
  path = folder / "ratings.dat.gz"
  path.write_bytes(data[:len(data) // 2])
  return path


@pytest.mark.parametrize("strict", [False, True])
def test_truncated_gz(tmp_path, strict):
  path = _truncated_gz(tmp_path / "ml-1m")
  with pytest.raises(DataError) as err:
    movielens.build_ml1m_store(tmp_path / "ml-1m", tmp_path / "store", strict=strict)
  assert err.value.path == str(path)
  assert "truncated" in str(err.value).lower()
  assert str(err.value).startswith(f"{path}:")
  assert_no_partial_store(tmp_path / "store")


def test_stream_error_does_not_blame_a_good_line(tmp_path):
  # An undecodable line costs that line only (skipped and counted; fatal in strict mode).
  text = b"1\t10\t3\t881250949\n2\t10\t4\t881250950\n3\t1\xff\xfe\t4\t1\n"
  store = _ml100k(tmp_path / "in", text)
  assert store.n_ratings == 2
  assert [e["line"] for e in store.meta["bad_lines"]["examples"]] == [3]
  with pytest.raises(DataError) as err:
    _ml100k(tmp_path / "in", text, strict=True, dest=tmp_path / "strict")
  assert err.value.line == 3


@pytest.mark.parametrize("fmt", ["netflix", "ml100k", "ml_latest"])
def test_duplicate_pair(tmp_path, fmt):
  text = {"netflix": "1:\n10,3,2005-01-01\n11,4,2005-01-02\n2:\n10,2,2005-02-02\n"
                     "1:\n10,5,2005-03-03\n",
          "ml100k": "10\t1\t3\t881250949\n11\t1\t4\t881250950\n10\t1\t5\t881250951\n",
          "ml_latest": "userId,movieId,rating,timestamp\n10,1,3.0,964982703\n"
                       "10,1,3.5,964982704\n"}[fmt]
  # Both lines are named: the error points at the second, its message at the first.
  first, second = {"netflix": (2, 7), "ml100k": (1, 3), "ml_latest": (2, 3)}[fmt]
  build, name, _, _, _ = FORMATS[fmt]
  for strict in (False, True):
    with pytest.raises(DataError) as err:
      build(tmp_path / "in", text, strict=strict)
    check_error(err.value, tmp_path / "in" / name, "duplicate rating: user 10 rated item 1 more "
                f"than once (first at line {first})", second)
    assert_no_partial_store(tmp_path / "store")


# The same day: caught while ordering rows; another day: caught in the item-grouped pass.
@pytest.mark.parametrize("second_date", ["2005-01-01", "2005-01-02"])
def test_duplicate_pair_across_files(tmp_path, second_date):
  folder = tmp_path / "nf"
  folder.mkdir()
  (folder / "combined_data_1.txt").write_text("1:\n10,3,2005-01-01\n11,3,2005-01-01\n")
  (folder / "combined_data_2.txt").write_text(f"1:\n10,4,{second_date}\n")
  with pytest.raises(DataError, match="duplicate rating: user 10 rated item 1") as err:
    netflix.build_netflix_store(folder, tmp_path / "store", min_user_ratings=0)
  assert "combined_data_" in str(err.value)
  assert_no_partial_store(tmp_path / "store")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_unwritable_output_folder(tmp_path, fmt):
  build, _, template, _, _ = FORMATS[fmt]
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  dest = blocker / "stores" / "store"
  good = "\n".join(x for x in template.split("\n") if x != "{bad}")
  with pytest.raises(DataError) as err:
    build(tmp_path / "in", good, dest=dest)
  assert "cannot write the output folder" in str(err.value)
  assert str(blocker) in str(err.value)
  assert blocker.read_text() == "not a folder"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "in"]


def test_existing_output_is_not_replaced(tmp_path):
  build, _, template, _, _ = FORMATS["ml100k"]
  good = "\n".join(x for x in template.split("\n") if x != "{bad}")
  first = build(tmp_path / "in", good)
  with pytest.raises(DataError) as err:
    build(tmp_path / "in", good.replace("\t3\t", "\t1\t"))
  check_error(err.value, tmp_path / "store", "already exists")
  assert RatingStore.open(tmp_path / "store").fingerprint == first.fingerprint
  assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "store"]


def test_bad_movie_titles_line(tmp_path):
  folder = tmp_path / "nf"
  folder.mkdir()
  (folder / "combined_data_1.txt").write_text("1:\n10,3,2005-01-01\n")
  (folder / "movie_titles.txt").write_text("1,2000,Fine\nx,1999,Bad Id\n2,19x9,Bad Year\n")
  store = netflix.build_netflix_store(folder, tmp_path / "store", min_user_ratings=0)
  assert store.meta["bad_lines"]["by_reason"] == {"movie id is not an integer": 1,
                                                  "year is not an integer": 1}
  assert store.items_table(["title"]).column(0).to_pylist() == ["Fine"]
  with pytest.raises(DataError) as err:
    netflix.build_netflix_store(folder, tmp_path / "strict", min_user_ratings=0, strict=True)
  check_error(err.value, folder / "movie_titles.txt", "movie id is not an integer", 2)
  assert_no_partial_store(tmp_path / "strict")


def test_bad_probe_line(tmp_path):
  folder = tmp_path / "nf"
  folder.mkdir()
  (folder / "combined_data_1.txt").write_text("1:\n10,3,2005-01-01\n")
  probe = folder / "probe.txt"
  probe.write_text("10\n1:\n10\n")
  with pytest.raises(DataError) as err:
    netflix.read_probe(probe)
  check_error(err.value, probe, "customer line before any 'MOVIE_ID:' header", 1)
  probe.write_text("1:\nten\n")
  with pytest.raises(DataError) as err:
    netflix.read_probe(probe)
  check_error(err.value, probe, "customer id is not an integer", 2)


# ------------------------------------------------------------------- library bugs found
def test_bad_line_with_several_problems_counts_once(tmp_path):
  store = _netflix(tmp_path / "in", "1:\n10,3,2005-01-01\nabc,xyz,notadate\n")
  report = store.meta["bad_lines"]
  assert report["count"] == 1
  assert len(report["examples"]) == 1


@pytest.mark.parametrize("date", ["2005-02-29", "2005-02-30", "2005-04-31"])
def test_impossible_calendar_date_is_rejected(tmp_path, date):
  store = _netflix(tmp_path / "in", f"1:\n10,3,2005-01-01\n11,4,{date}\n")
  assert store.meta["bad_lines"]["by_reason"] == {"date is not a valid YYYY-MM-DD date": 1}


def _bad_probe(folder: Path) -> None:
  folder.mkdir()
  (folder / "combined_data_1.txt").write_text("1:\n10,3,2005-01-01\n11,4,2005-01-02\n")
  (folder / "probe.txt").write_text("1:\n10\n99\n")  # customer 99 never rated movie 1


def _bad_fold(folder: Path) -> None:
  folder.mkdir()
  (folder / "u.data").write_text("1\t10\t3\t881250949\n2\t10\t4\t881250950\n")
  (folder / "u1.base").write_text("1\t10\t3\t881250949\n")
  (folder / "u1.test").write_text("2\t99\t4\t881250950\n")  # not in u.data


@pytest.mark.parametrize("make, build, name", [
    (_bad_probe, lambda f, d: netflix.build_netflix_store(f, d, min_user_ratings=0), "probe.txt"),
    (_bad_fold, movielens.build_ml100k_store, "u1.test"),
])
def test_bad_split_file_is_a_clear_error(tmp_path, make, build, name):
  make(tmp_path / "in")
  with pytest.raises(DataError) as err:
    build(tmp_path / "in", tmp_path / "store")
  check_error(err.value, tmp_path / "in" / name, "1 of ")
  assert "not in the store" in str(err.value)


@pytest.mark.parametrize("make, build", [
    (_bad_probe, lambda f, d: netflix.build_netflix_store(f, d, min_user_ratings=0)),
    (_bad_fold, movielens.build_ml100k_store),
], ids=["netflix_probe", "ml100k_fold"])
def test_bad_split_file_leaves_no_store(tmp_path, make, build):
  make(tmp_path / "in")
  with pytest.raises(DataError):
    build(tmp_path / "in", tmp_path / "store")
  assert_no_partial_store(tmp_path / "store")
