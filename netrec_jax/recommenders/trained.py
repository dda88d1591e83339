"""Which users and items a split trains, and the cold rule for those it does not."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from netrec_jax.data.store import RatingStore


@dataclasses.dataclass(frozen=True)
class Trained:
  """Boolean masks over dense ids: True where the training rows hold a rating."""

  user: np.ndarray
  item: np.ndarray

  @classmethod
  def from_rows(cls, store: RatingStore, rows: np.ndarray) -> "Trained":
    user = np.zeros(store.n_users, bool)
    user[np.take(store.user, rows)] = True
    item = np.zeros(store.n_items, bool)
    item[np.take(store.item, rows)] = True
    return cls(user, item)

  def fill_pairs(self, pred: np.ndarray, users: np.ndarray, items: np.ndarray,
                 value: float) -> np.ndarray:
    """pred with `value` wherever the user or the item has no training rating."""
    pred[~(self.user[users] & self.item[items])] = value
    return pred

  def fill_scores(self, scores: np.ndarray, users: np.ndarray, value: float) -> np.ndarray:
    """[len(users), n_items] scores with `value` in untrained items' columns and users' rows."""
    scores[:, ~self.item] = value
    scores[~self.user[users]] = value
    return scores


def one_row(items: np.ndarray, values: np.ndarray, n_items: int) -> sp.csr_matrix:
  """The 1 x n_items CSR of a new user's given `items` (dense ids) and their `values` (dtype
  kept)."""
  items = np.asarray(items, np.int64)
  return sp.csr_matrix((np.asarray(values), (np.zeros(len(items), np.int64), items)),
                       shape=(1, n_items))
