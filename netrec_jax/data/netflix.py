"""Netflix Prize files: reading the raw format into a store, and writing it (for tests, benchmarks).

Formats (from the Prize's README):
  combined_data_N.txt / training_set/mv_XXXXXXX.txt   "MOVIE_ID:" lines, then "customer,rating,date"
  movie_titles.txt (or .csv)                           "id,year,title", latin-1, year may be NULL,
                                                        titles may contain commas
  probe.txt                                            "MOVIE_ID:" lines, then "customer"
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from netrec_jax.data import splits, textio
from netrec_jax.data.builder import BadLines, StoreBuilder, duplicate_with_lines, worker_threads
from netrec_jax.data.errors import DataError, DuplicateRating
from netrec_jax.data.store import RatingStore, remove_tree

TITLE_FILES = ("movie_titles.txt", "movie_titles.csv")


def find_files(root: str | os.PathLike) -> dict[str, list[Path] | Path | None]:
  """Locates rating files, titles and probe under a Netflix Prize folder."""
  root = Path(root)
  if not root.is_dir():
    raise DataError(root, "Netflix data folder not found")
  ratings = sorted(root.glob("combined_data_*.txt")) or sorted(root.glob("training_set/mv_*.txt"))
  if not ratings:
    ratings = sorted(root.glob("mv_*.txt"))
  if not ratings:
    raise DataError(root, "no Netflix rating files (combined_data_*.txt or training_set/mv_*.txt)")
  titles = next((root / n for n in TITLE_FILES if (root / n).is_file()), None)
  probe = root / "probe.txt" if (root / "probe.txt").is_file() else None
  return {"ratings": ratings, "titles": titles, "probe": probe}


def read_movie_titles(path: str | os.PathLike, bad: BadLines | None = None) -> pa.Table:
  """movie_titles: `original_id`, `year` (null for NULL), `title` (commas kept)."""
  path = Path(path)
  bad = bad or BadLines()
  ids, years, titles, line_nos = [], [], [], []
  for first, lines in textio.iter_lines(path, encoding="latin-1"):
    numbers = textio.line_numbers(first, len(lines))
    blank = pc.equal(pc.utf8_length(lines), 0).to_numpy(zero_copy_only=False)
    lines, numbers = lines.filter(pa.array(~blank)), numbers[~blank]
    (id_s, year_s, title_s), ok = textio.split_fields(lines, ",", 3, numbers, bad, path,
                                                      max_splits=2)
    lines, numbers = lines.filter(pa.array(ok)), numbers[ok]
    movie_id, id_ok = textio.parse_ints(id_s, numbers, bad, path, "movie id", lines)
    is_null = pc.equal(pc.utf8_upper(pc.utf8_trim_whitespace(year_s)), "NULL")
    year_text = pc.if_else(is_null, pa.scalar("0"), year_s)
    year, year_ok = textio.parse_ints(year_text, numbers, bad, path, "year", lines)
    keep = id_ok & year_ok
    ids.append(movie_id[keep])
    years.append(np.where(is_null.to_numpy(zero_copy_only=False), 0, year)[keep])
    titles.append(title_s.filter(pa.array(keep)))
    line_nos.append(numbers[keep])
  ids_np, years_np = np.concatenate(ids), np.concatenate(years)
  uniq, counts = np.unique(ids_np, return_counts=True)
  if (counts > 1).any():
    numbers = np.concatenate(line_nos)
    movie = uniq[np.argmax(counts > 1)]
    first, second = numbers[np.flatnonzero(ids_np == movie)[:2]]
    raise DataError(path, f"movie id {movie} is listed more than once (first at line {first})",
                    line=int(second))
  return pa.table({"original_id": ids_np.astype(np.int64),
                   "title": pa.concat_arrays([t.cast(pa.string()) for t in titles]),
                   "year": pa.array(years_np, mask=years_np == 0, type=pa.int32())})


def _looks_like_header(raw: bytes) -> bool:
  return raw.rstrip().endswith(b":")


def _iter_blocks(path: Path, what: str, data: pa.Buffer | None = None, first_line: int = 1,
                 state: dict[str, int] | None = None, bad: BadLines | None = None,
                 odd: BadLines | None = None
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, pa.Array]]:
  """(line numbers, movie id per line or -1, data lines) for a `MOVIE_ID:`-block file.

  With `data` (a piece of the file from line `first_line`), `state["movie"]` carries the
  movie in effect at its start and is left at the movie in effect at its end.
  """
  current_movie = state["movie"] if state else -1
  for first, lines in textio.iter_lines(path, data=data, first_line=first_line, bad=bad,
                                       odd=odd, keep_undecodable=_looks_like_header):
    numbers = textio.line_numbers(first, len(lines))
    lines_np_blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(lines)), 0)
    is_header = pc.ends_with(pc.utf8_trim_whitespace(lines), ":").to_numpy(zero_copy_only=False)
    header_pos = np.flatnonzero(is_header)
    header_ids = np.zeros(0, np.int64)
    if len(header_pos):
      text = pc.utf8_trim(pc.utf8_trim_whitespace(lines.take(pa.array(header_pos))), ":")
      ok = pc.match_substring_regex(text, r"^\d{1,9}$").to_numpy(zero_copy_only=False)
      if not ok.all():
        k = int(np.flatnonzero(~ok)[0])
        shown = repr(str(lines[int(header_pos[k])]))[:42]
        raise DataError(path, f"malformed movie header {shown}; the "
                        f"{what} after it cannot be attributed to a movie",
                        line=int(numbers[header_pos[k]]))
      header_ids = pc.cast(text, pa.int64()).to_numpy(zero_copy_only=False)
    group = np.cumsum(is_header)  # number of headers up to and including each line
    movie = np.concatenate(([current_movie], header_ids))[group]
    if len(header_ids):
      current_movie = int(header_ids[-1])
    data_rows = ~is_header & ~lines_np_blank.to_numpy(zero_copy_only=False)
    yield numbers[data_rows], movie[data_rows], lines.filter(pa.array(data_rows))
  if state is not None:
    state["movie"] = current_movie


def _segments(path: Path, n_buffers: int = 2) -> Iterator[tuple[bytearray, int]]:
  """(buffer, end) pairs: buffer[:end] is the file's next run of whole lines.

  Each run is about BLOCK_BYTES. The file is read once, into `n_buffers` buffers used in
  turn (a buffer is reused `n_buffers` runs later, so fresh memory is not faulted in for
  every run), and the file position moves back to the start of a cut line.
  """
  size = min(textio.BLOCK_BYTES, path.stat().st_size + 1)
  buffers = [bytearray(size) for _ in range(n_buffers)]
  with open(path, "rb") as f:
    for turn in itertools.count():
      buffer = buffers[turn % n_buffers]
      if len(buffer) > size:
        del buffer[size:]
      filled = f.readinto(buffer)
      if not filled:
        return
      while True:
        end = buffer.rfind(b"\n", 0, filled) + 1
        if end:
          break
        more = f.read(size)  # a line longer than a run, or the last line without a newline
        if not more:
          end = filled
          break
        buffer[filled:filled + len(more)] = more
        filled += len(more)
      if end < filled:
        f.seek(end - filled, os.SEEK_CUR)
      yield buffer, end


def _scan_headers(block: bytearray, end: int) -> tuple[np.ndarray, np.ndarray, int] | None:
  """Data rows before each `MOVIE_ID:` line of block[:end], their ids, and the line count.

  Bytes methods (memchr speed) find the 17,770 headers among 100M lines. Returns None when a
  header is malformed or a colon sits in a data line: the exact parser then names the line.
  """
  rows_before, ids = [], []
  newlines, counted_to = 0, 0
  colon = block.find(b":", 0, end)
  while colon >= 0:
    start = block.rfind(b"\n", 0, colon) + 1
    stop = block.find(b"\n", colon, end)
    stop = end if stop < 0 else stop
    text = block[start:colon]
    if not (text.isdigit() and len(text) <= 9) or block[colon + 1:stop].strip():
      return None
    newlines += block.count(b"\n", counted_to, start)
    counted_to = start
    rows_before.append(newlines - len(ids))
    ids.append(int(text))
    colon = block.find(b":", stop, end)
  n_lines = newlines + block.count(b"\n", counted_to, end) + int(block[end - 1] != 10)
  return np.array(rows_before, np.int64), np.array(ids, np.int64), n_lines


_FAST_READ = {"column_names": ["user", "rating", "date"], "use_threads": False}
# Narrow types straight from the parser (the store keeps ids as int32 dense indices anyway);
# customer ids past int32 are retried as int64.
_FAST_TYPES = ({"user": pa.int32(), "rating": pa.int8(), "date": pa.date32()},
               {"user": pa.int64(), "rating": pa.int8(), "date": pa.date32()})


def _parse_fast(data: pa.Buffer, n_headers: int, n_lines: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
  """Typed pyarrow CSV parse of a clean run of lines; None if irregular.

  Single-threaded: runs are parsed in parallel, one per worker thread, which measured faster
  on 2 cores than one multi-threaded parse at a time. Header lines come back as invalid rows
  and are skipped (`_scan_headers` placed them); any
  other irregularity (a stray field, a non-number, a blank line) returns None and the run
  goes through `_parse_exact` for precise messages.
  """
  if n_lines == n_headers:
    return np.zeros(0, np.int32), np.zeros(0, np.int8), np.zeros(0, np.int32)
  irregular = []

  def on_invalid(row) -> str:
    if not row.text.rstrip().endswith(":"):
      irregular.append(row.text)
    return "skip"

  parse = pacsv.ParseOptions(delimiter=",", quote_char=False, escape_char=False,
                             ignore_empty_lines=False, invalid_row_handler=on_invalid)
  for types in _FAST_TYPES:
    try:
      read = pacsv.ReadOptions(**_FAST_READ, block_size=max(len(data) + 1, 1 << 20))
      table = pacsv.read_csv(pa.BufferReader(data), read_options=read,
                             parse_options=parse,
                             convert_options=pacsv.ConvertOptions(
                                 column_types=types, null_values=[], strings_can_be_null=False))
      break
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
      irregular.clear()
  else:
    return None
  if irregular or table.num_rows + n_headers != n_lines:
    return None
  # One block per run, so each column is one Arrow chunk and numpy views it without a copy.
  return (table.column("user").to_numpy(), table.column("rating").to_numpy(),
          table.column("date").cast(pa.int32()).to_numpy())


class _LineNumbers:
  """Line numbers of a run's data rows, worked out only for the rows asked about (bad ones)."""

  def __init__(self, first_line: int, rows_before_header: np.ndarray):
    self.first_line, self.rows_before_header = first_line, rows_before_header

  def __getitem__(self, rows) -> np.ndarray:
    rows = np.asarray(rows)
    rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
    # Row k sits after k data rows and after every header with at most k data rows before it.
    return self.first_line + rows + np.searchsorted(self.rows_before_header, rows, side="right")


def _parse_exact(path: Path, bad: BadLines, data: pa.Buffer | None = None, first_line: int = 1,
                 state: dict[str, int] | None = None, odd: BadLines | None = None
                 ) -> Iterator[tuple[np.ndarray, ...]]:
  """Line-by-line (vectorised) parse that names every bad line; used for irregular runs."""
  for numbers, movie, lines in _iter_blocks(path, "ratings", data, first_line, state, bad, odd):
    (user_s, rating_s, date_s), ok = textio.split_fields(lines, ",", 3, numbers, bad, path)
    numbers, movie, lines = numbers[ok], movie[ok], lines.filter(pa.array(ok))
    user, user_ok = textio.parse_ints(user_s, numbers, bad, path, "customer id", lines)
    rating, rating_ok = textio.parse_ints(rating_s, numbers, bad, path, "rating", lines,
                                          dtype=pa.int32(), active=user_ok)
    days, date_ok = textio.parse_iso_dates(date_s, numbers, bad, path, lines,
                                           active=user_ok & rating_ok)
    good = user_ok & rating_ok & date_ok
    lines = lines.filter(pa.array(good))
    yield numbers[good], movie[good], user[good], rating[good], days[good], lines


def _parse_rating_file(path: Path, bad: BadLines, odd: BadLines | None = None
                       ) -> Iterator[tuple[Any, ...]]:
  """(line numbers, movie, user, rating, days, lines or None) chunks of one rating file.

  Plain files are read in runs of whole lines; each clean run takes the typed fast path and
  an irregular one the exact path, so one bad line does not slow down the rest of the file.
  The next runs are scanned and parsed in worker threads while this one is checked and
  stored (pyarrow releases the GIL while it parses).
  """
  if path.suffix in (".gz", ".bz2"):
    yield from _parse_exact(path, bad, odd=odd)
    return

  def prepare(run: tuple[bytearray, int]) -> tuple[Any, ...]:
    block, end = run
    data = pa.py_buffer(block).slice(0, end)
    scanned = _scan_headers(block, end)
    parsed = _parse_fast(data, len(scanned[1]), scanned[2]) if scanned is not None else None
    return block, end, data, scanned, parsed

  first_line, state = 1, {"movie": -1}
  depth = worker_threads() + 1  # runs parsed ahead, one per thread; each has its own buffer
  runs = _segments(path, n_buffers=depth + 1)
  with concurrent.futures.ThreadPoolExecutor(depth) as pool:
    ahead = collections.deque(pool.submit(prepare, run) for run in itertools.islice(runs, depth))
    while ahead:
      block, end, data, scanned, parsed = ahead.popleft().result()
      run = next(runs, None)  # reads into a buffer no run in flight or in hand is using
      if run is not None:
        ahead.append(pool.submit(prepare, run))
      if parsed is None:
        yield from _parse_exact(path, bad, data, first_line, state)
        first_line += block.count(b"\n", 0, end) + int(block[end - 1] != 10)
        continue
      rows_before, ids, n_lines = scanned
      user, rating, days = parsed
      runs_of_movie = np.diff(np.concatenate(([0], rows_before, [len(user)])))
      movie = np.repeat(np.concatenate(([state["movie"]], ids)).astype(np.int32), runs_of_movie)
      yield _LineNumbers(first_line, rows_before), movie, user, rating, days, None
      if len(ids):
        state["movie"] = int(ids[-1])
      first_line += n_lines
  if first_line > 1:
    textio.check_line_end(path, first_line - 1, bad, odd)


# Lines that parse but look odd: kept (and counted by reason in the store's meta.odd_lines),
# since the Prize data has them (ratings dated before the listed release year: re-releases,
# festival showings, wrong years) and dropping them silently changes the data set.
BEFORE_RELEASE = "rating dated before the movie's release year"
BEFORE_RELEASE_DROPPED = BEFORE_RELEASE + " (dropped: data.drop_before_release)"
FUTURE_DATE = "date is in the future"
NO_TITLE = "movie has no entry in the titles file"


def iter_rating_file(path: str | os.PathLike, bad: BadLines,
                     movie_year: Callable[[np.ndarray], np.ndarray] | None = None,
                     latest_date: int | None = None, odd: BadLines | None = None,
                     drop_before_release: bool = False, with_lines: bool = False
                     ) -> Iterator[dict[str, np.ndarray]]:
  """Parses one raw rating file into chunks; bad lines are reported (fatal in strict mode).

  movie_year(movie ids): release year, 0 where unknown (NULL), -1 for a movie the titles
  file does not list. Odd lines (see above) are counted in `odd` and kept, except dated
  before release with `drop_before_release`. with_lines: chunks carry "line" numbers too.
  """
  path = textio.check_readable(path)
  odd = odd if odd is not None else BadLines()
  latest_date = latest_date if latest_date is not None else int(
      np.datetime64("today", "D").astype(np.int64))
  year_start = (np.arange(1850, 2101) - 1970).astype("datetime64[Y]").astype(
      "datetime64[D]").astype(np.int64)

  def first_day(year: np.ndarray) -> np.ndarray:
    """The first day a rating of each movie may have (its release year's January 1st)."""
    return np.where(year > 0, year_start[np.clip(year, 1850, 2100) - 1850], -(1 << 30))

  for numbers, movie, user, rating, days, lines in _parse_rating_file(path, bad, odd):
    if len(user) == 0:
      continue
    # Whole-chunk checks first: a clean chunk (the usual case) needs no per-row masks.
    clean = (movie.min() >= 0 and rating.min() >= 1 and rating.max() <= 5 and user.min() > 0
             and days.max() <= latest_date)
    if clean and movie_year is not None:
      run_starts = np.flatnonzero(np.concatenate(([True], movie[1:] != movie[:-1])))
      run_years = movie_year(movie[run_starts])
      clean = bool((run_years >= 0).all() and (np.minimum.reduceat(days, run_starts)
                                               >= first_day(run_years)).all())
    if clean:
      chunk = {"user_id": user, "item_id": movie, "rating": rating, "date": days}
      if with_lines:
        chunk["line"] = np.asarray(numbers[np.arange(len(user))])
      yield chunk
      continue

    def reject(mask: np.ndarray, reason: str, numbers=numbers, lines=lines) -> None:
      textio.report_bad(bad, path, mask, numbers, lines, reason)

    def note(mask: np.ndarray, reason: str, numbers=numbers, lines=lines) -> None:
      textio.report_bad(odd, path, mask, numbers, lines, reason)

    good = movie >= 0
    reject(~good, "rating line before any 'MOVIE_ID:' header")
    in_range = (rating >= 1) & (rating <= 5)
    reject(good & ~in_range, "rating outside 1..5")
    good &= in_range
    reject(good & (user <= 0), "customer id must be positive")
    good &= user > 0
    note(good & (days > latest_date), FUTURE_DATE)
    if movie_year is not None:
      year = movie_year(movie)
      note(good & (year < 0), NO_TITLE)
      early = good & (days < first_day(year))
      note(early, BEFORE_RELEASE_DROPPED if drop_before_release else BEFORE_RELEASE)
      if drop_before_release:
        good &= ~early
    chunk = {"user_id": user[good], "item_id": movie[good],
             "rating": rating[good].astype(np.int32), "date": days[good].astype(np.int32)}
    if with_lines:
      chunk["line"] = np.asarray(numbers[good])
    yield chunk


def read_probe(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """probe.txt as (movie ids, customer ids); any malformed line is an error."""
  path = Path(path)
  movies, users = [], []
  for numbers, movie, lines in _iter_blocks(path, "customers"):
    if (movie < 0).any():
      raise DataError(path, "customer line before any 'MOVIE_ID:' header",
                      line=int(numbers[movie < 0][0]))
    bad = BadLines(strict=True)
    user, _ = textio.parse_ints(lines, numbers, bad, path, "customer id", lines)
    movies.append(movie)
    users.append(user)
  return np.concatenate(movies), np.concatenate(users)


def netflix_probe_split(store: RatingStore, probe_path: str | os.PathLike) -> splits.Split:
  """The Prize's probe set as the test part (training = everything else)."""
  movies, customers = read_probe(probe_path)
  filtered = any(store.meta.get("filters", {}).values())
  return splits.from_test_pairs(store, customers, movies, name="netflix_probe",
                                protocol="netflix_probe", source=probe_path,
                                skip_filtered=filtered)


def build_netflix_store(root: str | os.PathLike | None, dest: str | os.PathLike, *,
                        rating_files: Sequence[str | os.PathLike] | None = None,
                        titles_file: str | os.PathLike | None = None,
                        min_user_ratings: int = 25, min_item_ratings: int = 0,
                        strict: bool = False, overwrite: bool = False,
                        drop_before_release: bool = False,
                        progress: Callable[[int, int], None] | None = None) -> RatingStore:
  """Netflix Prize folder (or explicit files) -> store. Users under 25 ratings dropped by default.

  Ratings dated before their movie's release year are kept (and counted in meta.odd_lines)
  unless drop_before_release. If probe.txt is present, the `netflix_probe` split is saved
  with the store.
  """
  files = find_files(root) if root is not None else {"ratings": [], "titles": None, "probe": None}
  ratings = [Path(p) for p in rating_files] if rating_files else files["ratings"]
  titles = Path(titles_file) if titles_file else files["titles"]
  bad, odd = BadLines(strict=strict), BadLines()
  info = read_movie_titles(titles, bad) if titles is not None else None
  movie_year = None
  if info is not None:
    ids = info.column("original_id").to_numpy()
    years = info.column("year").fill_null(0).to_numpy()
    table = np.full(int(ids.max()) + 2, -1, np.int64)  # -1: not in the titles file
    table[ids] = years

    def movie_year(movie: np.ndarray) -> np.ndarray:
      inside = (movie >= 0) & (movie < len(table))
      return np.where(inside, table[np.where(inside, movie, 0)], -1)

  total_bytes = sum(textio.check_readable(p).stat().st_size for p in ratings)
  params = {"source": "netflix", "min_user_ratings": min_user_ratings,
            "min_item_ratings": min_item_ratings, "strict": strict,
            "drop_before_release": drop_before_release}
  try:
    with StoreBuilder(dest, name="netflix", rating_scale=1, rating_range=(1, 5),
                      min_user_ratings=min_user_ratings, min_item_ratings=min_item_ratings,
                      overwrite=overwrite, build_params=params) as builder:
      builder.bad_lines, builder.odd_lines = bad, odd
      builder.extra_filters = {"drop_before_release": True} if drop_before_release else {}
      done_bytes = 0
      for path in ratings:
        builder.add_source(path, role="ratings")
        for chunk in iter_rating_file(path, bad, movie_year, odd=odd,
                                      drop_before_release=drop_before_release):
          builder.add(chunk["user_id"], chunk["item_id"], chunk["rating"], chunk["date"])
        done_bytes += path.stat().st_size
        if progress is not None:
          progress(done_bytes, total_bytes)
      if titles is not None:
        builder.add_source(titles, role="titles")
        builder.set_item_info(info)
      store = builder.finish()
  except DuplicateRating as e:
    reread = lambda path: lambda: iter_rating_file(
        path, BadLines(), movie_year, drop_before_release=drop_before_release, with_lines=True)
    raise duplicate_with_lines(e, [(path, reread(path)) for path in ratings]) from None
  if files.get("probe") is not None:
    try:
      splits.save_split(store, netflix_probe_split(store, files["probe"]))
    except BaseException:
      remove_tree(store.path)  # a store without the split its folder promises is not kept
      raise
  return store


# ---------------------------------------------------------------------------------------------
# Writing the raw format (synthetic data for tests and the ingest benchmark).


def _lines_buffer(parts: list[pa.Array]) -> bytes:
  """Joins string arrays element-wise with ',' and a newline, as one bytes object."""
  joined = pc.binary_join_element_wise(*parts, ",")
  joined = pc.binary_join_element_wise(joined, pa.scalar("\n"), "")
  joined = joined.cast(pa.large_string()) if len(joined) > (1 << 24) else joined
  offsets_buf, data_buf = joined.buffers()[1], joined.buffers()[2]
  offset_type = np.int64 if pa.types.is_large_string(joined.type) else np.int32
  offsets = np.frombuffer(offsets_buf, offset_type)[joined.offset:joined.offset + len(joined) + 1]
  return data_buf.to_pybytes()[offsets[0]:offsets[-1]]


def write_netflix_files(store: RatingStore, out_dir: str | os.PathLike, *, n_files: int = 1,
                        probe_fraction: float = 0.0, seed: int = 0) -> dict[str, list[Path]]:
  """Writes the store in the Prize's raw layout (combined_data_*.txt, movie_titles.txt, probe)."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  user_ids = store.user_original_ids()
  items = store.items_table()
  item_ids = items.column("original_id").to_numpy()
  per_file = np.array_split(np.arange(store.n_items), n_files)
  written = []
  for k, file_items in enumerate(per_file, start=1):
    path = out / f"combined_data_{k}.txt"
    with open(path, "wb") as f:
      for group in np.array_split(file_items, max(1, len(file_items) // 512)):
        if len(group) == 0:
          continue
        lo, hi = int(store.item_offsets[group[0]]), int(store.item_offsets[group[-1] + 1])
        rows = np.asarray(store.item_order[lo:hi])
        body = _lines_buffer([
            pa.array(user_ids[np.take(store.user, rows)]).cast(pa.string()),
            pa.array(np.take(store.rating, rows) // store.rating_scale).cast(pa.string()),
            pa.array(np.take(store.date, rows).astype("datetime64[D]")).cast(pa.string()),
        ])
        counts = np.diff(store.item_offsets[group[0]:group[-1] + 2])
        # Stitch "MOVIE:" headers between the per-movie runs of lines.
        line_ends = np.flatnonzero(np.frombuffer(body, np.uint8) == 10) + 1
        starts = np.concatenate(([0], line_ends))[np.concatenate(([0], np.cumsum(counts)))]
        for j, item in enumerate(group):
          f.write(f"{item_ids[item]}:\n".encode())
          f.write(body[starts[j]:starts[j + 1]])
    written.append(path)
  titles = out / "movie_titles.txt"
  columns = items.column_names
  years = items.column("year").to_pylist() if "year" in columns else [None] * len(item_ids)
  names = items.column("title").to_pylist() if "title" in columns else [""] * len(item_ids)
  with open(titles, "w", encoding="latin-1", newline="\n") as f:
    for movie, year, title in zip(item_ids, years, names):
      f.write(f"{movie},{'NULL' if year is None else year},{title or ''}\n")
  result = {"ratings": written, "titles": [titles]}
  if probe_fraction > 0:
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(store.n_ratings, int(store.n_ratings * probe_fraction),
                              replace=False))
    movie, user = np.take(store.item, rows), np.take(store.user, rows)
    order = np.lexsort((user, movie))
    probe = out / "probe.txt"
    with open(probe, "w") as f:
      last = None
      for m, u in zip(movie[order], user[order]):
        if m != last:
          f.write(f"{item_ids[m]}:\n")
          last = m
        f.write(f"{user_ids[u]}\n")
    result["probe"] = [probe]
  return result
