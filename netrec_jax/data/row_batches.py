"""Whole rating rows (all of a user's or an item's training ratings): matrices and batches.

Row models (the autoencoders) train on whole rows; rows differ in length by orders of
magnitude on long-tailed data, so batches are bounded by padded cells as well as by rows,
and widths and row counts are rounded to powers of two so only a few shapes compile. The
top-N models (EASE, neighbours, Mult-VAE, implicit's ALS) read the binary users x items
matrix of the training rows (`interaction_matrix`), Mult-VAE in dense row batches.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from netrec_jax.data.store import RatingStore


def interaction_matrix(store: RatingStore, rows: np.ndarray, min_stars: float = 0.0
                       ) -> sp.csr_matrix:
  """users x items float32 CSR, 1 where a rating of `rows` has stars >= min_stars."""
  rows = np.asarray(rows)
  if min_stars > 0:
    rows = rows[store.stars(rows) >= min_stars]
  x = sp.csr_matrix((np.ones(len(rows), np.float32),
                     (np.take(store.user, rows), np.take(store.item, rows))),
                    shape=(store.n_users, store.n_items))
  x.sum_duplicates()
  x.data[:] = 1.0
  return x


def dense_rows(matrix: sp.csr_matrix, users: np.ndarray, size: int) -> dict[str, np.ndarray]:
  """The dense batch of `users`' rows of matrix, padded to `size` rows of weight 0."""
  rows = np.zeros((size, matrix.shape[1]), np.float32)
  rows[:len(users)] = matrix[users].toarray()
  weight = np.zeros(size, np.float32)
  weight[:len(users)] = 1.0
  return {"rows": rows, "weight": weight}


def bucket_width(length: int, smallest: int = 8) -> int:
  """Row widths rounded up to a power of two: a handful of compiled shapes, not one per batch."""
  return max(smallest, 1 << max(0, int(length) - 1).bit_length())


@dataclasses.dataclass(frozen=True)
class RowBatching:
  """How rows are grouped: at most `rows` per batch and at most `entries` padded cells.

  A batch of padded-sparse rows costs rows x width x hidden floats in the encoder's gather and
  the decoder's (and as much again in their gradients), with the width set by the longest row.
  On Netflix-like data one popular movie has 100k+ ratings, so a fixed row count would blow up
  memory; the cell budget shrinks such batches instead. Row counts and widths are padded to
  powers of two (rows also to a multiple of the data devices): few shapes, few compiles.
  """

  rows: int  # a multiple of `multiple`
  entries: int
  multiple: int = 1

  def padded_rows(self, n: int) -> int:
    size = max(self.multiple, 1 << max(0, n - 1).bit_length())
    return min(-(-size // self.multiple) * self.multiple, self.rows)

  def pad(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    pad = self.padded_rows(batch["index"].shape[0]) - batch["index"].shape[0]
    width = bucket_width(batch["index"].shape[1])
    return {k: np.pad(v, ((0, pad), (0, width - v.shape[1]))) for k, v in batch.items()}

  def spans(self, lengths: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive [lo, hi) batches over rows of these lengths, in the given order."""
    out, lo, longest = [], 0, 0
    for k, length in enumerate(np.asarray(lengths).tolist()):
      grown = max(longest, length)
      if k > lo and (k - lo + 1 > self.rows or
                     self.padded_rows(k - lo + 1) * bucket_width(grown) > self.entries):
        out.append((lo, k))
        lo, grown = k, length
      longest = grown
    if lo < len(lengths):
      out.append((lo, len(lengths)))
    return out


def epoch_batches(entities: np.ndarray, lengths: np.ndarray, batching: RowBatching,
                  rng: np.random.Generator, window_batches: int = 32) -> list[np.ndarray]:
  """One epoch's batches: shuffled, then sorted by row length within windows of batches.

  Rows are padded to the longest row of their batch; with long-tailed activity a random batch
  pads every row to the one popular item's length. Sorting within windows of `window_batches`
  batches keeps similar lengths together (far less padding) while the batch order stays random.
  entities must be sorted (lengths are looked up by searchsorted).
  """
  order = entities[rng.permutation(len(entities))]
  window = batching.rows * window_batches
  for lo in range(0, len(order), window):
    chunk = order[lo:lo + window]
    order[lo:lo + window] = chunk[np.argsort(lengths[np.searchsorted(entities, chunk)],
                                             kind="stable")]
  spans = batching.spans(lengths[np.searchsorted(entities, order)])
  batches = [order[lo:hi] for lo, hi in spans]
  return [batches[k] for k in rng.permutation(len(batches))]


# ------------------------------------------------------------- whole users, flat (SVD++)
@dataclasses.dataclass(frozen=True)
class UserCSR:
  """A split's training ratings by user: user u's items and stars are [indptr[u], indptr[u+1])."""

  indptr: np.ndarray  # [n_users + 1] int64
  items: np.ndarray  # [n_ratings] int32
  stars: np.ndarray  # [n_ratings] float32

  @property
  def n_users(self) -> int:
    return len(self.indptr) - 1

  def lengths(self, users: np.ndarray | None = None) -> np.ndarray:
    if users is None:
      return np.diff(self.indptr)
    users = np.asarray(users, np.int64)
    return self.indptr[users + 1] - self.indptr[users]


def user_csr(store, rows: np.ndarray) -> UserCSR:
  """UserCSR of store `rows` (ascending, as Split.rows gives them: the store groups rows by
  user, so they are already in user order and no sort is needed). 8 bytes per rating."""
  rows = np.asarray(rows, np.int64)
  users = np.take(store.user, rows)
  if len(users) > 1 and np.any(users[1:] < users[:-1]):
    raise ValueError("user_csr needs rows in user order (ascending store rows)")
  indptr = np.zeros(store.n_users + 1, np.int64)
  np.cumsum(np.bincount(users, minlength=store.n_users), out=indptr[1:])
  return UserCSR(indptr, np.take(store.item, rows).astype(np.int32), store.stars(rows))


def user_spans(lengths: np.ndarray, max_ratings: int, max_users: int) -> list[tuple[int, int]]:
  """Consecutive [lo, hi) groups of users, in the given order, each of at most max_ratings
  ratings and max_users users (a user longer than max_ratings alone in its group)."""
  ends = np.concatenate(([0], np.cumsum(np.asarray(lengths, np.int64))))
  out, lo, n = [], 0, len(lengths)
  while lo < n:
    hi = int(np.searchsorted(ends, ends[lo] + max_ratings, side="right")) - 1
    hi = min(max(hi, lo + 1), lo + max_users, n)
    out.append((lo, hi))
    lo = hi
  return out


def flat_user_batch(csr: UserCSR, users: np.ndarray, n_ratings: int, n_slots: int,
                    columns: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
  """Every training rating of `users`, flat and padded: item, rating, weight (0 = padding),
  segment (the user's slot) [n_ratings]; user [n_slots] (padding slots: user 0, no ratings).

  columns: more per-rating arrays aligned with csr.items (timeSVD++'s days), gathered and
  padded (with 0) the same way, under their own names.
  """
  users = np.asarray(users, np.int64)
  lengths = csr.lengths(users)
  total = int(lengths.sum())
  if total > n_ratings or len(users) > n_slots:
    raise ValueError(f"{len(users)} users with {total} ratings do not fit a batch of "
                     f"{n_slots} users and {n_ratings} ratings")
  segment = np.repeat(np.arange(len(users), dtype=np.int32), lengths)
  starts = np.repeat(csr.indptr[users] - (np.cumsum(lengths) - lengths), lengths)
  source = starts + np.arange(total)
  pad = n_ratings - total
  slot_users = np.zeros(n_slots, np.int32)
  slot_users[:len(users)] = users
  return {"item": np.pad(csr.items[source], (0, pad)),
          "rating": np.pad(csr.stars[source], (0, pad)),
          "weight": np.pad(np.ones(total, np.float32), (0, pad)),
          "segment": np.pad(segment, (0, pad)),
          "user": slot_users,
          **{name: np.pad(column[source], (0, pad)) for name, column in (columns or {}).items()}}
