"""Predictions or rankings made by another tool, scored by our evaluator into our tables.

A file, CSV with a header or Parquet, with columns `user` and `item` (the store's ORIGINAL
ids, as in the source data) and `rating` (predicted stars), `score` (a ranking score, higher
first) or both:
  rating   every test pair must have one, or the comparison stops and names a missing pair;
  score    a user's unlisted items rank below all of their listed ones (ties by item index),
           so a top-100 list per user scores exactly as the tool ranked it. Training items are
           excluded by the evaluator, as for every model.
Without `rating` the model ranks only; without `score`, rankings come from the ratings.
Entries: compare.external = "NAME=PATH;NAME2=PATH2" adds rows NAME, NAME2 to the comparison.

Nothing is dropped quietly: an id the store does not know, a value that is not a finite
number, or a (user, item) given twice stops with a one-line error naming the file and line
(CSV; the header is line 1) or row (Parquet). Strong generalization needs a model to fold in
held-out users from their inputs; a file cannot, so such a comparison refuses it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netrec_jax.data.store import RatingStore

COLUMNS = ("user", "item", "rating", "score")


class ExternalFileError(ValueError):
  """A predictions file that cannot be read as the module docstring says."""


def _read(path: Path) -> dict[str, np.ndarray]:
  import pyarrow as pa
  import pyarrow.csv as pcsv
  import pyarrow.parquet as pq
  try:
    if path.suffix.lower() == ".parquet":
      table = pq.read_table(path)
    else:
      table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
          column_types={"user": pa.int64(), "item": pa.int64(), "rating": pa.float64(),
                        "score": pa.float64()}))
  except (pa.ArrowInvalid, OSError) as e:
    raise ExternalFileError(f"{path}: {str(e).splitlines()[0]}") from None
  missing = [c for c in ("user", "item") if c not in table.column_names]
  if missing or not {"rating", "score"} & set(table.column_names):
    raise ExternalFileError(f"{path}: needs columns user, item and rating and/or score; has "
                            f"{', '.join(table.column_names)}")
  out = {}
  for column in COLUMNS:
    if column in table.column_names:
      values = table.column(column)
      if values.null_count:
        raise ExternalFileError(f"{path}: {_where(path, int(np.flatnonzero(_nulls(values))[0]))}"
                                f": {column} is missing (empty or NaN)")
      out[column] = values.to_numpy()
  return out


def _nulls(values) -> np.ndarray:
  return np.asarray(values.is_null().to_numpy(zero_copy_only=False), bool)


def _where(path: Path, index: int) -> str:
  return (f"row {index}" if path.suffix.lower() == ".parquet" else f"line {index + 2}")


class ExternalPredictions:
  """A predictions file behind the evaluator interface (see the module docstring)."""

  cold_rule = "as the tool that wrote the file decided"

  def __init__(self, path: str | Path, name: str):
    self.path, self.name = Path(path), name
    self.fold_in_method = "none: a file cannot fold in new users"

  def fit(self, store: RatingStore, train_rows: np.ndarray) -> "ExternalPredictions":
    """Reads and checks the file against the store (train_rows unused: nothing is fitted)."""
    del train_rows
    self.store = store
    columns = _read(self.path)
    users, items = store.user_index(columns["user"]), store.item_index(columns["item"])
    for dense, raw, what in ((users, columns["user"], "user"), (items, columns["item"], "item")):
      unknown = np.flatnonzero(dense < 0)
      if len(unknown):
        raise ExternalFileError(f"{self.path}: {_where(self.path, int(unknown[0]))}: {what} id "
                                f"{int(raw[unknown[0]])} is not in store {store.name} "
                                f"({len(unknown):,} rows with unknown {what}s)")
    for column in ("rating", "score"):
      if column in columns:
        bad = np.flatnonzero(~np.isfinite(columns[column]))
        if len(bad):
          raise ExternalFileError(f"{self.path}: {_where(self.path, int(bad[0]))}: {column} "
                                  f"{columns[column][bad[0]]} is not a finite number")
    keys = users * store.n_items + items
    order = np.argsort(keys, kind="stable")
    repeated = np.flatnonzero(np.diff(keys[order]) == 0)
    if len(repeated):
      second = int(order[repeated[0] + 1])
      raise ExternalFileError(f"{self.path}: {_where(self.path, second)}: user "
                              f"{int(columns['user'][second])} item "
                              f"{int(columns['item'][second])} is given twice")
    self._keys = keys[order]
    self._ratings = columns["rating"][order] if "rating" in columns else None
    self._scores = (columns["score"] if "score" in columns else columns["rating"])[order]
    self._users, self._items = users[order], items[order]
    self.rating_note = ("" if self._ratings is not None else
                        f"not applicable: {self.path.name} holds scores, not ratings")
    self.prediction_note = f"read from {self.path}"
    self.n_rows = len(keys)
    return self

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray | None:
    if self._ratings is None:
      return None
    keys = np.asarray(users, np.int64) * self.store.n_items + np.asarray(items, np.int64)
    pos = np.minimum(np.searchsorted(self._keys, keys), max(len(self._keys) - 1, 0))
    found = self._keys[pos] == keys
    if not found.all():
      k = int(np.flatnonzero(~found)[0])
      raise ExternalFileError(
          f"{self.path}: no rating for {int((~found).sum()):,} of the {len(keys):,} pairs "
          f"asked, e.g. user {int(self.store.user_original_ids()[users[k]])} item "
          f"{int(self.store.item_original_ids()[items[k]])}")
    return self._ratings[pos].astype(np.float64)

  def score_items(self, users: np.ndarray) -> np.ndarray:
    """[len(users), n_items]: the file's scores; unlisted items below the user's lowest."""
    users = np.asarray(users, np.int64)
    floor = (self._scores.min() - 1.0) if len(self._scores) else 0.0
    out = np.full((len(users), self.store.n_items), floor, np.float64)
    lo = np.searchsorted(self._keys, users * self.store.n_items)
    hi = np.searchsorted(self._keys, (users + 1) * self.store.n_items)
    for row, (a, b) in enumerate(zip(lo, hi)):
      out[row, self._items[a:b]] = self._scores[a:b]
    return out


def parse_entries(spec: str) -> list[tuple[str, str]]:
  """'lightfm=/p/a.parquet;recbole=/p/b.csv' -> [(name, path), ...]."""
  out = []
  for part in filter(None, (p.strip() for p in str(spec).split(";"))):
    name, eq, path = part.partition("=")
    if not eq or not name.strip() or not path.strip():
      raise ValueError(f"compare.external: {part!r} must look like NAME=PATH")
    out.append((name.strip(), path.strip()))
  return out
