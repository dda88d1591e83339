"""implicit's ALS and BPR behind the evaluator: ranking models, not rating predictors.

implicit 0.7 expects a users x items CSR in fit() and silently accepts the transpose (the
mistake shows up only later), so we check the fitted factor shapes against the store.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from netrec_jax.data.row_batches import interaction_matrix
from netrec_jax.data.store import RatingStore


class OrientationError(ValueError):
  pass


class ImplicitRecommender:
  """ALS or BPR fitted on the binary training interactions.

  implicit 0.7's ALS weighs an observed pair by alpha * r (here alpha, r = 1) and every
  unobserved one by 1; Hu et al.'s 1 + alpha r is JaxIALS(confidence="hu")."""

  rating_note = ("not applicable: implicit's scores are preferences, not ratings (the source "
                 "documents' 'RMSE 3.68' for ALS compares the two)")

  def __init__(self, algorithm: str = "als", factors: int = 64, iterations: int = 15,
               regularization: float = 0.01, alpha: float = 1.0, learning_rate: float = 0.01,
               seed: int = 0, name: str = ""):
    if algorithm not in ("als", "bpr"):
      raise ValueError(f"implicit algorithm must be als or bpr, got {algorithm!r}")
    self.algorithm = algorithm
    self.kwargs = dict(factors=factors, iterations=iterations, regularization=regularization,
                       random_state=seed)
    if algorithm == "als":
      self.kwargs["alpha"] = alpha
    else:
      self.kwargs["learning_rate"] = learning_rate
    self.name = name or f"implicit_{algorithm}"

  def fit(self, store: RatingStore, rows: np.ndarray) -> "ImplicitRecommender":
    from threadpoolctl import threadpool_limits
    import implicit
    matrix = interaction_matrix(store, rows)
    cls = (implicit.als.AlternatingLeastSquares if self.algorithm == "als"
           else implicit.bpr.BayesianPersonalizedRanking)
    # Per-iteration wall seconds (implicit's own) and process CPU seconds, for benchmarks.
    self.iteration_seconds: list[float] = []
    self.iteration_cpu_seconds: list[float] = []
    last_cpu = [time.process_time()]

    def record(iteration, seconds, *progress):  # ALS passes the loss, BPR its accuracy
      self.iteration_seconds.append(seconds)
      self.iteration_cpu_seconds.append(time.process_time() - last_cpu[0])
      last_cpu[0] = time.process_time()

    with threadpool_limits(1, "blas"):  # the constructor checks BLAS threads too
      self.model = cls(**self.kwargs)
      self.model.fit(matrix, show_progress=False, callback=record)
    self.user_factors, self.item_factors = check_orientation(self.model, store.n_users,
                                                             store.n_items)
    return self

  def predict(self, users: np.ndarray, items: np.ndarray) -> None:
    return None

  def score_items(self, users: np.ndarray) -> np.ndarray:
    return self.user_factors[users] @ self.item_factors.T

  def ranking_vectors(self) -> tuple[np.ndarray, np.ndarray, None]:
    """Scores are user . item factors: the evaluator may rank them on the device."""
    return self.user_factors, self.item_factors, None

  @property
  def fold_in_method(self) -> str:
    return ("implicit's own least-squares user solve (recalculate_user), item factors fixed"
            if self.algorithm == "als" else "none: BPR has no closed-form user solve")

  def fold_in_batch(self, rows: sp.csr_matrix) -> np.ndarray:
    """[n, n_items] scores for n new users (a CSR of their stars, read as interactions)."""
    if self.algorithm != "als":
      raise NotImplementedError(f"{self.name}: {self.fold_in_method}")
    from threadpoolctl import threadpool_limits
    binary = sp.csr_matrix(rows, dtype=np.float32, copy=True)
    binary.data[:] = 1.0
    with threadpool_limits(1, "blas"):
      factors = self.model.recalculate_user(np.arange(binary.shape[0]), binary)
    return np.asarray(factors) @ self.item_factors.T

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    items = np.asarray(items, np.int64)
    row = sp.csr_matrix((np.ones(len(items), np.float32), (np.zeros(len(items), int), items)),
                        shape=(1, self.item_factors.shape[0]))
    return self.fold_in_batch(row)[0]


def check_orientation(model, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
  """Factor matrices, after checking implicit fitted users x items and not the transpose."""
  user_factors = np.asarray(getattr(model.user_factors, "to_numpy", lambda: model.user_factors)())
  item_factors = np.asarray(getattr(model.item_factors, "to_numpy", lambda: model.item_factors)())
  if user_factors.shape[0] != n_users or item_factors.shape[0] != n_items:
    raise OrientationError(
        f"implicit fitted {user_factors.shape[0]} users x {item_factors.shape[0]} items, but "
        f"the store has {n_users} users x {n_items} items: the matrix was transposed "
        "(implicit 0.7 wants users x items)")
  return user_factors, item_factors
