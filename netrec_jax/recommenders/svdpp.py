"""A trained SVD++ (netrec_jax/models/svdpp.py) behind the evaluator's Recommender interface.

Each user's factor p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j is computed once, from the training
CSR by the model's own segment sums over flat whole-user batches, and cached; a prediction is
then mu + b_u + b_i + <factor_u, q_i>, and a user's full-catalog scores one matrix product.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import scipy.sparse as sp

from netrec_jax.data.row_batches import UserCSR, flat_user_batch, user_spans
from netrec_jax.eval import evaluator
from netrec_jax.models import svdpp

PREDICT_CHUNK = 1 << 20  # pairs per numpy chunk in predict (bounds the [chunk, d] gathers)


class SVDppRecommender:
  """SVD++ tables (host copies) with the training CSR that defines each user's N(u).

  A user or movie without a training rating has never been updated from its random start:
  its bias and factors (p_u, or q_i and y_i) are set to 0 here, so it gets the global mean
  plus the known side's bias.
  """

  rating_note = ""
  cold_rule = ("global mean + the known side's bias: a user or movie with no training rating "
               "has its bias and factors set to 0")

  def __init__(self, *, config, store, split, csr: UserCSR, tables: dict[str, np.ndarray],
               global_mean: float, l2: float, fold_in_lr: float, fold_in_steps: int,
               batch_ratings: int, batch_users: int, which: str, meta: dict[str, Any]):
    self.config, self.store, self.split, self.csr = config, store, split, csr
    self.which, self.meta = which, meta
    self.name = config.model.name
    self.global_mean, self.l2 = float(global_mean), float(l2)
    self.prediction_note = f"clipped to the rating range {list(store.rating_range)}"
    self.fold_in_steps, self.fold_in_lr = int(fold_in_steps), float(fold_in_lr)
    self.fold_in_method = (
        f"{self.fold_in_steps} whole-user SGD steps (lr {self.fold_in_lr:g}, the training's "
        "update: summed gradient of the training objective, each row's step scaled by "
        f"svdpp.step_factor, L2 {l2:g} per rating) on a new p_u and b_u from 0, item biases, "
        "q and y fixed; N(u) = the given movies (implicit term |N(u)|^-1/2 sum y_j over them). "
        "Steps, not the closed-form ridge: a trained user's rows take as many such steps, "
        "and the exact minimiser overfits a handful of ratings with d + 1 unknowns")
    trained_users = csr.lengths() > 0
    trained_items = np.bincount(csr.items, minlength=store.n_items) > 0
    host = {k: np.array(v, np.float32) for k, v in tables.items()}
    for name in svdpp.USER_TABLES:
      host[name][~trained_users] = 0.0
    for name in svdpp.ITEM_TABLES:
      host[name][~trained_items] = 0.0
    self.tables = host
    self._batch = (batch_ratings, batch_users)
    self._factors = None

  # ------------------------------------------------------------------------ user factors
  def user_vectors(self) -> np.ndarray:
    """[n_users, d] p_u + |N(u)|^-1/2 sum y_j over the user's training items (0: no ratings)."""
    if self._factors is None:
      self._factors = self._compute_user_factors()
    return self._factors

  def _compute_user_factors(self) -> np.ndarray:
    """One pass over the training CSR in the training batches' shape (one compiled shape)."""
    n_ratings, n_slots = self._batch
    implicit = jax.device_put(self.tables["implicit"])
    user_vec = jax.device_put(self.tables["user_vec"])

    @jax.jit
    def slot_factors(implicit, user_vec, batch):
      rows = {"implicit": implicit[batch["item"]], "user_vec": user_vec[batch["user"]]}
      return svdpp.user_factors(rows, batch)[0]

    users = np.flatnonzero(self.csr.lengths() > 0)
    out = np.zeros(self.tables["user_vec"].shape, np.float32)
    for lo, hi in user_spans(self.csr.lengths(users), n_ratings, n_slots):
      batch = flat_user_batch(self.csr, users[lo:hi], n_ratings, n_slots)
      out[users[lo:hi]] = np.asarray(slot_factors(implicit, user_vec, batch))[:hi - lo]
    return out

  # -------------------------------------------------------------------- the evaluator's API
  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    factors, t = self.user_vectors(), self.tables
    out = np.empty(len(users), np.float64)
    for lo in range(0, len(users), PREDICT_CHUNK):
      u, i = users[lo:lo + PREDICT_CHUNK], items[lo:lo + PREDICT_CHUNK]
      out[lo:lo + len(u)] = (self.global_mean + t["user_bias"][u, 0] + t["item_bias"][i, 0]
                             + np.einsum("nd,nd->n", factors[u], t["item_vec"][i]))
    return out

  def score_items(self, users: np.ndarray) -> np.ndarray:
    users = np.asarray(users, np.int64)
    t = self.tables
    return (self.user_vectors()[users] @ t["item_vec"].T + t["item_bias"][:, 0][None]
            + t["user_bias"][users] + self.global_mean)

  def item_vectors(self) -> np.ndarray:
    """[n_items, d] q_i, the item factors the user factor is matched against."""
    return self.tables["item_vec"]

  def biases(self) -> dict[str, np.ndarray]:
    return {"user": self.tables["user_bias"][:, 0], "item": self.tables["item_bias"][:, 0]}

  # ------------------------------------------------------------------------------ fold-in
  def fold_in_item_bias(self) -> np.ndarray:
    """[n_items] the item biases a new user is folded in and scored with (timeSVD++: now's)."""
    return self.tables["item_bias"][:, 0]

  def fold_in_factor(self, items: np.ndarray, stars: np.ndarray) -> tuple[np.ndarray, float]:
    """(factor p + |N|^-1/2 sum y_j, bias b) of a new user who rated `items` with `stars`.

    fold_in_steps steps of the training's whole-user update on (p, b) from 0, everything
    else fixed (the gradients of svdpp.batch_loss's terms of this user, by hand).
    """
    items, stars = evaluator.check_fold_in_input(items, stars, self.store.n_items)
    t = self.tables
    q = t["item_vec"][items].astype(np.float64)
    n = len(items)
    implicit = t["implicit"][items].astype(np.float64).sum(0) / np.sqrt(n)
    # What the user's rows do not change: stars minus everything but b + q . p.
    residual = stars - self.global_mean - self.fold_in_item_bias()[items] - q @ implicit
    lr, l2 = self.fold_in_lr, self.l2
    bias_factor = float(svdpp.step_factor(lr, n * (1.0 + l2)))
    vec_factor = float(svdpp.step_factor(lr, float(np.sum(q * q)) + n * l2))
    p, b = np.zeros(q.shape[1]), 0.0
    for _ in range(self.fold_in_steps):
      err = residual - b - q @ p
      grad_b, grad_p = -err.sum() + n * l2 * b, -(q.T @ err) + n * l2 * p
      b, p = b - lr * bias_factor * grad_b, p - lr * vec_factor * grad_p
    return (p + implicit).astype(np.float32), float(b)

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] predicted ratings for a new user who rated `items` (dense indices)."""
    factor, bias = self.fold_in_factor(items, stars)
    return (self.global_mean + bias + self.fold_in_item_bias()
            + self.tables["item_vec"] @ factor)

  def fold_in_batch(self, rows: sp.csr_matrix) -> np.ndarray:
    """[n, n_items] fold_in of each CSR row (its nonzero items, stars as values)."""
    rows = sp.csr_matrix(rows)
    out = np.empty(rows.shape, np.float32)
    for r in range(rows.shape[0]):
      lo, hi = rows.indptr[r], rows.indptr[r + 1]
      out[r] = self.fold_in(rows.indices[lo:hi], rows.data[lo:hi])
    return out
