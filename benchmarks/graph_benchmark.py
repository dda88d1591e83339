"""Propagation time per layer of the graph models at 1M, 10M and 100M edges.

  python benchmarks/graph_benchmark.py                       # 1M and 10M edges
  python benchmarks/graph_benchmark.py --edges=1e6,1e7,1e8 --edge_chunk=8388608

One layer is LightGCN's normalised propagation both ways (users <- A items, items <- A^T users,
netrec_jax.models.graph.propagate) at width --dim, jitted, on whatever devices JAX sees
(edges sharded over them, node tables replicated). Also timed: the same layer with its
gradient (what a training step pays per layer). The graph is Netflix-shaped: 480,189 users,
17,770 items, item popularity and user activity from the synthetic generator
(netrec_jax/data/synthetic.py), edges drawn with replacement (duplicates only repeat a message;
the cost of a layer depends on the edge count and widths, not on which pairs are present).
With --edge_chunk the layer scans over chunks of that many edges, bounding the gathered message
buffer to chunk x dim floats (needed for 100M edges).
Prints one line per size and writes --out (JSON) if given.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from netrec_jax.data import synthetic
from netrec_jax.models import graph as graph_lib

_EDGES = flags.DEFINE_string("edges", "1e6,1e7", "Comma-separated edge counts.")
_USERS = flags.DEFINE_integer("users", 480_189, "Users (Netflix: 480,189).")
_ITEMS = flags.DEFINE_integer("items", 17_770, "Items (Netflix: 17,770).")
_DIM = flags.DEFINE_integer("dim", 64, "Embedding width.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per size (after one warm-up).")
_CHUNK = flags.DEFINE_integer("edge_chunk", 0, "Edges per scan chunk (0 = all at once).")
_GRAD = flags.DEFINE_bool("grad", True, "Also time the layer with its gradient.")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")


def netflix_shaped_edges(n_edges: int, n_users: int, n_items: int, seed: int = 0
                         ) -> tuple[np.ndarray, np.ndarray]:
  """Dense (user, item) int32 arrays: generator popularity for items, Pareto user activity."""
  truth = synthetic.generate_truth(synthetic.SyntheticConfig(
      n_users=n_users, n_items=n_items, n_ratings=min(n_edges, n_users * n_items // 2),
      seed=seed))
  rng = np.random.default_rng(seed)
  activity = truth.ratings_per_user / truth.ratings_per_user.sum()
  users = np.empty(n_edges, np.int32)
  items = np.empty(n_edges, np.int32)
  item_cdf = np.cumsum(truth.item_popularity)
  user_cdf = np.cumsum(activity)
  block = 1 << 23
  for lo in range(0, n_edges, block):
    n = min(block, n_edges - lo)
    users[lo:lo + n] = np.minimum(np.searchsorted(user_cdf, rng.random(n)), n_users - 1)
    items[lo:lo + n] = np.minimum(np.searchsorted(item_cdf, rng.random(n)), n_items - 1)
  return users, items


def _timed(fn, *args, repeats: int) -> tuple[float, float]:
  """(compile + first call seconds, median seconds of `repeats` further calls)."""
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return first, float(np.median(times))


def bench(n_edges: int) -> dict:
  devices = jax.devices()
  mesh = Mesh(np.array(devices), ("data",))
  t0 = time.perf_counter()
  users, items = netflix_shaped_edges(n_edges, _USERS.value, _ITEMS.value)
  host = graph_lib.build_edges(users, items, _USERS.value, _ITEMS.value,
                               n_shards=len(devices), edge_chunk=_CHUNK.value)
  del users, items
  host.pop("level")  # LightGCN's layer does not read it
  build_s = time.perf_counter() - t0
  edges = jax.device_put(host, graph_lib.edge_sharding(mesh))
  del host
  replicated = NamedSharding(mesh, P())
  rng = np.random.default_rng(1)
  x_u = jax.device_put(rng.normal(size=(_USERS.value, _DIM.value)).astype(np.float32),
                       replicated)
  x_i = jax.device_put(rng.normal(size=(_ITEMS.value, _DIM.value)).astype(np.float32),
                       replicated)
  shardings = (graph_lib.edge_sharding(mesh), replicated, replicated)
  layer = jax.jit(graph_lib.propagate, in_shardings=shardings,
                  out_shardings=(replicated, replicated))
  first, per_layer = _timed(layer, edges, x_u, x_i, repeats=_REPEATS.value)
  result = {"edges": n_edges, "users": _USERS.value, "items": _ITEMS.value, "dim": _DIM.value,
            "devices": f"{len(devices)} x {devices[0].platform}",
            "edge_chunks": int(edges["user"].shape[0]), "graph_build_s": build_s,
            "compile_and_first_s": first, "layer_s": per_layer,
            "edges_per_s": n_edges / per_layer}
  if _GRAD.value:
    def loss(x_u, x_i, edges):
      to_u, to_i = graph_lib.propagate(edges, x_u, x_i)
      return jnp.sum(to_u * to_u) + jnp.sum(to_i * to_i)
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)),
                   in_shardings=(replicated, replicated, graph_lib.edge_sharding(mesh)),
                   out_shardings=(replicated, replicated))
    _, result["layer_with_grad_s"] = _timed(grad, x_u, x_i, edges, repeats=_REPEATS.value)
  return result


def main(argv):
  del argv
  results = []
  for text in _EDGES.value.split(","):
    n = int(float(text))
    r = bench(n)
    results.append(r)
    print(f"{r['edges']:>12,d} edges, dim {r['dim']}, {r['devices']}, {r['edge_chunks']} "
          f"chunk(s): {r['layer_s'] * 1e3:9.1f} ms per layer (both directions), "
          f"{r['edges_per_s'] / 1e6:6.1f} M edges/s; with gradient "
          f"{r.get('layer_with_grad_s', float('nan')) * 1e3:9.1f} ms; compile+first "
          f"{r['compile_and_first_s']:.1f} s; graph build {r['graph_build_s']:.1f} s",
          flush=True)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  app.run(main)
