"""The mesh and where batches live: one place every layer (models, training, serving) reads.

Mesh axes: `data` (batches are split over it) and `model` (embedding-table rows are split over
it when mesh.model > 1, what a billion-user table needs). Dense params are replicated. This
module imports nothing else of netrec_jax, so models, the trained-model wrappers in
netrec_jax/recommenders and the training loop can all place arrays the same way.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA, MODEL = "data", "model"


def set_cpu_devices(count: int) -> int:
  """Splits the host CPU into `count` JAX devices (config.mesh.cpu_devices: -1 one per core
  this process may use, 0 JAX's default) before the backend starts; returns the count asked
  for (0: none). Once the backend runs, only the count it already has is accepted."""
  if count == 0:
    return 0
  n = len(os.sched_getaffinity(0)) if count == -1 else int(count)
  try:
    jax.config.update("jax_num_cpu_devices", n)
  except RuntimeError:  # the backend already started (a library caller, a test)
    have = len(jax.devices("cpu"))
    if have != n:
      raise ValueError(f"mesh.cpu_devices={count} asks for {n} CPU devices, but the JAX "
                       f"backend already started with {have}; set it before any JAX "
                       "operation (launch.py does) or use 0") from None
  return n


def make_mesh(mesh_cfg: Any, devices: list | None = None) -> Mesh:
  """A (data, model) mesh; mesh.data = -1 means all devices the model axis leaves.

  An explicit data x model smaller than the device count uses the first devices (e.g. a
  one-device run on a multi-device host); a larger one is an error.
  """
  devices = list(devices if devices is not None else jax.devices())
  model = int(mesh_cfg.model)
  data = int(mesh_cfg.data) if int(mesh_cfg.data) > 0 else len(devices) // max(model, 1)
  if model <= 0 or data <= 0 or data * model > len(devices) or (
      int(mesh_cfg.data) <= 0 and data * model != len(devices)):
    raise ValueError(f"mesh data={mesh_cfg.data} x model={mesh_cfg.model} does not match "
                     f"{len(devices)} devices")
  devices = devices[:data * model]
  return Mesh(np.array(devices).reshape(data, model), (DATA, MODEL))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (example) axis split over `data`."""
  return NamedSharding(mesh, P(DATA))


def round_to_data(n: int, mesh: Mesh) -> int:
  """n rounded up to a multiple of the data-parallel device count (a shardable batch)."""
  d = mesh.shape[DATA]
  return -(-int(n) // d) * d


def put_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Places a global batch; with several processes each passes only its local slice."""
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  n_proc, index = jax.process_count(), jax.process_index()
  local = {k: np.array_split(v, n_proc)[index] for k, v in batch.items()}
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def to_host(x: jax.Array) -> np.ndarray:
  """The whole of a (possibly multi-process) sharded array on every host."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))
