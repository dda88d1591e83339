"""Per-user and per-movie activity features (count, mean, log count), computed in bounded memory.

The store keeps these over all its ratings (for EDA). Models must use `split_features`, which
counts training rows only: features computed over the whole store leak the test ratings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
  from netrec_jax.data.splits import Split
  from netrec_jax.data.store import RatingStore

BLOCK_ROWS = 1 << 22


def count_and_sum(index: np.ndarray, values: np.ndarray, n: int,
                  rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Counts and sums of `values` grouped by `index` (over `rows`, or all), block by block."""
  counts = np.zeros(n, np.int64)
  sums = np.zeros(n, np.float64)
  total = len(index) if rows is None else len(rows)
  for lo in range(0, total, BLOCK_ROWS):
    if rows is None:
      idx = np.asarray(index[lo:lo + BLOCK_ROWS])
      val = np.asarray(values[lo:lo + BLOCK_ROWS])
    else:
      block = rows[lo:lo + BLOCK_ROWS]
      idx, val = np.take(index, block), np.take(values, block)
    counts += np.bincount(idx, minlength=n)
    sums += np.bincount(idx, weights=val, minlength=n)
  return counts, sums


def activity_features(counts: np.ndarray, sums: np.ndarray, scale: float,
                      fallback_mean: float) -> dict[str, np.ndarray]:
  """n_ratings, mean_rating (stars; `fallback_mean` where there are none) and log1p(count)."""
  with np.errstate(invalid="ignore", divide="ignore"):
    mean = np.where(counts > 0, sums / np.maximum(counts, 1) / scale, fallback_mean)
  return {
      "n_ratings": counts.astype(np.int64),
      "mean_rating": mean.astype(np.float32),
      "log_n_ratings": np.log1p(counts).astype(np.float32),
  }


def split_features(store: "RatingStore", split: "Split") -> dict[str, dict[str, np.ndarray]]:
  """User and item features from the training rows of `split` only (no test leakage)."""
  train = split.rows("train")
  if len(train) == 0:
    raise ValueError(f"split {split.name!r} has no training rows")
  result = {}
  for name, column, n in (("user", store.user, store.n_users), ("item", store.item, store.n_items)):
    counts, sums = count_and_sum(column, store.rating, n, rows=train)
    global_mean = float(sums.sum() / counts.sum() / store.rating_scale)
    result[name] = activity_features(counts, sums, store.rating_scale, global_mean)
  return result
