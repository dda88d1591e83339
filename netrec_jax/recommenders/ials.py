"""A fitted iALS model (netrec_jax/train/ials.py) behind the evaluator interface.

Scores are user factors . item factors; a new user's factors are one exact least-squares solve
against the fixed item factors (JaxIALS.fold_in_batch: the user half-sweep of the fit).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from netrec_jax.baselines.jax_als import JaxIALS
from netrec_jax.data.store import RatingStore
from netrec_jax.eval import evaluator
from netrec_jax.recommenders.trained import one_row


class IALSRecommender:
  """iALS factors behind the evaluator's interface (netrec_jax/eval/evaluator.py)."""

  rating_note = "not applicable: iALS scores are preferences, not ratings"
  cold_rule = ("a user or movie without training interactions has zero factors (its solve "
               "has no data): scores 0, ties by index")
  prediction_note = "none: a top-N model (ranking metrics only)"

  def __init__(self, store: RatingStore, split, config, model: JaxIALS):
    self.store, self.split, self.config, self.model = store, split, config, model
    self.name = config.model.name
    self.fold_in_method = model.fold_in_method

  def predict(self, users: np.ndarray, items: np.ndarray) -> None:
    del users, items
    return None

  def score_items(self, users: np.ndarray) -> np.ndarray:
    return self.model.score_items(np.asarray(users))

  def ranking_vectors(self) -> tuple[np.ndarray, np.ndarray, None]:
    return self.model.ranking_vectors()

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] scores for a new user who rated `items` (dense ids) `stars`."""
    items, stars = evaluator.check_fold_in_input(items, stars, self.store.n_items)
    return self.fold_in_batch(one_row(items, stars.astype(np.float32), self.store.n_items))[0]

  def fold_in_batch(self, rows: sp.csr_matrix) -> np.ndarray:
    """[n, n_items] scores for n new users (a CSR of their stars)."""
    return self.model.fold_in_batch(rows)

  def item_vectors(self) -> np.ndarray:
    """[n_items, factors] item factors, for similar movies (cosine)."""
    return self.model.item_factors
