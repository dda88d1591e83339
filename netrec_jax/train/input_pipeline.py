"""Feeding batches from the memmapped store: host pipeline with prefetch, or device-resident.

Host mode: each epoch a seeded permutation of the training rows; each batch gathers the int32
columns from the memmap (rows sorted within the batch for locality), pads the last batch with
weight-0 examples (one compiled shape), and is placed with the batch sharding while the
previous batch trains (a background thread keeps `prefetch` batches ready). With several
processes, each reads only its own slice of every global batch.

Device mode: the training columns are put on the devices once; each epoch is one compiled
function that permutes on the device and scans over batches, no host round trip per step.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from netrec_jax.data.store import RatingStore
from netrec_jax.sharding import DATA, batch_sharding, put_batch


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(n)


def gather_batch(store: RatingStore, rows: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
  """Columns of `rows` (sorted for memmap locality), padded to batch_size with weight 0."""
  rows = np.sort(rows)
  n = len(rows)
  pad = batch_size - n
  batch = {
      "user": np.take(store.user, rows),
      "item": np.take(store.item, rows),
      "rating": np.take(store.rating, rows).astype(np.float32) / np.float32(store.rating_scale),
      "weight": np.ones(n, np.float32),
  }
  if pad:
    batch = {k: np.concatenate([v, np.zeros(pad, v.dtype)]) for k, v in batch.items()}
  return batch


class HostBatches:
  """Iterates an epoch of device batches gathered from the store on a background thread."""

  def __init__(self, store: RatingStore, rows: np.ndarray, batch_size: int, seed: int,
               mesh: Mesh, prefetch: int = 2, shuffle: bool = True):
    if batch_size % mesh.shape[DATA]:
      raise ValueError(f"batch size {batch_size} is not divisible by the {mesh.shape[DATA]} "
                       "data-parallel devices")
    self.store, self.rows, self.batch_size = store, np.asarray(rows), batch_size
    self.seed, self.prefetch, self.shuffle = seed, prefetch, shuffle
    self.sharding = batch_sharding(mesh)

  def __len__(self) -> int:
    return -(-len(self.rows) // self.batch_size)

  def host_batches(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
    rows = self.rows
    if self.shuffle:
      rows = rows[epoch_permutation(len(rows), self.seed, epoch)]
    for lo in range(0, len(rows), self.batch_size):
      yield gather_batch(self.store, rows[lo:lo + self.batch_size], self.batch_size)

  def epoch(self, epoch: int) -> Iterator[dict[str, jax.Array]]:
    """Device batches; the next ones are gathered and transferred while this one trains."""
    return prefetch((put_batch(b, self.sharding) for b in self.host_batches(epoch)),
                    self.prefetch)


def prefetch(items: Iterator, size: int) -> Iterator:
  """Yields `items`, produced `size` ahead on a background thread (gather and transfer of
  the next batches overlap the step on this one); a producer error is raised here."""
  ready: queue.Queue = queue.Queue(maxsize=max(1, size))
  done = object()
  stop = threading.Event()

  def produce():
    try:
      for item in items:
        if stop.is_set():
          return
        ready.put(item)
      ready.put(done)
    except BaseException as e:  # surfaced in the consumer
      ready.put(e)

  thread = threading.Thread(target=produce, daemon=True)
  thread.start()
  try:
    while True:
      item = ready.get()
      if item is done:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()
    while thread.is_alive():  # unblock a producer waiting on a full queue
      try:
        ready.get_nowait()
      except queue.Empty:
        pass
      thread.join(timeout=0.05)


def device_columns(store: RatingStore, rows: np.ndarray, mesh: Mesh) -> dict[str, jax.Array]:
  """Training columns on the devices (replicated), for device-resident epochs."""
  replicated = NamedSharding(mesh, P())
  cols = {
      "user": np.take(store.user, rows),
      "item": np.take(store.item, rows),
      "rating": np.take(store.rating, rows).astype(np.float32) / np.float32(store.rating_scale),
  }
  return jax.device_put(cols, replicated)


def epoch_order(n_rows: int, seed: int, epoch: int, mesh: Mesh) -> jax.Array:
  """This epoch's row order, replicated on the devices.

  On accelerators the permutation is drawn on the device (a sort, fast there); XLA's CPU sort
  is ~25x slower than numpy's shuffle, so on CPU it is drawn on the host and copied.
  """
  replicated = NamedSharding(mesh, P())
  if jax.devices()[0].platform == "cpu":
    return jax.device_put(epoch_permutation(n_rows, seed, epoch).astype(np.int32), replicated)
  key = jax.random.fold_in(jax.random.PRNGKey(seed), epoch)
  return jax.jit(lambda k: jax.random.permutation(k, n_rows), out_shardings=replicated)(key)


def make_device_epoch(train_step, n_rows: int, batch_size: int, mesh: Mesh):
  """epoch(state, columns, aux, order) -> (state, per-step metrics): scan over batches.

  `order` is the epoch's permutation (epoch_order). The remainder after the last full batch
  is skipped; the permutation changes every epoch, so every rating is seen about as often.
  """
  n_steps = n_rows // batch_size
  if n_steps == 0:
    raise ValueError(f"batch size {batch_size} exceeds the {n_rows} training rows")
  sharding = batch_sharding(mesh)

  def epoch(state, columns, aux, order):
    perm = order[:n_steps * batch_size].reshape(n_steps, batch_size)

    def body(state, idx):
      batch = {k: v[idx] for k, v in columns.items()}
      batch["weight"] = jnp.ones((batch_size,), jnp.float32)
      batch = jax.lax.with_sharding_constraint(batch, sharding)
      state, metrics = train_step(state, batch, aux)
      return state, metrics

    state, metrics = jax.lax.scan(body, state, perm)
    return state, metrics

  return epoch, n_steps
