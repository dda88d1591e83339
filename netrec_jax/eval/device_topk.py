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

from typing import Any, Iterable, Iterator

import numpy as np
import scipy.sparse as sp

from netrec_jax.eval.metrics import PAD
from netrec_jax.sharding import DATA


class DeviceRanker:
  """top_k(users, exclude) for one model's ranking vectors (see the module docstring).

  A batch's users are split over the local devices (shard_map over the `data` axis): each
  device scores its users against the replicated items, excludes their training items and
  takes their top-K. XLA:CPU's TopK runs on one core per device, so on a CPU split into one
  device per core (mesh.cpu_devices) the cores share it: with two, a batch's top-K took 85 ms
  against 156 ms on one (BUILD_NOTES.md). The batch is rounded up to a multiple of the
  device count.
  """

  def __init__(self, user_vectors: np.ndarray, item_vectors: np.ndarray,
               item_bias: np.ndarray | None, k: int, batch: int):
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    devices = jax.local_devices()
    self.n_devices = len(devices)
    mesh = Mesh(np.array(devices), (DATA,))
    self.n_items = item_vectors.shape[0]
    self.batch = -(-int(batch) // self.n_devices) * self.n_devices
    self.k_asked, self.k = int(k), min(int(k), self.n_items)
    self._users = np.asarray(user_vectors, np.float32)
    bias = np.zeros(self.n_items, np.float32) if item_bias is None else item_bias
    self._items = jax.device_put((np.asarray(item_vectors, np.float32),
                                  np.asarray(bias, np.float32)), NamedSharding(mesh, P()))
    k_top = self.k

    def rank(users, items, bias, rows, cols):  # one device: its users, its exclusions
      scores = jnp.dot(users, items.T, precision=jax.lax.Precision.HIGHEST) + bias[None, :]
      scores = scores.at[rows[0], cols[0]].set(-jnp.inf, mode="drop")
      values, index = jax.lax.top_k(scores, k_top)
      return jnp.where(values == -jnp.inf, PAD, index)

    self._rank = jax.jit(jax.shard_map(rank, mesh=mesh,
                                       in_specs=(P(DATA), P(), P(), P(DATA), P(DATA)),
                                       out_specs=P(DATA)))

  def __call__(self, users: np.ndarray, exclude: sp.csr_matrix) -> np.ndarray:
    """int64 [len(users), k]: the best items of each user, best first, `exclude` left out."""
    users = np.asarray(users, np.int64)
    parts = ((users[lo:lo + self.batch], exclude[lo:lo + self.batch])
             for lo in range(0, len(users), self.batch))
    out = list(self.stream(parts))
    return np.concatenate(out) if out else np.zeros((0, self.k_asked), np.int64)

  def stream(self, batches: Iterable[tuple[np.ndarray, sp.csr_matrix]]) -> Iterator[np.ndarray]:
    """The top-K of each (users, exclude) batch (at most self.batch users), in order. The next
    batch is dispatched before this one's result is read, so the host's work on a batch (its
    exclusions here, the caller's metrics) overlaps the device's on the next; two batches'
    scores at most are alive at once."""
    pending = None
    for users, exclude in batches:
      handle = self._dispatch(np.asarray(users, np.int64), sp.csr_matrix(exclude))
      if pending is not None:
        yield self._collect(*pending)
      pending = handle
    if pending is not None:
      yield self._collect(*pending)

  def _dispatch(self, users: np.ndarray, exclude: sp.csr_matrix):
    n = len(users)
    if n > self.batch:
      raise ValueError(f"a batch of {n} users is larger than the ranker's {self.batch}")
    vectors = np.zeros((self.batch, self._users.shape[1]), np.float32)
    vectors[:n] = self._users[users]
    # Each device's exclusions with its own row numbers, padded to one power-of-two width
    # with an out-of-range row (dropped).
    per_device = self.batch // self.n_devices
    row = np.repeat(np.arange(n, dtype=np.int32), np.diff(exclude.indptr))
    device = row // per_device
    counts = np.bincount(device, minlength=self.n_devices)
    width = max(1024, 1 << int(np.ceil(np.log2(max(counts.max(initial=0), 1)))))
    rows = np.full((self.n_devices, width), per_device, np.int32)
    cols = np.zeros((self.n_devices, width), np.int32)
    slot = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
    rows[device, slot] = row - device * per_device
    cols[device, slot] = exclude.indices
    return self._rank(vectors, *self._items, rows, cols), n

  def _collect(self, top, n: int) -> np.ndarray:
    top = np.asarray(top)[:n].astype(np.int64)
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
