"""A fitted item-item model (EASE, item-kNN, RP3beta) behind the evaluator interface.

A user's scores are their binary training row times the item-item matrix W; a new user's are
their given row times W. See netrec_jax/train/closed_form.py for the fit and item_vectors'
similarity.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from netrec_jax.data.store import RatingStore
from netrec_jax.eval import evaluator
from netrec_jax.models import ease as ease_lib
from netrec_jax.models import neighbors
from netrec_jax.recommenders.trained import one_row


class ClosedFormRecommender:
  """An item-item model behind the evaluator's interface (netrec_jax/eval/evaluator.py)."""

  rating_note = "top-N model: scores rank items and are not ratings"
  cold_rule = ("a user without training interactions scores 0 everywhere (ties by index); a "
               "movie without training interactions is never recommended (score 0)")

  def __init__(self, store: RatingStore, split, config, matrix, x: sp.csr_matrix,
               name: str, min_stars: float):
    self.store, self.split, self.config, self.name = store, split, config, name
    self.matrix, self.x, self.min_stars = matrix, x, float(min_stars)
    given = (f"movies rated >= {min_stars:g} stars" if min_stars > 0 else "every movie given")
    self.fold_in_method = (f"the new user's binary row ({given}) times "
                           f"{'B' if name == 'ease' else 'W'}: exact, as for training users")

  def predict(self, users: np.ndarray, items: np.ndarray) -> None:
    del users, items
    return None

  def _scores(self, rows: sp.spmatrix) -> np.ndarray:
    if sp.issparse(self.matrix):
      return neighbors.score(rows, self.matrix)
    return ease_lib.score(rows, self.matrix)

  def score_items(self, users: np.ndarray) -> np.ndarray:
    return self._scores(self.x[np.asarray(users)])

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] scores for a new user who rated `items` (dense ids) `stars`."""
    items, stars = evaluator.check_fold_in_input(items, stars, self.store.n_items)
    keep = stars >= self.min_stars if self.min_stars > 0 else np.ones(len(items), bool)
    # Filtered before the CSR sums a movie given twice: each given rating is judged alone.
    row = one_row(items[keep], np.asarray(stars[keep], np.float32), self.store.n_items)
    return self.fold_in_batch(row)[0]

  def fold_in_batch(self, rows: sp.csr_matrix) -> np.ndarray:
    """[n, n_items] scores for n new users (a CSR of their stars): their binary rows times W."""
    binary = sp.csr_matrix(rows, dtype=np.float32, copy=True)
    if self.min_stars > 0:
      binary.data[binary.data < self.min_stars] = 0.0
      binary.eliminate_zeros()
    binary.data[:] = 1.0
    return self._scores(binary)

  def item_vectors(self) -> np.ndarray:
    """[n_items, n_items] W_i + |W_i| e_i: rows whose cosine blends the second-order and the
    direct item-item similarity half and half (see the module docstring)."""
    m = self.matrix
    vectors = (m.toarray() if sp.issparse(m) else np.array(m)).astype(np.float32)
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    vectors[np.diag_indices(len(vectors))] += norms.astype(np.float32)
    return vectors

  def similar_items(self, item: int) -> np.ndarray:
    """[n_items] direct item-item weights of `item` (W[item], the self weight 0)."""
    m = self.matrix
    return (m[int(item)].toarray()[0] if sp.issparse(m) else np.asarray(m[int(item)])).copy()
