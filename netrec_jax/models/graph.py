"""Message passing over the user-movie graph: edge arrays, propagation, GC-MC and LightGCN.

The graph is the training split's ratings as bipartite edges (user, item, weight, level). It is
never a dense adjacency: a layer gathers the source rows of every edge, scales them by the
edge weight and adds them into their destination with `jax.ops.segment_sum`. The weights are
the symmetric normalisation 1/sqrt(deg_u deg_i) (or GC-MC's left 1/deg of the receiving node),
computed once on the host from the degrees;
a node with no edge receives no message, so its aggregate is exactly zero (never 0/0).

Edge arrays are [n_chunks, chunk] and sharded over the mesh's `data` axis along `chunk`: each
device sums the messages of its edge slice and XLA adds the partial sums (node tables are
replicated). Padding edges have weight 0 and point at node 0, so they add nothing. With more
than one chunk the layer scans over chunks, which bounds the gathered message buffer to
chunk x width floats: how a 100M-edge Netflix graph fits on one GPU.
"""

from __future__ import annotations

from typing import Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from netrec_jax.sharding import DATA

EDGE_FIELDS = ("user", "item", "weight", "level")


# ------------------------------------------------------------------------------ edge arrays
def symmetric_weights(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
                      ) -> np.ndarray:
  """1/sqrt(deg_u deg_i) per edge (float32); degree-0 nodes have no edges, hence no NaN."""
  deg_u = np.bincount(users, minlength=n_users).astype(np.float64)
  deg_i = np.bincount(items, minlength=n_items).astype(np.float64)
  inv_u = np.divide(1.0, np.sqrt(deg_u), out=np.zeros_like(deg_u), where=deg_u > 0)
  inv_i = np.divide(1.0, np.sqrt(deg_i), out=np.zeros_like(deg_i), where=deg_i > 0)
  return (inv_u[users] * inv_i[items]).astype(np.float32)


def left_weights(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(1/deg_u, 1/deg_i) per edge: each node averages its neighbours' messages.

  GC-MC's ML-100K setting (the paper code's -nleft): messages into user u are scaled by
  1/deg_u, messages into item i by 1/deg_i, so the two directions need their own weights.
  """
  deg_u = np.bincount(users, minlength=n_users).astype(np.float64)
  deg_i = np.bincount(items, minlength=n_items).astype(np.float64)
  inv_u = np.divide(1.0, deg_u, out=np.zeros_like(deg_u), where=deg_u > 0)
  inv_i = np.divide(1.0, deg_i, out=np.zeros_like(deg_i), where=deg_i > 0)
  return inv_u[users].astype(np.float32), inv_i[items].astype(np.float32)


def build_edges(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, *,
                levels: np.ndarray | None = None, n_shards: int = 1, edge_chunk: int = 0,
                norm: str = "symmetric") -> dict[str, np.ndarray]:
  """Host edge arrays [n_chunks, chunk], padded with weight-0 edges to whole shards.

  users, items: dense indices of the training ratings (one edge per rating). levels: the
  rating level of each edge (GC-MC), else 0. chunk is a multiple of n_shards so every data
  device holds the same number of edges. norm: symmetric (one `weight`, both directions) or
  left (`weight` scales messages into users, `weight_to_items` messages into items).
  """
  if norm not in ("symmetric", "left"):
    raise ValueError(f"norm must be symmetric or left, got {norm!r}")
  users = np.asarray(users, np.int64)
  items = np.asarray(items, np.int64)
  if users.shape != items.shape or users.ndim != 1:
    raise ValueError(f"users and items must be 1-D of one length, got {users.shape}, "
                     f"{items.shape}")
  if len(users) and (users.min() < 0 or users.max() >= n_users or items.min() < 0
                     or items.max() >= n_items):
    raise ValueError(f"edge endpoints out of range: users < {n_users}, items < {n_items}")
  n = len(users)
  n_chunks = max(1, -(-n // edge_chunk)) if edge_chunk > 0 else 1
  chunk = max(1, -(-n // n_chunks))
  chunk = -(-chunk // n_shards) * n_shards
  total = n_chunks * chunk
  columns = [("user", users, np.int32), ("item", items, np.int32)]
  if norm == "symmetric":
    columns.append(("weight", symmetric_weights(users, items, n_users, n_items), np.float32))
  else:
    to_users, to_items = left_weights(users, items, n_users, n_items)
    columns += [("weight", to_users, np.float32), ("weight_to_items", to_items, np.float32)]
  level = np.zeros(n, np.int32) if levels is None else np.asarray(levels, np.int32)
  columns.append(("level", level, np.int32))
  out = {}
  for name, values, dtype in columns:
    padded = np.zeros(total, dtype)
    padded[:n] = values
    out[name] = padded.reshape(n_chunks, chunk)
  return out


def edge_sharding(mesh: Mesh) -> NamedSharding:
  """Edges split over `data` along the chunk axis; every device scans the same chunk count."""
  return NamedSharding(mesh, P(None, DATA))


def _edge_sum(edges: dict[str, jax.Array], message: Callable[[dict[str, jax.Array]], jax.Array],
              segment: Callable[[dict[str, jax.Array]], jax.Array], num_segments: int,
              width: int) -> jax.Array:
  """sum over edges of message(e) into segment(e): one segment_sum, or a scan over chunks."""
  n_chunks = edges["user"].shape[0]

  def one(chunk: dict[str, jax.Array]) -> jax.Array:
    return jax.ops.segment_sum(message(chunk), segment(chunk), num_segments=num_segments)

  if n_chunks == 1:
    return one({k: v[0] for k, v in edges.items()})

  def body(total, chunk):
    return total + one(chunk), None

  total, _ = jax.lax.scan(body, jnp.zeros((num_segments, width), jnp.float32), edges)
  return total


def _to_items(e: dict[str, jax.Array]) -> jax.Array:
  """Weights of messages into items: their own under left normalisation, else `weight`."""
  return e.get("weight_to_items", e["weight"])


def propagate(edges: dict[str, jax.Array], user_x: jax.Array, item_x: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
  """One normalised layer both ways: users <- A item_x, items <- A^T user_x (A = D^-1/2 R D^-1/2).

  This is LightGCN's layer (no weights, no nonlinearity) on the bipartite graph, whose
  symmetric adjacency [[0, A], [A^T, 0]] never has to exist.
  """
  chex.assert_rank([user_x, item_x], 2)
  chex.assert_equal_shape_suffix([user_x, item_x], 1)
  width = user_x.shape[1]
  to_users = _edge_sum(edges, lambda e: item_x[e["item"]] * e["weight"][:, None],
                       lambda e: e["user"], user_x.shape[0], width)
  to_items = _edge_sum(edges, lambda e: user_x[e["user"]] * _to_items(e)[:, None],
                       lambda e: e["item"], item_x.shape[0], width)
  return to_users, to_items


def dense_propagate_reference(edges: dict[str, np.ndarray], user_x: np.ndarray,
                              item_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The same layer with a dense normalised adjacency (tests only: O(n_users x n_items))."""
  a = np.zeros((user_x.shape[0], item_x.shape[0]), np.float64)
  np.add.at(a, (edges["user"].ravel(), edges["item"].ravel()), edges["weight"].ravel())
  a_items = a
  if "weight_to_items" in edges:
    a_items = np.zeros_like(a)
    np.add.at(a_items, (edges["user"].ravel(), edges["item"].ravel()),
              edges["weight_to_items"].ravel())
  return a @ item_x, a_items.T @ user_x


# ------------------------------------------------------------------------------- LightGCN
class LightGCN(nn.Module):
  """LightGCN (He et al. 2020): K parameter-free layers, final embedding = mean of layers 0..K."""

  n_users: int
  n_items: int
  embed_dim: int = 64
  layers: int = 3
  init_std: float = 0.1

  def setup(self):
    init = nn.initializers.normal(self.init_std)
    self.user_ego = self.param("user_ego", init, (self.n_users, self.embed_dim))
    self.item_ego = self.param("item_ego", init, (self.n_items, self.embed_dim))

  def __call__(self, edges: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Final (layer-mean) user and item embeddings over the training graph."""
    users, items = self.user_ego, self.item_ego
    sum_users, sum_items = users, items
    for _ in range(self.layers):
      users, items = propagate(edges, users, items)
      sum_users, sum_items = sum_users + users, sum_items + items
    scale = 1.0 / (self.layers + 1)
    return sum_users * scale, sum_items * scale

  def ego(self) -> tuple[jax.Array, jax.Array]:
    return self.user_ego, self.item_ego


def bpr_loss(user_final: jax.Array, item_final: jax.Array, user_ego: jax.Array,
             item_ego: jax.Array, batch: dict[str, jax.Array], l2: float) -> jax.Array:
  """BPR on (user, positive, negatives) plus L2 on the batch's ego embeddings (LightGCN's form).

  batch: user [B], pos [B], neg [B, n_neg], mask [B] (0 on padding pairs).
  """
  chex.assert_rank([batch["user"], batch["pos"], batch["neg"]], [1, 1, 2])
  u = user_final[batch["user"]]
  pos = jnp.sum(u * item_final[batch["pos"]], -1)
  neg = jnp.einsum("bd,bnd->bn", u, item_final[batch["neg"]])
  mask = batch["mask"]
  n = jnp.maximum(mask.sum(), 1.0)
  ranking = jnp.sum(jnp.mean(jax.nn.softplus(neg - pos[:, None]), -1) * mask) / n
  reg = 0.5 * jnp.sum(mask * (jnp.sum(user_ego[batch["user"]] ** 2, -1)
                              + jnp.sum(item_ego[batch["pos"]] ** 2, -1)
                              + jnp.sum(item_ego[batch["neg"]] ** 2, (-2, -1)))) / n
  return ranking + l2 * reg


# ---------------------------------------------------------------------------------- GC-MC
class GCMC(nn.Module):
  """GC-MC (van den Berg et al. 2017) without side features.

  Encoder: per rating level r, users sum c_ui W_r[i] over the items they rated r (items
  likewise); the R results are stacked (or summed), ReLU, dropout, then a dense layer. Inputs
  are one-hot node ids, so W_r x_i is row i of W_r and node dropout drops whole rows.
  Decoder: p(r | u, i) = softmax_r(u^T Q_r v) with Q_r = sum_s a_rs P_s (basis sharing).
  """

  n_users: int
  n_items: int
  n_levels: int
  hidden: int = 500
  dense: int = 75
  num_basis: int = 2
  accumulation: str = "stack"
  ordinal_sharing: bool = True
  dense_activation: str = "identity"
  dropout: float = 0.7

  def setup(self):
    if self.accumulation not in ("stack", "sum"):
      raise ValueError(f"graph.gcmc_accumulation must be stack or sum, got {self.accumulation!r}")
    if self.dense_activation not in ("identity", "relu"):
      raise ValueError("graph.gcmc_dense_activation must be identity or relu, got "
                       f"{self.dense_activation!r}")
    if self.accumulation == "stack" and self.hidden % self.n_levels:
      raise ValueError(f"graph.gcmc_hidden={self.hidden} must be a multiple of the "
                       f"{self.n_levels} rating levels with stack accumulation")
    per_level = self.hidden // self.n_levels if self.accumulation == "stack" else self.hidden
    n_nodes = self.n_users + self.n_items
    # One weight row per node of the one-hot input (fan-in = all nodes, as the paper's code).
    init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=1, out_axis=2,
                                            batch_axis=(0,))
    self.conv = self.param("conv", init, (self.n_levels, n_nodes, per_level))
    self.user_dense = nn.Dense(self.dense, use_bias=False, name="user_dense")
    self.item_dense = nn.Dense(self.dense, use_bias=False, name="item_dense")
    self.basis = self.param("basis", nn.initializers.orthogonal(),
                            (self.num_basis, self.dense, self.dense))
    self.level_coef = self.param("level_coef", nn.initializers.glorot_uniform(),
                                 (self.n_levels, self.num_basis))
    self.drop = nn.Dropout(self.dropout)

  def _level_weights(self) -> jax.Array:
    # Ordinal sharing: rating r uses T_1 + ... + T_r, so nearby ratings share evidence.
    # A [R, R] lower-triangular contraction: XLA's CPU cumsum (a reduce-window) is far slower.
    if not self.ordinal_sharing:
      return self.conv
    lower = jnp.tril(jnp.ones((self.n_levels, self.n_levels), self.conv.dtype))
    return jnp.einsum("rs,snh->rnh", lower, self.conv)

  def encode(self, edges: dict[str, jax.Array], train: bool = False
             ) -> tuple[jax.Array, jax.Array]:
    """Final user [n_users, dense] and item [n_items, dense] embeddings."""
    weights = self._level_weights()
    n_levels, n_users, n_items = self.n_levels, self.n_users, self.n_items
    width = weights.shape[-1]
    user_w = weights[:, :n_users].reshape(n_levels * n_users, width)
    item_w = weights[:, n_users:].reshape(n_levels * n_items, width)
    keep = 1.0 - self.dropout
    if train and self.dropout > 0:
      key = self.make_rng("dropout")
      ku, ki = jax.random.split(key)
      user_keep = jax.random.bernoulli(ku, keep, (n_users,)).astype(jnp.float32) / keep
      item_keep = jax.random.bernoulli(ki, keep, (n_items,)).astype(jnp.float32) / keep
    else:
      user_keep = jnp.ones((n_users,), jnp.float32)
      item_keep = jnp.ones((n_items,), jnp.float32)
    stack = self.accumulation == "stack"

    def to_users(e):
      scale = e["weight"] * item_keep[e["item"]]
      return item_w[e["level"] * n_items + e["item"]] * scale[:, None]

    def to_items(e):
      scale = _to_items(e) * user_keep[e["user"]]
      return user_w[e["level"] * n_users + e["user"]] * scale[:, None]

    # Stack: level r's sum lands in slot r of the node (segment node * R + r), then concat.
    user_slot = ((lambda e: e["user"] * n_levels + e["level"]) if stack
                 else (lambda e: e["user"]))
    item_slot = ((lambda e: e["item"] * n_levels + e["level"]) if stack
                 else (lambda e: e["item"]))
    hu = _edge_sum(edges, to_users, user_slot, n_users * n_levels if stack else n_users, width)
    hi = _edge_sum(edges, to_items, item_slot, n_items * n_levels if stack else n_items, width)
    hu = nn.relu(hu.reshape(n_users, -1))
    hi = nn.relu(hi.reshape(n_items, -1))
    hu = self.drop(hu, deterministic=not train)
    hi = self.drop(hi, deterministic=not train)
    act = nn.relu if self.dense_activation == "relu" else (lambda x: x)
    return act(self.user_dense(hu)), act(self.item_dense(hi))

  def decode(self, u: jax.Array, v: jax.Array) -> jax.Array:
    """Logits [B, n_levels] of each rating level for pairs of embeddings u, v [B, dense]."""
    chex.assert_equal_shape([u, v])
    per_basis = jnp.einsum("bd,sde,be->bs", u, self.basis, v)
    return per_basis @ self.level_coef.T

  def decode_all(self, u: jax.Array, v: jax.Array) -> jax.Array:
    """Logits [n_u, n_v, n_levels] of every pair of u [n_u, dense] x v [n_v, dense]."""
    per_basis = jnp.einsum("ud,sde,ve->uvs", u, self.basis, v)
    return per_basis @ self.level_coef.T

  def decode_pairs(self, u: jax.Array, v: jax.Array, users: jax.Array, items: jax.Array
                   ) -> jax.Array:
    """decode(u[users], v[items]), projecting each user once by every basis matrix first.

    Costs n_users x d^2 + pairs x d instead of pairs x d^2: with 76k training pairs and 943
    users that is what makes the full-batch step fast.
    """
    projected = jnp.einsum("ud,sde->use", u, self.basis)  # [n_users, S, d]
    per_basis = jnp.einsum("bse,be->bs", projected[users], v[items])
    return per_basis @ self.level_coef.T

  def __call__(self, edges: dict[str, jax.Array], users: jax.Array, items: jax.Array,
               train: bool = False) -> jax.Array:
    u, v = self.encode(edges, train)
    return self.decode_pairs(u, v, users, items)


def gcmc_loss(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy over rating levels on the unmasked pairs."""
  chex.assert_rank(logits, 2)
  losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
  return jnp.sum(losses * mask) / jnp.maximum(mask.sum(), 1.0)


def expected_rating(logits: jax.Array, level_values: jax.Array) -> jax.Array:
  """E[r] under the decoder's softmax over rating levels (GC-MC's prediction)."""
  return jax.nn.softmax(logits, axis=-1) @ level_values
