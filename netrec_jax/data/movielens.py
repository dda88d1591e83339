"""MovieLens 100K, 1M and latest (-small) into stores, with the official ML-100K folds as splits.

  ml-100k   u.data "user\\titem\\trating\\ttimestamp",
            u.item "id|title|date|video|url|19 genre flags" (latin-1), u.user, u.genre;
            folds u1..u5 and ua/ub as NAME.base / NAME.test
  ml-1m     ratings.dat "user::movie::rating::timestamp" (.gz accepted), movies.dat
            "id::title::genre|genre" (latin-1), users.dat
  latest    ratings.csv "userId,movieId,rating,timestamp" in half stars, movies.csv (quoted CSV)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from netrec_jax.data import splits as splits_lib
from netrec_jax.data import textio
from netrec_jax.data.builder import BadLines, StoreBuilder, duplicate_with_lines
from netrec_jax.data.errors import DataError, DuplicateRating
from netrec_jax.data.store import RatingStore, remove_tree

ML100K_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")


LATEST_HEADER = "userId,movieId,rating,timestamp"
NO_HEADER = f"no header line (expected {LATEST_HEADER}); the first line was read as a rating"
_RATING_LINE = r"^\s*\d+\s*SEP\s*\d+\s*SEP\s*[\d.]+\s*SEP\s*\d+\s*$"


def iter_delimited_ratings(path: str | os.PathLike, sep: str, bad: BadLines, *,
                           header: bool = False, half_stars: bool = False,
                           encoding: str = "utf8", odd: BadLines | None = None
                           ) -> Iterator[dict[str, np.ndarray]]:
  """"user SEP item SEP rating SEP unix-seconds" lines -> chunks (ratings scaled x2 if half).

  Chunks carry each rating's "line" number too. header: the first line should be
  LATEST_HEADER; strict mode requires it exactly, otherwise a first line that is a rating is
  kept (and counted in `odd`) rather than skipped. A missing final line end is fatal in strict
  mode (a cut-off u.data timestamp still parses) and counted in `odd` otherwise.
  """
  path = Path(path)
  odd = odd if odd is not None else BadLines()
  for first, lines in textio.iter_lines(path, encoding=encoding, bad=bad, odd=odd):
    if header and first == 1 and len(lines):
      line_one = str(lines[0])
      if line_one.strip().lower() == LATEST_HEADER.lower():
        lines, first = lines[1:], 2
      elif bad.strict:
        bad.add(path, [1], f"missing or unexpected header line (expected {LATEST_HEADER})",
                texts=[line_one[:80]])
      elif re.match(_RATING_LINE.replace("SEP", re.escape(sep)), line_one):
        odd.add(path, [1], NO_HEADER, texts=[line_one[:80]])
      else:  # another header: skipped, counted; the lines below say whether they parse
        odd.add(path, [1], f"header line is not {LATEST_HEADER}", texts=[line_one[:80]])
        lines, first = lines[1:], 2
    numbers = textio.line_numbers(first, len(lines))
    blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(lines)), 0).to_numpy(
        zero_copy_only=False)
    if blank.any():
      lines, numbers = lines.filter(pa.array(~blank)), numbers[~blank]
    (user_s, item_s, rating_s, time_s), ok = textio.split_fields(lines, sep, 4, numbers, bad, path)
    numbers, lines = numbers[ok], lines.filter(pa.array(ok))
    user, user_ok = textio.parse_ints(user_s, numbers, bad, path, "user id", lines)
    item, item_ok = textio.parse_ints(item_s, numbers, bad, path, "item id", lines,
                                      active=user_ok)
    stamp, stamp_ok = textio.parse_ints(time_s, numbers, bad, path, "timestamp", lines,
                                        active=user_ok & item_ok)
    still = user_ok & item_ok & stamp_ok
    if half_stars:
      stars, rating_ok = textio.parse_floats(rating_s, numbers, bad, path, "rating", lines,
                                             active=still)
      scaled = np.rint(stars * 2)
      on_grid = np.abs(scaled - stars * 2) < 1e-6
      textio.report_bad(bad, path, still & rating_ok & ~on_grid, numbers, lines,
                        "rating is not a multiple of 0.5")
      in_range = (scaled >= 1) & (scaled <= 10)
      rating_ok &= on_grid
      rating = scaled.astype(np.int64)
      range_text = "0.5..5"
    else:
      rating, rating_ok = textio.parse_ints(rating_s, numbers, bad, path, "rating", lines,
                                            active=still)
      in_range = (rating >= 1) & (rating <= 5)
      range_text = "1..5"
    textio.report_bad(bad, path, still & rating_ok & ~in_range, numbers, lines,
                      f"rating outside {range_text}")
    stamp_range = (stamp > 0) & (stamp < 4_102_444_800)  # 1970 .. 2100
    textio.report_bad(bad, path, still & rating_ok & in_range & ~stamp_range, numbers, lines,
                      "timestamp outside 1970..2100")
    good = user_ok & item_ok & rating_ok & in_range & stamp_ok & stamp_range
    yield {"user_id": user[good], "item_id": item[good], "rating": rating[good].astype(np.int32),
           "date": (stamp[good] // 86400).astype(np.int32), "line": numbers[good]}


def _year_from_title(titles: pa.Array) -> pa.Array:
  """'Toy Story (1995)' -> 1995 (null where the title has no year)."""
  match = pc.extract_regex(pc.utf8_trim_whitespace(titles), r"\((?P<year>\d{4})\)$")
  return pc.cast(pc.struct_field(match, "year"), pa.int32())


def _read_fields(path: Path, sep: str, n_fields: int, encoding: str,
                 max_splits: int | None = None) -> list[pa.Array]:
  """Small metadata files: split every line, any malformed line is an error."""
  bad = BadLines(strict=True)
  columns: list[list[pa.Array]] = [[] for _ in range(n_fields)]
  for first, lines in textio.iter_lines(path, encoding=encoding):
    numbers = textio.line_numbers(first, len(lines))
    keep = pc.greater(pc.utf8_length(lines), 0)
    lines, numbers = lines.filter(keep), numbers[keep.to_numpy(zero_copy_only=False)]
    fields, _ = textio.split_fields(lines, sep, n_fields, numbers, bad, path, max_splits=max_splits)
    for k, f in enumerate(fields):
      columns[k].append(f)
  return [pa.concat_arrays(c) if c else pa.array([], pa.string()) for c in columns]


def read_ml100k_items(path: str | os.PathLike) -> pa.Table:
  path = textio.check_readable(path)
  fields = _read_fields(path, "|", 5 + len(ML100K_GENRES), "latin-1")
  ids = pc.cast(fields[0], pa.int64())
  flags = np.stack([pc.equal(f, "1").to_numpy(zero_copy_only=False) for f in fields[5:]], axis=1)
  genres = [[g for g, on in zip(ML100K_GENRES, row) if on] for row in flags]
  dates = pc.strptime(fields[2], format="%d-%b-%Y", unit="s", error_is_null=True)
  year = pc.if_else(pc.is_valid(dates), pc.cast(pc.year(dates), pa.int32()),
                    _year_from_title(fields[1]))
  return pa.table({"original_id": ids, "title": fields[1], "year": year,
                   "genres": pa.array(genres, pa.list_(pa.string()))})


def read_ml100k_users(path: str | os.PathLike) -> pa.Table:
  path = textio.check_readable(path)
  user_id, age, gender, occupation, zip_code = _read_fields(path, "|", 5, "latin-1")
  return pa.table({"original_id": pc.cast(user_id, pa.int64()), "age": pc.cast(age, pa.int32()),
                   "gender": gender, "occupation": occupation, "zip_code": zip_code})


def read_ml1m_movies(path: str | os.PathLike) -> pa.Table:
  path = textio.check_readable(path)
  ids, titles, genres = _read_fields(path, "::", 3, "latin-1")
  return pa.table({"original_id": pc.cast(ids, pa.int64()), "title": titles,
                   "year": _year_from_title(titles), "genres": pc.split_pattern(genres, "|")})


def read_ml1m_users(path: str | os.PathLike) -> pa.Table:
  path = textio.check_readable(path)
  user_id, gender, age, occupation, zip_code = _read_fields(path, "::", 5, "latin-1")
  return pa.table({"original_id": pc.cast(user_id, pa.int64()), "gender": gender,
                   "age": pc.cast(age, pa.int32()), "occupation": pc.cast(occupation, pa.int32()),
                   "zip_code": zip_code})


def read_latest_movies(path: str | os.PathLike) -> pa.Table:
  path = textio.check_readable(path)
  try:
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={"movieId": pa.int64(), "title": pa.string(), "genres": pa.string()}))
  except pa.ArrowInvalid as e:
    raise DataError(path, f"not a MovieLens movies.csv ({str(e).splitlines()[0]})") from None
  genres = pc.split_pattern(table.column("genres"), "|")
  return pa.table({"original_id": table.column("movieId"), "title": table.column("title"),
                   "year": _year_from_title(table.column("title")), "genres": genres})


def _build(dest, name: str, ratings: Path, read: Callable[..., Iterator[dict[str, np.ndarray]]],
           bad: BadLines, *, rating_scale: int, rating_range: tuple[float, float],
           sources: list[tuple[Path, str]], item_info: pa.Table | None,
           user_info: pa.Table | None, min_user_ratings: int, min_item_ratings: int,
           overwrite: bool, params: dict) -> RatingStore:
  """read(bad, odd) yields the rating file's chunks (with line numbers, to name duplicates)."""
  odd = BadLines()
  try:
    with StoreBuilder(dest, name=name, rating_scale=rating_scale, rating_range=rating_range,
                      min_user_ratings=min_user_ratings, min_item_ratings=min_item_ratings,
                      overwrite=overwrite, build_params=params) as builder:
      builder.bad_lines, builder.odd_lines = bad, odd
      for path, role in sources:
        builder.add_source(path, role=role)
      for chunk in read(bad, odd):
        builder.add(chunk["user_id"], chunk["item_id"], chunk["rating"], chunk["date"])
      if item_info is not None:
        builder.set_item_info(item_info)
      if user_info is not None:
        builder.set_user_info(user_info)
      return builder.finish()
  except DuplicateRating as e:
    raise duplicate_with_lines(e, [(ratings, lambda: read(BadLines(), BadLines()))]) from None


def build_ml100k_store(folder: str | os.PathLike, dest: str | os.PathLike, *,
                       min_user_ratings: int = 0, min_item_ratings: int = 0, strict: bool = False,
                       overwrite: bool = False, folds: tuple[str, ...] = ML100K_FOLDS
                       ) -> RatingStore:
  """u.data -> store; each official fold present (u1..u5, ua, ub) saved as split `ml100k_uN`."""
  folder = Path(folder)
  data = textio.check_readable(folder / "u.data")
  bad = BadLines(strict=strict)
  sources = [(data, "ratings")]
  items = users = None
  if (folder / "u.item").is_file():
    items = read_ml100k_items(folder / "u.item")
    sources.append((folder / "u.item", "items"))
  if (folder / "u.user").is_file():
    users = read_ml100k_users(folder / "u.user")
    sources.append((folder / "u.user", "users"))
  read = lambda bad, odd: iter_delimited_ratings(data, "\t", bad, odd=odd)
  store = _build(dest, "ml100k", data, read, bad, rating_scale=1,
                 rating_range=(1, 5), sources=sources, item_info=items, user_info=users,
                 min_user_ratings=min_user_ratings, min_item_ratings=min_item_ratings,
                 overwrite=overwrite, params={"source": "ml100k", "strict": strict})
  if min_user_ratings == 0 and min_item_ratings == 0:
    try:
      for fold in folds:
        if (folder / f"{fold}.base").is_file() and (folder / f"{fold}.test").is_file():
          splits_lib.save_split(store, ml100k_fold_split(store, folder, fold))
    except BaseException:
      remove_tree(store.path)  # a store without the folds its folder promises is not kept
      raise
  return store


def _pairs(path: Path, sep: str) -> tuple[np.ndarray, np.ndarray]:
  user, item = [], []
  for chunk in iter_delimited_ratings(path, sep, BadLines(strict=True)):
    user.append(chunk["user_id"])
    item.append(chunk["item_id"])
  return np.concatenate(user), np.concatenate(item)


def ml100k_fold_split(store: RatingStore, folder: str | os.PathLike, fold: str) -> splits_lib.Split:
  """Official fold `fold` (u1..u5, ua, ub): NAME.base is train, NAME.test is test."""
  folder = Path(folder)
  if fold not in ML100K_FOLDS:
    raise ValueError(f"unknown ML-100K fold {fold!r}; expected one of {ML100K_FOLDS}")
  test = _pairs(folder / f"{fold}.test", "\t")
  train = _pairs(folder / f"{fold}.base", "\t")
  split = splits_lib.from_test_pairs(store, *test, name=f"ml100k_{fold}",
                                     protocol=f"ml100k_{fold}", source=folder / f"{fold}.test",
                                     train_pairs=train)
  split.params["fold"] = fold
  return split


def _find_ml1m_ratings(folder: Path) -> Path:
  for pattern in ("ratings.dat", "ratings.dat.gz", "ratings*.dat.gz", "ratings*.dat"):
    found = sorted(folder.glob(pattern))
    if found:
      return found[0]
  raise DataError(folder, "no MovieLens 1M ratings file (ratings.dat or ratings*.dat.gz)")


def build_ml1m_store(folder: str | os.PathLike, dest: str | os.PathLike, *,
                     min_user_ratings: int = 0, min_item_ratings: int = 0, strict: bool = False,
                     overwrite: bool = False) -> RatingStore:
  folder = Path(folder)
  if not folder.is_dir():
    raise DataError(folder, "MovieLens 1M folder not found")
  ratings = _find_ml1m_ratings(folder)
  bad = BadLines(strict=strict)
  sources = [(ratings, "ratings")]
  items = users = None
  if (folder / "movies.dat").is_file():
    items = read_ml1m_movies(folder / "movies.dat")
    sources.append((folder / "movies.dat", "items"))
  if (folder / "users.dat").is_file():
    users = read_ml1m_users(folder / "users.dat")
    sources.append((folder / "users.dat", "users"))
  read = lambda bad, odd: iter_delimited_ratings(ratings, "::", bad, odd=odd)
  return _build(dest, "ml1m", ratings, read, bad, rating_scale=1,
                rating_range=(1, 5), sources=sources, item_info=items, user_info=users,
                min_user_ratings=min_user_ratings, min_item_ratings=min_item_ratings,
                overwrite=overwrite, params={"source": "ml1m", "ratings_file": ratings.name,
                                             "strict": strict})


def build_latest_store(folder: str | os.PathLike, dest: str | os.PathLike, *,
                       min_user_ratings: int = 0, min_item_ratings: int = 0, strict: bool = False,
                       overwrite: bool = False) -> RatingStore:
  """MovieLens latest(-small): half stars kept exact with rating_scale 2."""
  folder = Path(folder)
  ratings = textio.check_readable(folder / "ratings.csv")
  bad = BadLines(strict=strict)
  sources = [(ratings, "ratings")]
  items = None
  if (folder / "movies.csv").is_file():
    items = read_latest_movies(folder / "movies.csv")
    sources.append((folder / "movies.csv", "items"))
  read = lambda bad, odd: iter_delimited_ratings(ratings, ",", bad, header=True,
                                                 half_stars=True, odd=odd)
  return _build(dest, "ml_latest", ratings, read, bad, rating_scale=2, rating_range=(0.5, 5.0),
                sources=sources, item_info=items, user_info=None,
                min_user_ratings=min_user_ratings, min_item_ratings=min_item_ratings,
                overwrite=overwrite, params={"source": "ml_latest", "strict": strict})


BUILDERS: dict[str, Callable[..., RatingStore]] = {
    "ml100k": build_ml100k_store,
    "ml1m": build_ml1m_store,
    "ml_latest": build_latest_store,
}
