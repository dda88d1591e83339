"""The rating store: a folder of memory-mapped int32 columns, CSR by user and CSC by item.

Layout of a store folder (schema version 1)::

  meta.json            counts, rating scale and range, date range, sources, fingerprint
  user.npy item.npy    int32 dense indices, one entry per rating
  rating.npy           int32 stars * rating_scale (half stars stay exact with scale 2)
  date.npy             int32 days since 1970-01-01 (NO_DATE where the source has none)
  user_offsets.npy     int64 [n_users + 1]: user u's ratings are rows
                       user_offsets[u]:user_offsets[u+1]
  item_order.npy       int32/int64 permutation of rows, grouped by item (CSC)
  item_offsets.npy     int64 [n_items + 1] into item_order
  users.parquet        index, original_id, n_ratings, mean_rating, log_n_ratings (+ side features)
  items.parquet        index, original_id, title, year, genres, n_ratings, mean_rating,
                       log_n_ratings
  splits/NAME.npy      int8 per rating: 0 train, 1 validation, 2 test, -1 unused (see splits.py)
  splits/NAME.json     protocol name, parameters, sizes, cold-start share

Within a user, rows are ordered by (date, item), so "the last rating" is the last row.
Dense indices follow the sorted original ids, so mapping ids back and forth is a searchsorted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from netrec_jax.data.errors import DataError

SCHEMA_VERSION = 1
NO_DATE = np.iinfo(np.int32).min
COLUMNS = ("user", "item", "rating", "date")
INDEX_ARRAYS = ("user_offsets", "item_order", "item_offsets")
META_FILE = "meta.json"
TABLES = ("users.parquet", "items.parquet")
# Cheap content check on open: files up to this size are hashed whole, larger ones in
# SAMPLE_BLOCKS evenly spaced blocks (first and last included).
SAMPLE_WHOLE_BYTES = 1 << 20
SAMPLE_BLOCKS, SAMPLE_BLOCK_BYTES = 16, 4096
_HASH_ROWS = 1 << 22


def days_to_iso(days: int) -> str | None:
  """Days since the epoch as YYYY-MM-DD (None for NO_DATE)."""
  if days == NO_DATE:
    return None
  return str(np.datetime64(int(days), "D"))


def iso_to_days(text: str) -> int:
  return int(np.datetime64(text, "D").astype(np.int64))


def atomic_write_text(path: Path, text: str) -> None:
  """Write-then-rename, with a temp name of our own so concurrent writers never collide."""
  tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


@dataclasses.dataclass
class RatingStore:
  """An opened store. Columns are read-only memmaps; nothing is loaded eagerly."""

  path: Path
  meta: dict[str, Any]
  user: np.ndarray
  item: np.ndarray
  rating: np.ndarray
  date: np.ndarray
  user_offsets: np.ndarray
  item_order: np.ndarray
  item_offsets: np.ndarray

  # ------------------------------------------------------------------ open
  @classmethod
  def open(cls, path: str | os.PathLike, check: bool = True) -> "RatingStore":
    """Opens a store folder, checking that every file is there, lengths agree and (check)
    sampled content is what the builder wrote (see verify)."""
    path = Path(path)
    if not path.is_dir():
      raise DataError(path, "no rating store here (folder does not exist)")
    meta_path = path / META_FILE
    if not meta_path.is_file():
      raise DataError(path, f"not a complete rating store: {META_FILE} is missing "
                      "(an interrupted build never leaves one behind; rebuild the store)")
    try:
      meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
      raise DataError(meta_path, f"corrupt metadata: {e}") from None
    if meta.get("schema_version") != SCHEMA_VERSION:
      raise DataError(meta_path, f"schema version {meta.get('schema_version')!r} is not "
                      f"{SCHEMA_VERSION}; rebuild the store with this version of netrec_jax")
    arrays = {}
    for name in COLUMNS + INDEX_ARRAYS:
      file = path / f"{name}.npy"
      if not file.is_file():
        raise DataError(file, "missing file in the rating store")
      try:
        arrays[name] = np.load(file, mmap_mode="r")
      except (ValueError, OSError) as e:
        raise DataError(file, f"unreadable column ({e})") from None
    for name in TABLES:
      if not (path / name).is_file():
        raise DataError(path / name, "missing file in the rating store")
    n_ratings, n_users, n_items = meta["n_ratings"], meta["n_users"], meta["n_items"]
    expected = {name: n_ratings for name in COLUMNS + ("item_order",)}
    expected["user_offsets"] = n_users + 1
    expected["item_offsets"] = n_items + 1
    for name, length in expected.items():
      if arrays[name].shape != (length,):
        raise DataError(path / f"{name}.npy", f"has shape {arrays[name].shape}, but "
                        f"{META_FILE} says {length} entries: the store is inconsistent")
    for name in COLUMNS:
      if arrays[name].dtype != np.int32:
        raise DataError(path / f"{name}.npy", f"dtype {arrays[name].dtype}, expected int32")
    if arrays["user_offsets"][-1] != n_ratings or arrays["item_offsets"][-1] != n_ratings:
      raise DataError(path, "offsets do not end at n_ratings: the store is inconsistent")
    store = cls(path=path, meta=meta, **arrays)
    if check:
      store.verify(full=False)
    return store

  # ----------------------------------------------------------------- verify
  def verify(self, full: bool = False) -> dict[str, Any]:
    """Checks the files against what the builder recorded; DataError naming the file if not.

    Cheap (full=False, done on every open): sampled sha256 of every file (whole files up to
    1 MiB) and monotone offsets. Full: every column's sha256 and the fingerprint recomputed
    as the builder defines it, the user column and the item index (CSC) rebuilt and compared.
    Stores built before these records existed get only the checks their meta allows.
    Returns what was checked and how long it took.
    """
    started = time.time()
    content = self.meta.get("content", {})
    samples = content.get("samples", {})
    for name, expected in sorted(samples.items()):
      if sample_digest(self.path / name) != expected:
        raise DataError(self.path / name, "content differs from when the store was built "
                        "(sampled sha256): the store is damaged; rebuild it (--rebuild)")
    for name in ("user_offsets", "item_offsets"):
      offsets = getattr(self, name)
      if offsets[0] != 0 or (len(offsets) > 1 and (np.diff(offsets) < 0).any()):
        raise DataError(self.path / f"{name}.npy", "offsets are not a non-decreasing run from 0:"
                        " the store is damaged; rebuild it (--rebuild)")
    checked = ["samples" if samples else "structure"]
    if full:
      self._verify_full(content.get("sha256", {}))
      checked.append("fingerprint")
    return {"path": str(self.path), "checked": checked, "fingerprint": self.fingerprint,
            "n_ratings": self.n_ratings, "seconds": round(time.time() - started, 3)}

  def _verify_full(self, column_sha256: dict[str, str]) -> None:
    digests = {name: column_digest(getattr(self, name)) for name in ("item", "rating", "date")}
    for name, digest in digests.items():
      if name in column_sha256 and digest.hex() != column_sha256[name]:
        raise DataError(self.path / f"{name}.npy", "content differs from when the store was "
                        "built (sha256 of the column): the store is damaged; rebuild it "
                        "(--rebuild)")
    damaged = lambda name, what: DataError(self.path / name, f"{what}: the store is damaged; "
                                           "rebuild it (--rebuild)")
    n = self.n_ratings
    per_item = np.zeros(self.n_items, np.int64)
    for block in self.iter_row_blocks(_HASH_ROWS):
      rows = np.arange(block.start, block.stop)
      users = np.searchsorted(self.user_offsets, rows, side="right") - 1
      if not np.array_equal(np.asarray(self.user[block]), users):
        raise damaged("user.npy", "the user column does not follow user_offsets")
      items = np.asarray(self.item[block])
      if len(items) and (items.min() < 0 or items.max() >= self.n_items):
        raise damaged("item.npy", "item indices outside 0..n_items-1")
      per_item += np.bincount(items, minlength=self.n_items)
    if not np.array_equal(np.diff(self.item_offsets), per_item):
      raise damaged("item_offsets.npy", "item offsets do not match the item column")
    seen = np.zeros(n, bool)
    for block in self.iter_row_blocks(_HASH_ROWS):
      order = np.asarray(self.item_order[block]).astype(np.int64)
      if len(order) and (order.min() < 0 or order.max() >= n):
        raise damaged("item_order.npy", "row numbers outside the store")
      seen[order] = True
      expected = np.searchsorted(self.item_offsets, np.arange(block.start, block.stop),
                                 side="right") - 1
      if not np.array_equal(np.take(self.item, order), expected):
        raise damaged("item_order.npy", "the item index does not group rows by item")
    if not seen.all():
      raise damaged("item_order.npy", "the item index is not a permutation of the rows")
    recomputed = content_fingerprint(digests, np.asarray(self.user_offsets),
                                     self.user_original_ids(), self.item_original_ids(),
                                     self.rating_scale)
    if recomputed != self.fingerprint:
      raise DataError(self.path, f"recomputed fingerprint {recomputed} differs from "
                      f"{META_FILE}'s {self.fingerprint} (id tables or offsets changed): the "
                      "store is damaged; rebuild it (--rebuild)")

  # ------------------------------------------------------------- properties
  @property
  def n_ratings(self) -> int:
    return int(self.meta["n_ratings"])

  @property
  def n_users(self) -> int:
    return int(self.meta["n_users"])

  @property
  def n_items(self) -> int:
    return int(self.meta["n_items"])

  @property
  def rating_scale(self) -> int:
    """Stored ratings are stars * rating_scale."""
    return int(self.meta["rating_scale"])

  @property
  def rating_range(self) -> tuple[float, float]:
    lo, hi = self.meta["rating_range"]
    return float(lo), float(hi)

  @property
  def fingerprint(self) -> str:
    return self.meta["fingerprint"]

  @property
  def has_dates(self) -> bool:
    return bool(self.meta.get("has_dates", True))

  @property
  def name(self) -> str:
    return self.meta.get("name", self.path.name)

  # ----------------------------------------------------------------- access
  def stars(self, rows: np.ndarray | slice | None = None) -> np.ndarray:
    """Ratings in stars as float32 (for rows, or all)."""
    raw = self.rating if rows is None else (self.rating[rows] if isinstance(rows, slice)
                                           else np.take(self.rating, rows))
    return raw.astype(np.float32) / np.float32(self.rating_scale)

  def user_rows(self, user: int) -> slice:
    """Rows of one user's ratings: O(1), ordered by date."""
    return slice(int(self.user_offsets[user]), int(self.user_offsets[user + 1]))

  def item_rows(self, item: int) -> np.ndarray:
    """Rows of one item's ratings (positions into the columns), ordered by user."""
    lo, hi = int(self.item_offsets[item]), int(self.item_offsets[item + 1])
    return np.asarray(self.item_order[lo:hi])

  def ratings_per_user(self) -> np.ndarray:
    return np.diff(self.user_offsets)

  def ratings_per_item(self) -> np.ndarray:
    return np.diff(self.item_offsets)

  def iter_row_blocks(self, block_rows: int = 1 << 22) -> Iterator[slice]:
    """Row slices of bounded size, for chunked passes over 100M-row columns."""
    for lo in range(0, self.n_ratings, block_rows):
      yield slice(lo, min(lo + block_rows, self.n_ratings))

  def users_table(self, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(self.path / "users.parquet", columns=columns)

  def items_table(self, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(self.path / "items.parquet", columns=columns)

  def user_original_ids(self) -> np.ndarray:
    return self.users_table(["original_id"]).column(0).to_numpy()

  def item_original_ids(self) -> np.ndarray:
    return self.items_table(["original_id"]).column(0).to_numpy()

  def user_index(self, original_ids: Any) -> np.ndarray:
    """Dense indices for original user ids; -1 where the id is not in the store."""
    return _lookup(self.user_original_ids(), original_ids)

  def item_index(self, original_ids: Any) -> np.ndarray:
    """Dense indices for original item ids; -1 where the id is not in the store."""
    return _lookup(self.item_original_ids(), original_ids)

  def summary(self) -> dict[str, Any]:
    """The facts a person wants first about a store."""
    meta = self.meta
    return {
        "name": self.name,
        "path": str(self.path),
        "n_ratings": self.n_ratings,
        "n_users": self.n_users,
        "n_items": self.n_items,
        "density": self.n_ratings / max(1, self.n_users * self.n_items),
        "rating_range": list(self.rating_range),
        "rating_scale": self.rating_scale,
        "date_range": meta.get("date_range"),
        "fingerprint": self.fingerprint,
        "bad_lines": meta.get("bad_lines", {}).get("count", 0),
        # Lines kept although they look odd (e.g. dated before the movie's release), by reason.
        "odd_lines": dict(meta.get("odd_lines", {}).get("by_reason", {})),
        "filters": meta.get("filters"),
        "splits": self.list_splits(),
    }

  # ----------------------------------------------------------------- splits
  @property
  def splits_dir(self) -> Path:
    return self.path / "splits"

  def list_splits(self) -> list[str]:
    if not self.splits_dir.is_dir():
      return []
    return sorted(p.stem for p in self.splits_dir.glob("*.json"))


def _lookup(sorted_ids: np.ndarray, query: Any) -> np.ndarray:
  query = np.asarray(query, dtype=np.int64)
  pos = np.searchsorted(sorted_ids, query)
  pos_clipped = np.minimum(pos, len(sorted_ids) - 1)
  found = (len(sorted_ids) > 0) & (sorted_ids[pos_clipped] == query)
  return np.where(found, pos_clipped, -1).astype(np.int64)


def column_digest(column: np.ndarray) -> bytes:
  """sha256 of a column's values as little-endian int32, streamed in blocks."""
  h = hashlib.sha256()
  for lo in range(0, len(column), _HASH_ROWS):
    h.update(np.ascontiguousarray(column[lo:lo + _HASH_ROWS], "<i4"))
  return h.digest()


def content_fingerprint(column_digests: dict[str, bytes], user_offsets: np.ndarray,
                        user_ids: np.ndarray, item_ids: np.ndarray, scale: int) -> str:
  """sha256 (128 bits shown) over the id maps, the CSR offsets and the column digests.

  Equal data <=> equal fingerprint. The user column is a function of `user_offsets`, so that
  is hashed instead; the builder hashes the other columns bucket by bucket as it writes them.
  """
  h = hashlib.sha256()
  h.update(json.dumps({"schema": SCHEMA_VERSION, "scale": scale, "fingerprint": 2}).encode())
  for ids in (user_ids, item_ids, user_offsets):
    h.update(np.asarray(ids, "<i8").tobytes())
  for name in ("item", "rating", "date"):
    h.update(column_digests[name])
  return h.hexdigest()[:32]


def sample_digest(path: Path) -> str:
  """sha256 of a file's size and content (whole up to 1 MiB, else evenly spaced blocks)."""
  size = path.stat().st_size
  h = hashlib.sha256(str(size).encode())
  with open(path, "rb") as f:
    if size <= SAMPLE_WHOLE_BYTES:
      h.update(f.read())
    else:
      for k in range(SAMPLE_BLOCKS):
        f.seek((size - SAMPLE_BLOCK_BYTES) * k // (SAMPLE_BLOCKS - 1))
        h.update(f.read(SAMPLE_BLOCK_BYTES))
  return h.hexdigest()[:32]


def sample_digests(folder: Path) -> dict[str, str]:
  """sample_digest of every data file of a store folder (what RatingStore.open checks)."""
  names = [f"{n}.npy" for n in COLUMNS + INDEX_ARRAYS] + list(TABLES)
  return {name: sample_digest(folder / name) for name in names}


def remove_tree(path: Path) -> None:
  shutil.rmtree(path, ignore_errors=True)


def write_meta(path: Path, meta: dict[str, Any]) -> None:
  atomic_write_text(path / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
