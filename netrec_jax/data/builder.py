"""Builds a rating store from a stream of rating chunks, in bounded memory, atomically.

Sources (netflix.py, movielens.py, synthetic.py, parquet) parse their files into chunks of
(original user id, original item id, scaled rating, date) and hand them to a StoreBuilder.
The builder spills chunks to disk, then orders them with counting sorts into memmapped
columns, so memory stays O(chunk + users + items) even at 100M+ ratings:

  1. spill    chunks appended to raw files; ids and counts accumulated per user and item
  2. filter   users with < min_user_ratings, then items with < min_item_ratings, dropped;
              survivors re-indexed densely in order of original id
  3. scatter  rows placed at user_offsets[u] + rank (a counting sort by user)
  4. order    each block of whole users sorted by (date, item); duplicate pairs rejected
  5. csc      item_offsets and the item-grouped permutation, again by counting sort
  6. finish   features, Parquet tables, fingerprint, meta.json, then one rename

Everything is written into a temporary sibling folder; the final rename is the only step that
makes a store visible, so an interrupted build never leaves a store that opens.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from absl import logging

from netrec_jax.data import features
from netrec_jax.data.errors import DataError
from netrec_jax.data.store import (NO_DATE, SCHEMA_VERSION, RatingStore, days_to_iso,
                                   remove_tree, write_meta)

BLOCK_ROWS = 1 << 22  # 4M rows: 16 MB per int32 column, the unit of every pass
_DENSE_LOOKUP_MAX_ID = 1 << 26  # ids below this map through a table instead of searchsorted
_DENSE_COUNT_MAX_ID = 1 << 24  # ids below this are counted with bincount (<= 128 MB)


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

  def report(self) -> dict[str, Any]:
    return {"count": self.count, "by_reason": dict(self.by_reason), "examples": self.examples}


class _IdCounter:
  """Distinct original ids and their counts, merged as chunks arrive.

  Small non-negative ids (all real datasets) are counted with bincount into a dense array,
  O(n) per chunk; other ids fall back to sorting (np.unique) and merging.
  """

  def __init__(self):
    self._dense = np.zeros(0, np.int64)
    self._parts: list[tuple[np.ndarray, np.ndarray]] = []
    self._pending = 0

  def add(self, ids: np.ndarray) -> None:
    lo, hi = ids.min(), ids.max()
    if not self._parts and lo >= 0 and hi < _DENSE_COUNT_MAX_ID:
      counts = np.bincount(ids)
      if len(counts) > len(self._dense):
        counts[:len(self._dense)] += self._dense
        self._dense = counts
      else:
        self._dense[:len(counts)] += counts
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
      inside = (ids >= 0) & (ids < len(self._table))
      out = np.full(len(ids), -1, np.int32)
      out[inside] = self._table[ids[inside]]
      return out
    if len(self.sorted_ids) == 0:
      return np.full(len(ids), -1, np.int32)
    pos = np.minimum(np.searchsorted(self.sorted_ids, ids), len(self.sorted_ids) - 1)
    return np.where(self.sorted_ids[pos] == ids, pos, -1).astype(np.int32)


def _ranks_within_groups(sorted_keys: np.ndarray) -> np.ndarray:
  """0, 1, 2... within each run of equal values of an already sorted array."""
  n = len(sorted_keys)
  if n == 0:
    return np.zeros(0, np.int64)
  starts = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
  run_lengths = np.diff(np.append(starts, n))
  return np.arange(n, dtype=np.int64) - np.repeat(starts, run_lengths)


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


def counting_sort_positions(keys: np.ndarray, cursor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Stable destination of each row when rows are grouped by `keys`; advances `cursor`.

  Returns (order, positions): row order[k] goes to positions[k]. `cursor[g]` holds the next
  free slot of group g (int64, so offsets past 2^31 are safe).
  """
  order = stable_argsort(keys, len(cursor))
  sorted_keys = keys[order]
  positions = cursor[sorted_keys] + _ranks_within_groups(sorted_keys)
  cursor += np.bincount(sorted_keys, minlength=len(cursor))
  return order, positions


def _order_within_users(u_local: np.ndarray, date: np.ndarray, item: np.ndarray,
                        rating: np.ndarray, n_items: int) -> tuple[np.ndarray, ...]:
  """Rows sorted by (user, date, item), returned as (date, item, rating) in that order.

  When the key fits, rating rides along in the low bits of one int64 key and a plain sort
  (no argsort, no gathers) does the work; otherwise a lexsort.
  """
  d_lo = int(date.min())
  n_dates = int(date.max()) - d_lo + 1
  n_users = int(u_local.max()) + 1
  r_lo = int(rating.min())
  n_ratings = int(rating.max()) - r_lo + 1
  if n_users * n_dates * n_items * n_ratings < (1 << 62):
    key = u_local.astype(np.int64) * n_dates + (date.astype(np.int64) - d_lo)
    key = (key * n_items + item) * n_ratings + (rating.astype(np.int64) - r_lo)
    key.sort()
    r = (key % n_ratings + r_lo).astype(np.int32)
    key //= n_ratings
    i = (key % n_items).astype(np.int32)
    key //= n_items
    d = (key % n_dates + d_lo).astype(np.int32)
    return d, i, r
  order = np.lexsort((item, date, u_local))
  return date[order], item[order], rating[order]


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
    self.sources: list[dict[str, Any]] = []
    self._item_info: pa.Table | None = None
    self._user_info: pa.Table | None = None
    self._users = _IdCounter()
    self._items = _IdCounter()
    self._n_rows = 0
    if self.dest.exists() and not overwrite:
      raise DataError(self.dest, "output already exists (pass overwrite=True / --overwrite "
                      "to replace it)")
    self.tmp = self.dest.parent / f".{self.dest.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    self._spill = {}
    try:
      self.dest.parent.mkdir(parents=True, exist_ok=True)
      self.tmp.mkdir()
      for k in ("u", "i", "r", "d"):
        self._spill[k] = open(self.tmp / f"spill_{k}.bin", "wb")
    except OSError as e:
      for f in self._spill.values():
        f.close()
      remove_tree(self.tmp)
      raise DataError(self.dest.parent, f"cannot write the output folder ({e.strerror or e})") from None
    self._closed = False

  def __enter__(self) -> "StoreBuilder":
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is not None:
      self.abort()

  def abort(self) -> None:
    """Removes the half-built temporary folder; the destination is untouched."""
    if not self._closed:
      for f in self._spill.values():
        f.close()
      self._closed = True
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
    """Appends a chunk: original ids (int64), ratings already scaled (int32), dates in days."""
    n = len(user_ids)
    if not (len(item_ids) == len(ratings) == n and (dates is None or len(dates) == n)):
      raise ValueError("chunk columns differ in length")
    if n == 0:
      return
    user_ids = np.ascontiguousarray(user_ids, np.int64)
    item_ids = np.ascontiguousarray(item_ids, np.int64)
    ratings = np.ascontiguousarray(ratings, np.int32)
    dates = (np.full(n, NO_DATE, np.int32) if dates is None
             else np.ascontiguousarray(dates, np.int32))
    lo, hi = self.rating_range
    scaled_lo, scaled_hi = lo * self.rating_scale, hi * self.rating_scale
    if ratings.min() < scaled_lo or ratings.max() > scaled_hi:
      raise ValueError(f"chunk has ratings outside {self.rating_range}; sources must reject them")
    self._users.add(user_ids)
    self._items.add(item_ids)
    for key, arr in (("u", user_ids), ("i", item_ids), ("r", ratings), ("d", dates)):
      self._spill[key].write(arr.tobytes())
    self._n_rows += n

  def set_item_info(self, table: pa.Table) -> None:
    """Item metadata keyed by `original_id` (title, year, genres, ...)."""
    self._item_info = table

  def set_user_info(self, table: pa.Table) -> None:
    """User side information keyed by `original_id` (age, gender, occupation, ...)."""
    self._user_info = table

  # ----------------------------------------------------------------- build
  def _spilled(self) -> dict[str, np.ndarray]:
    n = self._n_rows
    return {
        "u": np.memmap(self.tmp / "spill_u.bin", np.int64, "r", shape=(n,)),
        "i": np.memmap(self.tmp / "spill_i.bin", np.int64, "r", shape=(n,)),
        "r": np.memmap(self.tmp / "spill_r.bin", np.int32, "r", shape=(n,)),
        "d": np.memmap(self.tmp / "spill_d.bin", np.int32, "r", shape=(n,)),
    }

  def _blocks(self, n: int):
    for lo in range(0, n, BLOCK_ROWS):
      yield slice(lo, min(lo + BLOCK_ROWS, n))

  def finish(self) -> RatingStore:
    """Orders, indexes and publishes the store; returns it opened."""
    try:
      return self._finish()
    except BaseException:
      self.abort()
      raise

  def _finish(self) -> RatingStore:
    started = time.time()
    for f in self._spill.values():
      f.close()
    self._closed = True
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
    spill = self._spilled()

    # ---- 2. filter: users, then items among the surviving users.
    user_ids, user_counts = self._users.result()
    kept_users = user_ids[user_counts >= self.min_user_ratings]
    item_ids, item_counts = self._items.result()
    user_map = _DenseMap(kept_users)
    if self.min_item_ratings > 0:
      item_counts = np.zeros(len(item_ids), np.int64)
      all_items = _DenseMap(item_ids)
      for sl in self._blocks(self._n_rows):
        keep = user_map(np.asarray(spill["u"][sl])) >= 0
        item_counts += np.bincount(all_items(np.asarray(spill["i"][sl]))[keep],
                                   minlength=len(item_ids))
    item_map = _DenseMap(item_ids[item_counts >= max(1, self.min_item_ratings)])

    # Final counts; users or items left with no ratings are dropped and the maps rebuilt.
    n_per_user = np.zeros(len(user_map), np.int64)
    n_per_item = np.zeros(len(item_map), np.int64)
    for sl in self._blocks(self._n_rows):
      u, i = user_map(np.asarray(spill["u"][sl])), item_map(np.asarray(spill["i"][sl]))
      keep = (u >= 0) & (i >= 0)
      n_per_user += np.bincount(u[keep], minlength=len(user_map))
      n_per_item += np.bincount(i[keep], minlength=len(item_map))
    if (n_per_user == 0).any():
      user_map = _DenseMap(user_map.sorted_ids[n_per_user > 0])
      n_per_user = n_per_user[n_per_user > 0]
    if (n_per_item == 0).any():
      item_map = _DenseMap(item_map.sorted_ids[n_per_item > 0])
      n_per_item = n_per_item[n_per_item > 0]
    n_users, n_items, n = len(user_map), len(item_map), int(n_per_user.sum())
    if n == 0:
      raise DataError(where, f"no ratings left after filtering (min_user_ratings="
                      f"{self.min_user_ratings}, min_item_ratings={self.min_item_ratings})")
    if max(n_users, n_items) >= np.iinfo(np.int32).max:
      raise DataError(where, "more than 2^31 users or items do not fit int32 indices")
    logging.info("store %s: %d ratings, %d users, %d items after filtering (%d read)",
                 self.name, n, n_users, n_items, self._n_rows)

    # ---- 3. scatter rows into user-major order (counting sort by user).
    user_offsets = np.zeros(n_users + 1, np.int64)
    np.cumsum(n_per_user, out=user_offsets[1:])
    cols = {name: np.lib.format.open_memmap(self.tmp / f"{name}.npy", "w+", np.int32, (n,))
            for name in ("user", "item", "rating", "date")}
    cursor = user_offsets[:-1].copy()
    for sl in self._blocks(self._n_rows):
      u, i = user_map(np.asarray(spill["u"][sl])), item_map(np.asarray(spill["i"][sl]))
      keep = (u >= 0) & (i >= 0)
      u, i = u[keep], i[keep]
      order, pos = counting_sort_positions(u, cursor)
      cols["user"][pos] = u[order]
      cols["item"][pos] = i[order]
      cols["rating"][pos] = np.asarray(spill["r"][sl])[keep][order]
      cols["date"][pos] = np.asarray(spill["d"][sl])[keep][order]
    del spill
    for key in ("u", "i", "r", "d"):
      os.remove(self.tmp / f"spill_{key}.bin")

    # ---- 4. within each user: order by (date, item); reject duplicate (user, item) pairs.
    for lo_user, hi_user in _user_blocks(user_offsets, BLOCK_ROWS):
      lo, hi = int(user_offsets[lo_user]), int(user_offsets[hi_user])
      u = np.asarray(cols["user"][lo:hi])
      i = np.asarray(cols["item"][lo:hi])
      d = np.asarray(cols["date"][lo:hi])
      pair = (u - lo_user).astype(np.int64) * n_items + i
      sorted_pairs = np.sort(pair)
      dup = np.flatnonzero(sorted_pairs[1:] == sorted_pairs[:-1])
      if len(dup):
        bad = sorted_pairs[dup[0]]
        raise DataError(where, "duplicate rating: user "
                        f"{user_map.sorted_ids[lo_user + bad // n_items]} rated item "
                        f"{item_map.sorted_ids[bad % n_items]} more than once")
      d, i, r = _order_within_users(u - lo_user, d, i, np.asarray(cols["rating"][lo:hi]), n_items)
      cols["item"][lo:hi] = i
      cols["date"][lo:hi] = d
      cols["rating"][lo:hi] = r

    # ---- 5. CSC: item offsets and the item-grouped row permutation.
    item_offsets = np.zeros(n_items + 1, np.int64)
    np.cumsum(n_per_item, out=item_offsets[1:])
    order_dtype = np.int32 if n < np.iinfo(np.int32).max else np.int64
    item_order = np.lib.format.open_memmap(self.tmp / "item_order.npy", "w+", order_dtype, (n,))
    cursor = item_offsets[:-1].copy()
    for sl in self._blocks(n):
      i = np.asarray(cols["item"][sl])
      order, pos = counting_sort_positions(i, cursor)
      item_order[pos] = (order + sl.start).astype(order_dtype)
    np.save(self.tmp / "user_offsets.npy", user_offsets)
    np.save(self.tmp / "item_offsets.npy", item_offsets)

    # ---- 6. features, tables, fingerprint, metadata, publish.
    date_lo, date_hi, observed_lo, observed_hi = None, None, None, None
    for sl in self._blocks(n):
      d = np.asarray(cols["date"][sl])
      d = d[d != NO_DATE]
      r = np.asarray(cols["rating"][sl])
      observed_lo = r.min() if observed_lo is None else min(observed_lo, r.min())
      observed_hi = r.max() if observed_hi is None else max(observed_hi, r.max())
      if len(d):
        date_lo = d.min() if date_lo is None else min(date_lo, d.min())
        date_hi = d.max() if date_hi is None else max(date_hi, d.max())
    for col in cols.values():
      col.flush()
    item_order.flush()

    user_counts, user_sums = features.count_and_sum(cols["user"], cols["rating"], n_users)
    item_counts, item_sums = features.count_and_sum(cols["item"], cols["rating"], n_items)
    global_mean = float(user_sums.sum() / n / self.rating_scale)
    _write_table(self.tmp / "users.parquet", user_map.sorted_ids,
                 features.activity_features(user_counts, user_sums, self.rating_scale, global_mean),
                 self._user_info)
    _write_table(self.tmp / "items.parquet", item_map.sorted_ids,
                 features.activity_features(item_counts, item_sums, self.rating_scale, global_mean),
                 self._item_info)
    del cols, item_order

    fingerprint = _fingerprint(self.tmp, user_map.sorted_ids, item_map.sorted_ids,
                               self.rating_scale)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "name": self.name,
        "n_ratings": n,
        "n_users": n_users,
        "n_items": n_items,
        "n_read": self._n_rows,
        "rating_scale": self.rating_scale,
        "rating_range": list(self.rating_range),
        "observed_rating_range": [observed_lo / self.rating_scale, observed_hi / self.rating_scale],
        "global_mean": global_mean,
        "has_dates": self.has_dates and date_lo is not None,
        "date_range": [days_to_iso(date_lo), days_to_iso(date_hi)] if date_lo is not None else None,
        "filters": {"min_user_ratings": self.min_user_ratings,
                    "min_item_ratings": self.min_item_ratings},
        "bad_lines": self.bad_lines.report(),
        "sources": self.sources,
        "build_params": self.build_params,
        "fingerprint": fingerprint,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(time.time() - started, 2),
    }
    write_meta(self.tmp, meta)
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


def _fingerprint(folder: Path, user_ids: np.ndarray, item_ids: np.ndarray, scale: int) -> str:
  """blake2b over the rating columns and both id maps: equal data <=> equal fingerprint."""
  h = hashlib.blake2b(digest_size=16)
  h.update(json.dumps({"schema": SCHEMA_VERSION, "scale": scale}).encode())
  h.update(user_ids.astype("<i8").tobytes())
  h.update(item_ids.astype("<i8").tobytes())
  for name in ("user", "item", "rating", "date"):
    col = np.load(folder / f"{name}.npy", mmap_mode="r")
    for lo in range(0, len(col), BLOCK_ROWS * 4):
      h.update(np.ascontiguousarray(col[lo:lo + BLOCK_ROWS * 4]).tobytes())
  return h.hexdigest()


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
