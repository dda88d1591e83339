"""A trained Mult-VAE / Mult-DAE behind the evaluator interface: ranks, predicts no ratings."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import scipy.sparse as sp

from netrec_jax.data.row_batches import dense_rows
from netrec_jax.eval import evaluator
from netrec_jax.recommenders.trained import one_row


class MultVAERecommender:
  """A Mult-VAE / DAE behind the evaluator interface: ranks, predicts no ratings."""

  rating_note = "not applicable: a multinomial over the catalog ranks items, rates none"
  cold_rule = "a user with no training interaction gets the decoder's output for an empty row"
  prediction_note = "logits of the multinomial over the catalog (ranking only)"
  fold_in_method = "one encoder pass over the new user's binary row (the code's mean)"

  def __init__(self, setup: Any, params, which: str, meta: dict[str, Any]):
    self.setup, self.params, self.which, self.meta = setup, params, which, meta
    self.store, self.split, self.config = setup.store, setup.split, setup.config
    self.name = setup.config.model.name
    self.extra_ks = (100,)
    model = setup.model
    self._logits = jax.jit(lambda p, rows: model.apply(p, rows)[0])

  def predict(self, users: np.ndarray, items: np.ndarray) -> None:
    del users, items
    return None

  def _score(self, rows: sp.csr_matrix) -> np.ndarray:
    """[n, n_items] logits of CSR rows, a padded chunk at a time: one compiled shape per run."""
    chunk = max(1, self.setup.batch_rows)
    out = np.empty(rows.shape, np.float32)
    for lo in range(0, rows.shape[0], chunk):
      part = np.arange(lo, min(lo + chunk, rows.shape[0]))
      logits = self._logits(self.params, dense_rows(rows, part, chunk)["rows"])
      out[part] = np.asarray(jax.device_get(logits), np.float32)[:len(part)]
    return out

  def score_items(self, users: np.ndarray) -> np.ndarray:
    return self._score(self.setup.matrix[np.asarray(users, np.int64)])

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] logits for a new user who interacted with `items` (stars unused)."""
    items, _ = evaluator.check_fold_in_input(items, stars, self.store.n_items)
    row = one_row(items, np.ones(len(items), np.float32), self.store.n_items)
    return self.fold_in_batch(row)[0]

  def fold_in_batch(self, rows: sp.csr_matrix) -> np.ndarray:
    """[n, n_items] logits for n new users, each row's nonzero items their interactions."""
    binary = sp.csr_matrix(rows, dtype=np.float32, copy=True)
    binary.data[:] = 1.0
    return self._score(binary)

  def item_vectors(self) -> np.ndarray:
    """[n_items, d] rows of the decoder's output layer: an item's direction in the last layer."""
    return np.asarray(jax.device_get(self.params["params"]["out"]["kernel"])).T
