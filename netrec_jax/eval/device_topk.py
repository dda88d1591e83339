"""Full-catalog top-K on the device for models that score by a dot product.

A model whose scores rank each user's items as u . v_i + b_i exposes `ranking_vectors() ->
(user_vectors [n_users, d], item_vectors [n_items, d], item_bias [n_items] or None)`, or None
where it does not factorise. The evaluator then scores a batch of users, sets their training
items to -inf and takes `lax.top_k`, all in one compiled program, instead of moving [B,
n_items] scores to the host and partitioning them with numpy. lax.top_k breaks ties towards
the lower index, as metrics.topk_from_scores does, and rows with fewer than K eligible items
are padded with -1 the same way. Scores are XLA's float32 products (HIGHEST precision), which
round differently from numpy's BLAS: two items within a few ulps of each other can swap (in
benchmarks/ranking_benchmark.py's check 1 user of 512 had two neighbours at rank 88 swapped,
scores 0.20822491 and 0.20822495). That is why `auto` keeps the host path below Netflix scale.

Shapes are padded (users to the batch, training entries to a power of two) so a handful of
programs compile per run. On 2 CPU cores the device path ranked 40x more users per second than
the host path (benchmarks/device_suite.py, mid-size run); at Netflix scale it is what makes
ranking every user affordable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from netrec_jax.eval.metrics import PAD


class DeviceRanker:
  """top_k(users, exclude) for one model's ranking vectors (see the module docstring)."""

  def __init__(self, user_vectors: np.ndarray, item_vectors: np.ndarray,
               item_bias: np.ndarray | None, k: int, batch: int):
    import jax
    import jax.numpy as jnp
    self.n_items, self.batch = item_vectors.shape[0], int(batch)
    self.k_asked, self.k = int(k), min(int(k), self.n_items)
    self._users = np.asarray(user_vectors, np.float32)
    bias = np.zeros(self.n_items, np.float32) if item_bias is None else item_bias
    self._items = jax.device_put((np.asarray(item_vectors, np.float32),
                                  np.asarray(bias, np.float32)))
    k_top = self.k

    def rank(users, items, bias, rows, cols):
      scores = jnp.dot(users, items.T, precision=jax.lax.Precision.HIGHEST) + bias[None, :]
      scores = scores.at[rows, cols].set(-jnp.inf, mode="drop")
      values, index = jax.lax.top_k(scores, k_top)
      return jnp.where(values == -jnp.inf, PAD, index)

    self._rank = jax.jit(rank)

  def __call__(self, users: np.ndarray, exclude: sp.csr_matrix) -> np.ndarray:
    """int64 [len(users), k]: the best items of each user, best first, `exclude` left out."""
    users = np.asarray(users, np.int64)
    n = len(users)
    if n > self.batch:
      return np.concatenate([self(users[lo:lo + self.batch], exclude[lo:lo + self.batch])
                             for lo in range(0, n, self.batch)])
    exclude = sp.csr_matrix(exclude)
    vectors = np.zeros((self.batch, self._users.shape[1]), np.float32)
    vectors[:n] = self._users[users]
    width = max(1024, 1 << int(np.ceil(np.log2(max(exclude.nnz, 1)))))
    rows = np.full(width, self.batch, np.int32)  # padding: an out-of-range row, dropped
    cols = np.zeros(width, np.int32)
    rows[:exclude.nnz] = np.repeat(np.arange(n, dtype=np.int32), np.diff(exclude.indptr))
    cols[:exclude.nnz] = exclude.indices
    top = np.asarray(self._rank(vectors, *self._items, rows, cols))[:n].astype(np.int64)
    if top.shape[1] < self.k_asked:  # a catalog smaller than K: padded as the host path pads
      top = np.concatenate([top, np.full((n, self.k_asked - top.shape[1]), PAD)], 1)
    return top


def ranker_for(model: Any, k: int, batch: int, mode: str, n_users: int, n_items: int
               ) -> DeviceRanker | None:
  """The device ranker the evaluator uses for `model`, or None for the host path.

  mode (eval.ranker): host | device | auto; auto ranks on the device when the model exposes
  ranking_vectors() and the full score matrix has more than 1e8 cells (smaller runs keep the
  host path, whose figures every earlier result was computed with).
  """
  if mode not in ("auto", "host", "device"):
    raise ValueError(f"eval.ranker must be auto, host or device, got {mode!r}")
  if mode == "host" or (mode == "auto" and n_users * n_items <= 1e8):
    return None
  method = getattr(model, "ranking_vectors", None)
  vectors = method() if method is not None else None
  if vectors is None:
    if mode == "device":
      raise ValueError(f"eval.ranker=device: {model.name} does not score by a dot product "
                       "(no ranking_vectors); use auto or host")
    return None
  users, items, bias = vectors
  return DeviceRanker(users, items, bias, k, batch)
