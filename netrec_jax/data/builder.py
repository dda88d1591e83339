"""Builds a rating store from a stream of rating chunks, in bounded memory, atomically.

Sources (netflix.py, movielens.py, synthetic.py, parquet) parse their files into chunks of
(original user id, original item id, scaled rating, date) and hand them to a StoreBuilder.
Chunks are kept in compact dtypes, in memory up to a budget and spilled to disk beyond it, so
memory stays bounded at any size:

  1. collect  chunks kept (or spilled); ids, counts, rating and date ranges accumulated
  2. filter   users with < min_user_ratings, then items with < min_item_ratings, dropped;
              survivors re-indexed densely in order of original id
  3. route    every row gets its dense user, one integer for (date, item) and a bucket of
              whole users (contiguous user ranges of about BLOCK_ROWS ratings)
  4. sort     each bucket ordered by (user, date, item) with scipy's COO -> CSR conversion,
              buckets in parallel threads, columns written front to back in bucket order
  5. csc      within each bucket a radix argsort by item; duplicate (user, item) pairs are
              adjacent there and rejected; item_offsets and the item-grouped permutation follow
  6. finish   features, Parquet tables, fingerprint, meta.json, then one rename

scipy's conversion and numpy's sorts release the GIL, so the passes use every core of a small
machine. Everything is written into a temporary sibling folder; the final rename is the only
step that makes a store visible, so an interrupted build never leaves a store that opens.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse
from absl import logging

from netrec_jax.data import features
from netrec_jax.data.errors import DataError, DuplicateRating
from netrec_jax.data.store import (NO_DATE, SCHEMA_VERSION, RatingStore, content_fingerprint,
                                   days_to_iso, remove_tree, sample_digests, write_meta)

BLOCK_ROWS = 1 << 20  # 1M rows: the size of a bucket of users (cache-friendly; measured best)
MEMORY_BUDGET_BYTES = 3 << 30  # input chunks and bucket keys beyond this are spilled to disk
_DENSE_LOOKUP_MAX_ID = 1 << 26  # ids below this map through a table instead of searchsorted
_DENSE_COUNT_MAX_ID = 1 << 24  # ids below this are counted in a dense array (<= 128 MB)
_INT32 = np.iinfo(np.int32)
_SUB_BLOCK_ROWS = 1 << 18  # rows per step inside a pass: temporaries stay in cache
# A build's temporary folder records who builds (host, pid, process start). The next build in
# the same parent folder removes those whose process is gone (kill -9, power loss), and any
# older than this (a build on another host cannot be asked whether it still runs).
BUILDER_FILE = ".builder.json"
STALE_BUILD_SECONDS = 24 * 3600
_UNRECORDED_GRACE_SECONDS = 600  # a folder without BUILDER_FILE may be a build just starting


def worker_threads() -> int:
  """Threads for the parallel passes: the machine's cores, at most 4 (memory per bucket)."""
  return max(1, min(4, os.cpu_count() or 1))


def ordered_map(fn: Callable[[Any], Any], items: Sequence[Any], threads: int) -> Iterator[Any]:
  """fn over items in a thread pool, results in order, at most threads + 1 in flight."""
  if threads <= 1 or len(items) <= 1:
    yield from map(fn, items)
    return
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    pending = []
    try:
      for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > threads:
          yield pending.pop(0).result()
      while pending:
        yield pending.pop(0).result()
    finally:
      for future in pending:
        future.cancel()


class BadLines:
  """Counts rejected input lines by reason and keeps the first few as examples."""

  def __init__(self, strict: bool = False, max_examples: int = 20):
    self.strict = strict
    self.max_examples = max_examples
    self.count = 0
    self.by_reason: dict[str, int] = {}
    self.examples: list[dict[str, Any]] = []

  def add(self, path: str | os.PathLike, lines: Iterable[int], reason: str,
          texts: Iterable[str] | None = None) -> None:
    """Records bad lines (1-based numbers); in strict mode the first one is fatal."""
    lines = [int(x) for x in lines]
    if not lines:
      return
    texts = list(texts) if texts is not None else [None] * len(lines)
    if self.strict:
      shown = f" ({texts[0]!r})" if texts[0] is not None else ""
      raise DataError(path, f"{reason}{shown} [strict mode: bad lines are fatal]", line=lines[0])
    self.count += len(lines)
    self.by_reason[reason] = self.by_reason.get(reason, 0) + len(lines)
    for line, text in zip(lines, texts):
      if len(self.examples) >= self.max_examples:
        break
      self.examples.append({"file": os.fspath(path), "line": line, "reason": reason,
                            "text": text})

  def merge(self, other: "BadLines") -> None:
    """Adds the counts and examples of `other` (bad lines found by a worker), in order."""
    self.count += other.count
    for reason, count in other.by_reason.items():
      self.by_reason[reason] = self.by_reason.get(reason, 0) + count
    self.examples.extend(other.examples[:max(0, self.max_examples - len(self.examples))])

  def report(self) -> dict[str, Any]:
    return {"count": self.count, "by_reason": dict(self.by_reason), "examples": self.examples}


class _IdCounter:
  """Distinct original ids and their counts, merged as chunks arrive.

  Small non-negative ids (all real datasets) are counted in place into a dense array,
  O(n) per chunk; other ids fall back to sorting (np.unique) and merging.
  """

  def __init__(self):
    self._dense = np.zeros(0, np.int64)
    self._parts: list[tuple[np.ndarray, np.ndarray]] = []
    self._pending = 0

  def add(self, ids: np.ndarray, lo: int | None = None, hi: int | None = None) -> None:
    """Counts `ids` (lo and hi are their min and max, when the caller has them)."""
    lo = ids.min() if lo is None else lo
    hi = ids.max() if hi is None else hi
    if not self._parts and lo >= 0 and hi < _DENSE_COUNT_MAX_ID:
      if hi >= len(self._dense):  # grow geometrically, so a few copies over the whole input
        grown = np.zeros(max(int(hi) + 1, 2 * len(self._dense)), np.int64)
        grown[:len(self._dense)] = self._dense
        self._dense = grown
      if hi < 1 << 16:  # few ids (movies): bincount is fastest and its result is small
        self._dense[:hi + 1] += np.bincount(ids, minlength=hi + 1)
      else:  # many ids (customers): in place, no count array per chunk
        np.add.at(self._dense, ids, 1)
      return
    uniq, counts = np.unique(ids, return_counts=True)
    self._parts.append((uniq, counts.astype(np.int64)))
    self._pending += len(uniq)
    if len(self._parts) > 1 and self._pending > (1 << 23):
      self._merge()

  def _merge(self) -> None:
    if len(self._dense):  # switch from dense counting to sparse parts for good
      nonzero = np.flatnonzero(self._dense)
      self._parts.append((nonzero.astype(np.int64), self._dense[nonzero]))
      self._dense = np.zeros(0, np.int64)
    ids = np.concatenate([p[0] for p in self._parts])
    counts = np.concatenate([p[1] for p in self._parts])
    uniq, inverse = np.unique(ids, return_inverse=True)
    merged = np.bincount(inverse, weights=counts, minlength=len(uniq)).astype(np.int64)
    self._parts = [(uniq, merged)]
    self._pending = len(uniq)

  def result(self) -> tuple[np.ndarray, np.ndarray]:
    if not self._parts:
      nonzero = np.flatnonzero(self._dense)
      return nonzero.astype(np.int64), self._dense[nonzero]
    self._merge()
    return self._parts[0]


class _DenseMap:
  """Original id -> dense index (-1 if dropped); sorted_ids[k] is the id of index k."""

  def __init__(self, sorted_ids: np.ndarray):
    self.sorted_ids = np.asarray(sorted_ids, np.int64)
    self._table = None
    if len(self.sorted_ids) and self.sorted_ids[0] >= 0 and \
        self.sorted_ids[-1] < _DENSE_LOOKUP_MAX_ID:
      self._table = np.full(int(self.sorted_ids[-1]) + 1, -1, np.int32)
      self._table[self.sorted_ids] = np.arange(len(self.sorted_ids), dtype=np.int32)

  def __len__(self) -> int:
    return len(self.sorted_ids)

  def __call__(self, ids: np.ndarray) -> np.ndarray:
    if self._table is not None:
      if len(ids) and ids.min() >= 0 and ids.max() < len(self._table):
        return np.take(self._table, ids)  # the common case: one gather, no masks
      inside = (ids >= 0) & (ids < len(self._table))
      out = np.full(len(ids), -1, np.int32)
      out[inside] = self._table[ids[inside]]
      return out
    if len(self.sorted_ids) == 0:
      return np.full(len(ids), -1, np.int32)
    pos = np.minimum(np.searchsorted(self.sorted_ids, ids), len(self.sorted_ids) - 1)
    return np.where(self.sorted_ids[pos] == ids, pos, -1).astype(np.int32)


def stable_argsort(keys: np.ndarray, n_keys: int) -> np.ndarray:
  """Stable argsort of non-negative int keys < n_keys, as LSD radix passes over 16-bit digits.

  numpy's stable sort is a radix sort only for 16-bit types (about 6x faster than its timsort
  on int32 here), so wider keys are sorted digit by digit, low digit first.
  """
  if n_keys <= 1 << 16:
    return np.argsort(keys.astype(np.uint16), kind="stable")
  order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
  shift = 16
  while (n_keys - 1) >> shift:
    digit = ((keys[order] >> shift) & 0xFFFF).astype(np.uint16)
    order = order[np.argsort(digit, kind="stable")]
    shift += 16
  return order


def group_positions(sorted_keys: np.ndarray, cursor: np.ndarray) -> np.ndarray:
  """Destinations of rows already sorted by group: cursor[g] + rank within g; advances cursor.

  `cursor[g]` holds the next free slot of group g; int64 throughout, so offsets past 2^31
  stay exact.
  """
  starts = np.searchsorted(sorted_keys, np.arange(len(cursor) + 1))
  positions = np.take(cursor - starts[:-1], sorted_keys)
  positions += np.arange(len(sorted_keys))
  cursor += np.diff(starts)
  return positions


def _bits(n_values: int) -> int:
  """Bits that hold the values 0 .. n_values - 1."""
  return int(max(n_values - 1, 0)).bit_length()


def _narrow(values: np.ndarray, lo: int, hi: int, dtypes=(np.int8, np.int16, np.int32)
            ) -> np.ndarray:
  """The smallest of `dtypes` that holds [lo, hi] (chunks wait for the build in this form)."""
  for dtype in dtypes:
    info = np.iinfo(dtype)
    if lo >= info.min and hi <= info.max:
      return values.astype(dtype, copy=False)
  return values


class RowOrder:
  """Orders a bucket's rows by (user, date, item) with scipy's compiled COO -> CSR conversion.

  (date, item) is packed into one integer column index, the bucket's users are the CSR rows
  and the rating rides along as the value. scipy's counting sort by row and per-row index
  sort do this about 1.5x faster than one numpy sort of packed int64 keys (and with no keys
  to pack and unpack), and they release the GIL, so buckets sort in parallel threads.
  """

  INT32_BITS = 31  # column indices stay int32 up to this many bits (then int64)

  def __init__(self, date_range: tuple[int, int], n_items: int):
    self.date_lo = int(date_range[0])
    self.item_bits = _bits(n_items)
    self.date_bits = _bits(int(date_range[1]) - self.date_lo + 1)
    self.dtype = np.int32 if self.date_bits + self.item_bits <= self.INT32_BITS else np.int64
    self.n_columns = ((int(date_range[1]) - self.date_lo) << self.item_bits) + n_items

  def encode(self, date: np.ndarray, item: np.ndarray) -> np.ndarray:
    column = np.subtract(date, self.date_lo, dtype=self.dtype)
    column <<= self.item_bits
    column |= item
    return column

  def decode(self, column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(date, item) as int32."""
    item = (column & ((1 << self.item_bits) - 1)).astype(np.int32)
    date = (column >> self.item_bits).astype(np.int64)
    date += self.date_lo
    return date.astype(np.int32), item

  def sort(self, user: np.ndarray, n_users: int, column: np.ndarray, rating: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(row offsets, columns, ratings) ordered by (user, column); None if a (user, column)
    pair repeats (scipy would have summed it)."""
    matrix = scipy.sparse.coo_array((rating, (user, column)),
                                    shape=(n_users, self.n_columns)).tocsr()
    if matrix.nnz != len(rating):
      return None
    return matrix.indptr, matrix.indices, matrix.data


class _Chunks:
  """Input chunks in arrival order: in memory while the budget lasts, spilled to .npy beyond."""

  def __init__(self, folder: Path, budget_bytes: int):
    self.folder, self.budget = folder, budget_bytes
    self.entries: list[tuple[np.ndarray, ...] | list[Path] | None] = []
    self.memory_bytes = 0
    self.spilled = 0

  def __len__(self) -> int:
    return len(self.entries)

  def add(self, columns: tuple[np.ndarray, ...]) -> None:
    size = sum(c.nbytes for c in columns)
    if self.memory_bytes + size <= self.budget:
      self.entries.append(columns)
      self.memory_bytes += size
      return
    paths = [self.folder / f"chunk{len(self.entries)}_{k}.npy" for k in range(len(columns))]
    for path, column in zip(paths, columns):
      np.save(path, column)
    self.entries.append(paths)
    self.spilled += 1

  def get(self, k: int, release: bool = False) -> tuple[np.ndarray, ...]:
    """Chunk k; with `release`, memory and files are given back (for the last pass)."""
    entry = self.entries[k]
    if release:
      self.entries[k] = None
    if isinstance(entry, tuple):
      return entry
    columns = tuple(np.load(path, mmap_mode=None if release else "r") for path in entry)
    if release:
      for path in entry:
        os.remove(path)
    return columns


class _Buckets:
  """Encoded rows routed to buckets: in memory while the budget lasts, appended to files beyond."""

  def __init__(self, folder: Path, n_buckets: int, budget_bytes: int):
    self.folder, self.budget = folder, budget_bytes
    self.parts: list[list[tuple[np.ndarray, ...]]] = [[] for _ in range(n_buckets)]
    self.on_disk: list[list[np.dtype] | None] = [None] * n_buckets
    self.memory_bytes = 0
    self.spilled = 0

  def _path(self, bucket: int, k: int) -> Path:
    return self.folder / f"bucket{bucket}_{k}.bin"

  def add(self, bucket: int, columns: tuple[np.ndarray, ...]) -> None:
    size = sum(c.nbytes for c in columns)
    if self.memory_bytes + size <= self.budget:
      self.parts[bucket].append(columns)
      self.memory_bytes += size
      return
    for k, column in enumerate(columns):
      with open(self._path(bucket, k), "ab") as f:
        column.tofile(f)
    self.on_disk[bucket] = [c.dtype for c in columns]
    self.spilled += 1

  def take(self, bucket: int) -> list[tuple[np.ndarray, ...]]:
    parts, self.parts[bucket] = self.parts[bucket], []
    if self.on_disk[bucket] is not None:
      dtypes = self.on_disk[bucket]
      parts.append(tuple(np.fromfile(self._path(bucket, k), dtype)
                         for k, dtype in enumerate(dtypes)))
      for k in range(len(dtypes)):
        os.remove(self._path(bucket, k))
    return parts


class StoreBuilder:
  """Streams rating chunks into a new store at `dest`. Use as a context manager."""

  def __init__(self, dest: str | os.PathLike, *, name: str, rating_scale: int = 1,
               rating_range: tuple[float, float] = (1.0, 5.0), min_user_ratings: int = 0,
               min_item_ratings: int = 0, overwrite: bool = False, has_dates: bool = True,
               build_params: dict[str, Any] | None = None):
    if min_user_ratings < 0 or min_item_ratings < 0:
      raise ValueError("min_user_ratings and min_item_ratings must be >= 0")
    self.dest = Path(dest)
    self.name = name
    self.rating_scale = int(rating_scale)
    self.rating_range = (float(rating_range[0]), float(rating_range[1]))
    self.min_user_ratings = int(min_user_ratings)
    self.min_item_ratings = int(min_item_ratings)
    self.overwrite = overwrite
    self.has_dates = has_dates
    self.build_params = dict(build_params or {})
    self.bad_lines = BadLines()
    # Lines kept although they look odd (dated before release, no line end, ...), by reason.
    self.odd_lines = BadLines()
    self.extra_filters: dict[str, Any] = {}  # source-specific filters, recorded in meta
    self.sources: list[dict[str, Any]] = []
    self._item_info: pa.Table | None = None
    self._user_info: pa.Table | None = None
    self._users = _IdCounter()
    self._items = _IdCounter()
    self._n_rows = 0
    self._rating_span = [_INT32.max, _INT32.min]  # of the scaled ratings read
    self._date_span = [_INT32.max, _INT32.min]  # of the dates read (NO_DATE included)
    self._saw_no_date = False
    if self.dest.exists() and not overwrite:
      raise DataError(self.dest, "output already exists (pass overwrite=True / --overwrite "
                      "to replace it)")
    self.tmp = self.dest.parent / f".{self.dest.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
      self.dest.parent.mkdir(parents=True, exist_ok=True)
      remove_stale_builds(self.dest.parent)
      self.tmp.mkdir()
      (self.tmp / BUILDER_FILE).write_text(json.dumps(_builder_record()))
    except OSError as e:
      remove_tree(self.tmp)
      raise DataError(self.dest.parent,
                      f"cannot write the output folder ({e.strerror or e})") from None
    self._chunks = _Chunks(self.tmp, MEMORY_BUDGET_BYTES)
    self._closed = False

  def __enter__(self) -> "StoreBuilder":
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is not None:
      self.abort()

  def abort(self) -> None:
    """Removes the half-built temporary folder; the destination is untouched."""
    self._closed = True
    self._chunks = _Chunks(self.tmp, 0)
    remove_tree(self.tmp)

  # ------------------------------------------------------------------ input
  def add_source(self, path: str | os.PathLike, **info: Any) -> None:
    """Records a source file (path, size, mtime) so the metadata says what the data came from."""
    path = Path(path)
    stat = path.stat()
    self.sources.append({"path": str(path.resolve()), "bytes": stat.st_size,
                         "mtime": int(stat.st_mtime), **info})

  def add(self, user_ids: np.ndarray, item_ids: np.ndarray, ratings: np.ndarray,
          dates: np.ndarray | None = None) -> None:
    """Appends a chunk: original ids (integers), ratings already scaled (int32), dates in days."""
    if self._closed:
      raise RuntimeError("the builder is finished or aborted")
    n = len(user_ids)
    if not (len(item_ids) == len(ratings) == n and (dates is None or len(dates) == n)):
      raise ValueError("chunk columns differ in length")
    if n == 0:
      return
    user_ids, item_ids, ratings = np.asarray(user_ids), np.asarray(item_ids), np.asarray(ratings)
    if any(a.dtype.kind not in "iu" for a in (user_ids, item_ids, ratings)):
      raise ValueError("user ids, item ids and (scaled) ratings must be integers")
    dates = (np.full(n, NO_DATE, np.int32) if dates is None else np.asarray(dates, np.int32))
    lo, hi = self.rating_range
    rating_lo, rating_hi = int(ratings.min()), int(ratings.max())
    if rating_lo < lo * self.rating_scale or rating_hi > hi * self.rating_scale:
      raise ValueError(f"chunk has ratings outside {self.rating_range}; sources must reject them")
    user_lo, user_hi = int(user_ids.min()), int(user_ids.max())
    item_lo, item_hi = int(item_ids.min()), int(item_ids.max())
    self._users.add(user_ids, user_lo, user_hi)
    self._items.add(item_ids, item_lo, item_hi)
    date_lo, date_hi = int(dates.min()), int(dates.max())
    self._saw_no_date |= date_lo == NO_DATE
    self._rating_span = [min(self._rating_span[0], rating_lo), max(self._rating_span[1], rating_hi)]
    self._date_span = [min(self._date_span[0], date_lo), max(self._date_span[1], date_hi)]
    self._chunks.add((
        _narrow(user_ids, user_lo, user_hi, (np.int32,)),
        _narrow(item_ids, item_lo, item_hi, (np.int32,)),
        _narrow(ratings, rating_lo, rating_hi),
        dates))
    self._n_rows += n

  def set_item_info(self, table: pa.Table) -> None:
    """Item metadata keyed by `original_id` (title, year, genres, ...)."""
    self._item_info = table

  def set_user_info(self, table: pa.Table) -> None:
    """User side information keyed by `original_id` (age, gender, occupation, ...)."""
    self._user_info = table

  # ----------------------------------------------------------------- build
  def finish(self) -> RatingStore:
    """Orders, indexes and publishes the store; returns it opened."""
    try:
      return self._finish()
    except BaseException:
      self.abort()
      raise

  def _count_kept(self, user_map: _DenseMap, item_map: _DenseMap) -> tuple[np.ndarray, np.ndarray]:
    """Ratings per kept user and item (a pass over the chunks, after a filter dropped some)."""
    n_per_user = np.zeros(len(user_map), np.int64)
    n_per_item = np.zeros(len(item_map), np.int64)
    for k in range(len(self._chunks)):
      user, item = self._chunks.get(k)[:2]
      u, i = user_map(np.asarray(user)), item_map(np.asarray(item))
      keep = (u >= 0) & (i >= 0)
      n_per_user += np.bincount(u[keep], minlength=len(user_map))
      n_per_item += np.bincount(i[keep], minlength=len(item_map))
    return n_per_user, n_per_item

  def _finish(self) -> RatingStore:
    started = time.time()
    threads = worker_threads()
    where = (", ".join(s["path"] for s in self.sources if s.get("role") == "ratings")
             or self.name)
    if self._n_rows == 0:
      hint = ""
      if self.bad_lines.count:
        first = self.bad_lines.examples[0] if self.bad_lines.examples else {}
        hint = (f"; all {self.bad_lines.count} lines were rejected {self.bad_lines.by_reason}, "
                f"first at {first.get('file')}:{first.get('line')}: {first.get('text')!r}")
      raise DataError(where, "no ratings were read (is the file empty or in another format?)"
                      + hint)

    # ---- 2. filter: users, then items among the surviving users.
    user_ids, user_counts = self._users.result()
    item_ids, item_counts = self._items.result()
    kept_users = user_counts >= self.min_user_ratings
    user_map = _DenseMap(user_ids[kept_users])
    if self.min_item_ratings > 0 and not kept_users.all():
      all_items = _DenseMap(item_ids)
      item_counts = np.zeros(len(item_ids), np.int64)
      for k in range(len(self._chunks)):
        user, item = self._chunks.get(k)[:2]
        keep = user_map(np.asarray(user)) >= 0
        item_counts += np.bincount(all_items(np.asarray(item))[keep], minlength=len(item_ids))
    kept_items = item_counts >= max(1, self.min_item_ratings)
    item_map = _DenseMap(item_ids[kept_items])
    filtered = not (kept_users.all() and kept_items.all())
    if filtered:
      # Final counts; users or items left with no ratings are dropped and the maps rebuilt.
      n_per_user, n_per_item = self._count_kept(user_map, item_map)
      if (n_per_user == 0).any():
        user_map = _DenseMap(user_map.sorted_ids[n_per_user > 0])
        n_per_user = n_per_user[n_per_user > 0]
      if (n_per_item == 0).any():
        item_map = _DenseMap(item_map.sorted_ids[n_per_item > 0])
        n_per_item = n_per_item[n_per_item > 0]
    else:
      n_per_user, n_per_item = user_counts, item_counts
    n_users, n_items, n = len(user_map), len(item_map), int(n_per_user.sum())
    if n == 0:
      raise DataError(where, f"no ratings left after filtering (min_user_ratings="
                      f"{self.min_user_ratings}, min_item_ratings={self.min_item_ratings})")
    if max(n_users, n_items) >= _INT32.max:
      raise DataError(where, "more than 2^31 users or items do not fit int32 indices")
    logging.info("store %s: %d ratings, %d users, %d items after filtering (%d read)",
                 self.name, n, n_users, n_items, self._n_rows)

    phase_seconds = {"filter": time.time() - started}
    # ---- 3. route: each row's dense user, (date, item) column and bucket of whole users.
    user_offsets = np.zeros(n_users + 1, np.int64)
    np.cumsum(n_per_user, out=user_offsets[1:])
    buckets = list(_user_blocks(user_offsets, BLOCK_ROWS))
    n_buckets = len(buckets)
    bucket_of_user = np.repeat(np.arange(n_buckets), [hi - lo for lo, hi in buckets])
    bucket_of_user = bucket_of_user.astype(np.uint16 if n_buckets <= 1 << 16 else np.int64)
    row_order = RowOrder(self._date_span, n_items)
    routed = _Buckets(self.tmp, n_buckets, MEMORY_BUDGET_BYTES)

    def route(k: int) -> list[tuple[int, tuple[np.ndarray, ...]]]:
      """Chunk k as (bucket, (user, column, rating)) pieces, in cache-sized sub-blocks."""
      pieces = []
      user, item, rating, date = self._chunks.get(k, release=True)
      for lo in range(0, len(user), _SUB_BLOCK_ROWS):
        sub = slice(lo, lo + _SUB_BLOCK_ROWS)
        u, i = user_map(np.asarray(user[sub])), item_map(np.asarray(item[sub]))
        r, d = np.asarray(rating[sub]), np.asarray(date[sub])
        if filtered:
          keep = (u >= 0) & (i >= 0)
          u, i, r, d = u[keep], i[keep], r[keep], d[keep]
        encoded = (u, row_order.encode(d, i), r)
        if n_buckets == 1:
          pieces += [(0, encoded)] if len(u) else []
          continue
        bucket = np.take(bucket_of_user, u)
        order = (np.argsort(bucket, kind="stable") if bucket.dtype == np.uint16
                 else stable_argsort(bucket, n_buckets))
        encoded = tuple(np.take(c, order) for c in encoded)
        ends = np.cumsum(np.bincount(bucket, minlength=n_buckets))
        starts = np.concatenate(([0], ends[:-1]))
        pieces += [(b, tuple(c[starts[b]:ends[b]] for c in encoded))
                   for b in np.flatnonzero(ends > starts)]
      return pieces

    for pieces in ordered_map(route, range(len(self._chunks)), threads):
      for bucket, encoded in pieces:
        routed.add(int(bucket), encoded)

    phase_seconds["route"] = time.time() - started - sum(phase_seconds.values())
    # ---- 4, 5. sort each bucket; CSC, duplicates and sums from the same pass. Buckets come
    # back in order, so the columns are written (and hashed) front to back, never read back.
    item_offsets = np.zeros(n_items + 1, np.int64)
    np.cumsum(n_per_item, out=item_offsets[1:])
    order_dtype = np.int32 if n < _INT32.max else np.int64
    item_order = np.empty(n, order_dtype)  # scattered into in RAM, written once
    cursor = item_offsets[:-1].copy()
    user_sums = np.zeros(n_users, np.float64)
    item_sums = np.zeros(n_items, np.float64)
    # The user column is a function of user_offsets, which the fingerprint hashes instead.
    digests = {name: hashlib.sha256() for name in ("item", "rating", "date")}
    rating_seen = [_INT32.max, _INT32.min]
    date_seen = [_INT32.max, _INT32.min]
    saw_no_date = self._saw_no_date

    def sort_bucket(b: int) -> dict[str, Any]:
      lo_user, hi_user = buckets[b]
      lo, hi = int(user_offsets[lo_user]), int(user_offsets[hi_user])
      parts = routed.take(b)
      u, column, r = (np.concatenate([p[k] for p in parts]) for k in range(3))
      u -= lo_user
      ordered = row_order.sort(u, hi_user - lo_user, column, r)
      if ordered is None:  # a (user, date, item) triple repeats
        return {"repeated": _first_repeated_pair(u + lo_user, row_order.decode(column)[1])}
      indptr, column, r = ordered
      assert len(column) == hi - lo and indptr[-1] == hi - lo, (b, len(column), hi - lo)
      d, i = row_order.decode(column)
      r = r.astype(np.int32)
      u = np.repeat(np.arange(lo_user, hi_user, dtype=np.int32), np.diff(indptr))
      # Grouped by item, rows keep their (user-major) order: a repeated pair sits side by side.
      order = stable_argsort(i, n_items)
      item_sorted = np.take(i, order)
      user_sorted = np.take(u, order)
      repeated = np.flatnonzero((item_sorted[1:] == item_sorted[:-1])
                                & (user_sorted[1:] == user_sorted[:-1]))
      user_sums[lo_user:hi_user] = np.add.reduceat(r, indptr[:-1], dtype=np.int64)
      dated = d[d != NO_DATE] if saw_no_date else d
      return {"lo": lo, "order": order, "item_sorted": item_sorted,
              "repeated": (int(user_sorted[repeated[0]]), int(item_sorted[repeated[0]]))
                          if len(repeated) else None,
              "item_sums": np.bincount(i, weights=r, minlength=n_items),
              "columns": (u, i, r, d), "rating_span": (int(r.min()), int(r.max())),
              "date_span": (int(dated.min()), int(dated.max())) if len(dated) else None}

    with contextlib.ExitStack() as files:
      out = {name: files.enter_context(_npy_writer(self.tmp / f"{name}.npy", np.int32, n))
             for name in ("user", "item", "rating", "date")}
      for done in ordered_map(sort_bucket, range(n_buckets), threads):
        if done["repeated"] is not None:
          user, item = done["repeated"]
          raise DuplicateRating(where, int(user_map.sorted_ids[user]),
                                int(item_map.sorted_ids[item]))
        positions = group_positions(done["item_sorted"], cursor)
        item_order[positions] = done["order"] + done["lo"]
        item_sums += done["item_sums"]
        for name, values in zip(("user", "item", "rating", "date"), done["columns"]):
          written = out[name].write(values)
          if name in digests:
            digests[name].update(written)
        rating_seen = [min(rating_seen[0], done["rating_span"][0]),
                       max(rating_seen[1], done["rating_span"][1])]
        if done["date_span"] is not None:
          date_seen = [min(date_seen[0], done["date_span"][0]),
                       max(date_seen[1], done["date_span"][1])]
    np.save(self.tmp / "item_order.npy", item_order)
    np.save(self.tmp / "user_offsets.npy", user_offsets)
    np.save(self.tmp / "item_offsets.npy", item_offsets)
    del item_order

    phase_seconds["sort"] = time.time() - started - sum(phase_seconds.values())
    # ---- 6. features, tables, fingerprint, metadata, publish.
    global_mean = float(user_sums.sum() / n / self.rating_scale)
    _write_table(self.tmp / "users.parquet", user_map.sorted_ids,
                 features.activity_features(n_per_user, user_sums, self.rating_scale,
                                            global_mean),
                 self._user_info)
    _write_table(self.tmp / "items.parquet", item_map.sorted_ids,
                 features.activity_features(n_per_item, item_sums, self.rating_scale,
                                            global_mean),
                 self._item_info)
    has_date = date_seen[0] <= date_seen[1]
    meta = {
        "schema_version": SCHEMA_VERSION,
        "name": self.name,
        "n_ratings": n,
        "n_users": n_users,
        "n_items": n_items,
        "n_read": self._n_rows,
        "rating_scale": self.rating_scale,
        "rating_range": list(self.rating_range),
        "observed_rating_range": [rating_seen[0] / self.rating_scale,
                                  rating_seen[1] / self.rating_scale],
        "global_mean": global_mean,
        "has_dates": self.has_dates and has_date,
        "date_range": [days_to_iso(date_seen[0]), days_to_iso(date_seen[1])] if has_date else None,
        "filters": {"min_user_ratings": self.min_user_ratings,
                    "min_item_ratings": self.min_item_ratings, **self.extra_filters},
        "bad_lines": self.bad_lines.report(),
        "odd_lines": self.odd_lines.report(),
        "sources": self.sources,
        "build_params": self.build_params,
        "fingerprint": content_fingerprint({k: h.digest() for k, h in digests.items()},
                                           user_offsets, user_map.sorted_ids,
                                           item_map.sorted_ids, self.rating_scale),
        # What RatingStore.verify checks: sampled digests of every file (on each open) and
        # each hashed column's sha256 (full verify).
        "content": {"samples": sample_digests(self.tmp),
                    "sha256": {k: h.hexdigest() for k, h in digests.items()}},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(time.time() - started, 2),
        "build_stats": {"buckets": n_buckets, "threads": threads,
                        "column_dtype": np.dtype(row_order.dtype).name,
                        "spilled_chunks": self._chunks.spilled,
                        "spilled_bucket_parts": routed.spilled,
                        "phase_seconds": {k: round(v, 2) for k, v in phase_seconds.items()}},
    }
    (self.tmp / BUILDER_FILE).unlink(missing_ok=True)
    write_meta(self.tmp, meta)
    self._closed = True
    _publish(self.tmp, self.dest, self.overwrite)
    return RatingStore.open(self.dest)


def _user_blocks(user_offsets: np.ndarray, block_rows: int):
  """Consecutive user ranges [lo, hi) holding about block_rows ratings (at least one user)."""
  n_users = len(user_offsets) - 1
  lo = 0
  while lo < n_users:
    target = user_offsets[lo] + block_rows
    hi = int(np.searchsorted(user_offsets, target, side="right")) - 1
    hi = min(max(hi, lo + 1), n_users)
    yield lo, hi
    lo = hi


def _write_table(path: Path, original_ids: np.ndarray, feats: dict[str, np.ndarray],
                 info: pa.Table | None) -> None:
  table = pa.table({"index": np.arange(len(original_ids), dtype=np.int32),
                    "original_id": original_ids.astype(np.int64), **feats})
  if info is not None and info.num_rows:
    info_ids = info.column("original_id").to_numpy().astype(np.int64)
    order = np.argsort(info_ids, kind="stable")
    pos = np.searchsorted(info_ids[order], original_ids)
    pos = np.minimum(pos, len(order) - 1)
    found = info_ids[order][pos] == original_ids
    take = pa.array(np.where(found, order[pos], 0), mask=~found)
    for name in info.column_names:
      if name in ("original_id", "index") or name in feats:
        continue
      table = table.append_column(name, info.column(name).take(take))
  pq.write_table(table, path)


def _first_repeated_pair(user: np.ndarray, item: np.ndarray) -> tuple[int, int]:
  """A (user, item) pair that occurs more than once (slow; only for the error message)."""
  pairs, counts = np.unique(np.stack([user, item], axis=1), axis=0, return_counts=True)
  user, item = pairs[np.argmax(counts > 1)]
  return int(user), int(item)


@contextlib.contextmanager
def _npy_writer(path: Path, dtype: Any, n: int) -> Iterator[Any]:
  """A .npy file of n values written front to back; its length is checked on close."""
  dtype = np.dtype(dtype).newbyteorder("<")
  with open(path, "wb") as f:
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype),
                                             "fortran_order": False, "shape": (n,)})
    start = f.tell()

    class Writer:
      def write(self, values: np.ndarray) -> np.ndarray:
        values = np.ascontiguousarray(values, dtype)
        f.write(values)
        return values  # the bytes written, for hashing

    yield Writer()
    if f.tell() - start != n * dtype.itemsize:
      raise AssertionError(f"{path.name}: wrote {(f.tell() - start) // dtype.itemsize} of {n}")


_fingerprint = content_fingerprint  # defined with the store, which recomputes it in verify


def _process_start(pid: int) -> str | None:
  """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
  try:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _builder_record() -> dict[str, Any]:
  pid = os.getpid()
  return {"host": socket.gethostname(), "pid": pid, "process_start": _process_start(pid),
          "started": time.time()}


def _build_is_running(record: dict[str, Any]) -> bool:
  """Whether the process that wrote `record` (on this host) still runs."""
  pid = int(record.get("pid", -1))
  if pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # someone else's process: alive
  start = record.get("process_start")
  return start is None or _process_start(pid) in (None, start)


def remove_stale_builds(parent: Path, now: float | None = None) -> list[Path]:
  """Removes `.NAME.building-*` folders under `parent` whose build is gone; returns them.

  Gone: the recorded process (on this host) no longer runs, or the folder is older than
  STALE_BUILD_SECONDS. A folder without a record (a build from before records, or one just
  starting) is removed only once it is a few minutes old and the pid in its name is dead.
  """
  now = time.time() if now is None else now
  removed = []
  for folder in sorted(parent.glob(".*.building-*")):
    try:
      age = now - folder.stat().st_mtime
      record_path = folder / BUILDER_FILE
      if age > STALE_BUILD_SECONDS:
        stale = True
      elif record_path.is_file():
        record = json.loads(record_path.read_text())
        stale = record.get("host") == socket.gethostname() and not _build_is_running(record)
      else:
        pid = folder.name.rsplit(".building-", 1)[1].split("-")[0]
        stale = (age > _UNRECORDED_GRACE_SECONDS and pid.isdigit()
                 and not _build_is_running({"pid": int(pid)}))
    except (OSError, ValueError):
      continue  # vanished meanwhile, or a record being written: leave it
    if stale:
      logging.info("removing %s, left behind by an interrupted store build", folder)
      remove_tree(folder)
      removed.append(folder)
  return removed


def duplicate_with_lines(err: DuplicateRating,
                         sources: Sequence[tuple[Path, Callable[[], Iterable[dict]]]]
                         ) -> DataError:
  """`err` with the file and line of both ratings, found by reading the sources again.

  sources: (path, chunks) pairs, where chunks() yields the path's chunks with "line" numbers.
  """
  found: list[tuple[Path, int]] = []
  for path, chunks in sources:
    for chunk in chunks():
      hit = np.flatnonzero((np.asarray(chunk["user_id"]) == err.user)
                           & (np.asarray(chunk["item_id"]) == err.item))
      found += [(Path(path), int(chunk["line"][k])) for k in hit]
      if len(found) >= 2:
        break
    if len(found) >= 2:
      break
  if len(found) < 2:
    return err
  (first_path, first_line), (path, line) = found[:2]
  where = f"line {first_line}" if first_path == path else f"{first_path}:{first_line}"
  return DuplicateRating(path, err.user, err.item, line=line, first_at=where)


def _publish(tmp: Path, dest: Path, overwrite: bool) -> None:
  """The one step that makes the store visible: a rename (old store moved aside first)."""
  if dest.exists():
    if not overwrite:
      raise DataError(dest, "output already exists (pass overwrite=True to replace it)")
    trash = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(dest, trash)
    os.rename(tmp, dest)
    remove_tree(trash)
  else:
    os.rename(tmp, dest)
