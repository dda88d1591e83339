"""Training graph models (GC-MC for ratings, LightGCN for ranking) over the training graph.

The graph is built once from the split's training rows: one edge per training rating, with the
symmetric normalisation 1/sqrt(deg_u deg_i) and (GC-MC) the rating level of the edge. Edge
arrays are sharded over the mesh's `data` axis and node tables replicated; each step
propagates over the whole training graph (as both papers do) and takes its loss on a batch
of training pairs, also sharded over `data`:

  gcmc      softmax cross-entropy over the store's distinct training rating values; full-batch
            by default (one step per epoch over every training edge); predictions are the
            expected rating under the decoder's softmax. Best checkpoint by validation RMSE.
  lightgcn  BPR with seeded sampled negatives (never a training positive of the user) and L2 on
            the batch's ego embeddings; mini-batches of graph.batch_size pairs. Best checkpoint
            by validation Recall@K or NDCG@K (graph.valid_metric), computed by the evaluator on
            the validation rows (full catalog, training items excluded).

Checkpoints: WORKDIR/checkpoints/{latest,best} (orbax, netrec_jax/train/checkpoint.py) hold
params, optimizer state, the GC-MC moving average and the epoch, with the config, store
fingerprint and rating levels; training resumes from `latest`; final metrics come from
`best`, restored behind the evaluator interface (GraphRecommender).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from netrec_jax import sharding as sharding_lib
from netrec_jax.data import datasets
from netrec_jax.models import graph as graph_lib
from netrec_jax.recommenders.graph import GraphRecommender
from netrec_jax.recommenders.trained import Trained
from netrec_jax.train import optim
from netrec_jax.train.family import Family, Setup, SizedBatches

GRAPH_MODELS = ("gcmc", "lightgcn")


# ---------------------------------------------------------------------------------- setup
def _check_config(config) -> None:
  """What config_checks' per-field ranges cannot say: the choices."""
  g = config.graph
  problems = []
  for field, choices in (("gcmc_accumulation", ("stack", "sum")),
                         ("gcmc_norm", ("symmetric", "left")),
                         ("gcmc_dense_activation", ("identity", "relu"))):
    if g[field] not in choices:
      problems.append(f"graph.{field} must be one of {choices}, got {g[field]!r}")
  metric, _, k = g.valid_metric.partition("@")
  if metric not in ("recall", "ndcg") or not k.isdigit() or int(k) < 1:
    problems.append(f"graph.valid_metric must look like recall@20 or ndcg@20, got "
                    f"{g.valid_metric!r}")
  if problems:
    raise ValueError("bad graph config: " + "; ".join(problems))


def _model(config, n_users: int, n_items: int, n_levels: int):
  g = config.graph
  if config.model.name == "gcmc":
    return graph_lib.GCMC(n_users, n_items, n_levels, hidden=g.gcmc_hidden, dense=g.gcmc_dense,
                          num_basis=g.num_basis, accumulation=g.gcmc_accumulation,
                          ordinal_sharing=g.gcmc_ordinal_sharing,
                          dense_activation=g.gcmc_dense_activation, dropout=g.dropout)
  return graph_lib.LightGCN(n_users, n_items, embed_dim=g.embed_dim, layers=g.layers,
                            init_std=g.init_std)


def _setup(config, meta: dict[str, Any] | None = None) -> dict[str, Any]:
  """Store, split, graph, model and initializer of a graph config (training and restore)."""
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  if split is None:
    raise ValueError("graph models need a split (split.kind must not be none)")
  rows = {part: split.rows(part) for part in ("train", "valid", "test")}
  if len(rows["train"]) == 0:
    raise ValueError(f"split {split.name} has no training ratings")
  train_users = np.take(store.user, rows["train"]).astype(np.int64)
  train_items = np.take(store.item, rows["train"]).astype(np.int64)
  raw = np.take(store.rating, rows["train"])
  levels_raw, level_of_edge, level_values = rating_levels(
      raw, store.rating_scale, meta.get("levels_raw") if meta else None)
  global_mean = (float(meta["global_mean"]) if meta and "global_mean" in meta
                 else float(store.stars(rows["train"]).astype(np.float64).mean()))
  mesh = sharding_lib.make_mesh(config.mesh)
  n_data = mesh.shape[sharding_lib.DATA]
  host_edges = graph_lib.build_edges(
      train_users, train_items, store.n_users, store.n_items,
      levels=level_of_edge if config.model.name == "gcmc" else None, n_shards=n_data,
      edge_chunk=config.graph.edge_chunk,
      norm=config.graph.gcmc_norm if config.model.name == "gcmc" else "symmetric")
  model = _model(config, store.n_users, store.n_items, len(levels_raw))
  n_train = len(rows["train"])
  steps_per_epoch = (1 if config.model.name == "gcmc" and config.graph.full_batch
                     else -(-n_train // config.train.batch_size))
  tx = optim.dense_optimizer(config.optimizer, steps_per_epoch * config.train.epochs)
  ema = config.model.name == "gcmc" and config.graph.ema_decay > 0
  dummy_edges = {k: jnp.asarray(v[:, :n_data]) for k, v in host_edges.items()}

  def init(seed: int = 0) -> dict[str, Any]:
    rngs = {"params": jax.random.PRNGKey(seed), "dropout": jax.random.PRNGKey(seed + 1)}
    if config.model.name == "gcmc":
      params = model.init(rngs, dummy_edges, jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32))
    else:
      params = model.init(rngs, dummy_edges)
    extra = {"ema": jax.tree.map(jnp.zeros_like, params)} if ema else {}  # see _eval_params
    return optim.init_tree(params, tx, **extra)

  return dict(store=store, split=split, rows=rows, mesh=mesh, n_data=n_data,
              host_edges=host_edges,
              edges=jax.device_put(host_edges, graph_lib.edge_sharding(mesh)), model=model,
              tx=tx, init=init, ema=ema,
              levels_raw=levels_raw, level_values=level_values, global_mean=global_mean,
              train_users=train_users, train_items=train_items, level_of_edge=level_of_edge,
              trained=Trained.from_rows(store, rows["train"]),
              steps_per_epoch=steps_per_epoch,
              positive_keys=None if config.model.name == "gcmc" else
              np.unique(train_users * store.n_items + train_items))


def rating_levels(raw: np.ndarray, rating_scale: int, saved: list[int] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """GC-MC's classes: the distinct stored training values (stars * rating_scale).

  Returns (levels_raw, level index of each rating, level values in stars). Half stars on a
  scale of 2 stay distinct levels (0.5 ... 5.0 is ten classes); a restored model passes the
  levels it was trained with, and a rating outside them is an error.
  """
  raw = np.asarray(raw, np.int64)
  levels_raw = (np.asarray(saved, np.int64) if saved is not None
                else np.unique(raw).astype(np.int64))
  level_of_edge = np.minimum(np.searchsorted(levels_raw, raw), len(levels_raw) - 1)
  if len(raw) and (levels_raw[level_of_edge] != raw).any():
    bad = np.unique(raw[levels_raw[level_of_edge] != raw]) / rating_scale
    raise ValueError(f"training ratings {bad.tolist()} are not among the rating levels "
                     f"{(levels_raw / rating_scale).tolist()}")
  return levels_raw, level_of_edge, levels_raw.astype(np.float32) / np.float32(rating_scale)


# ------------------------------------------------------------------------------ training
def _pad(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
  pad = size - len(batch["mask"])
  return {k: np.pad(v, [(0, pad)] + [(0, 0)] * (v.ndim - 1)) for k, v in batch.items()}


def sample_negatives(rng: np.random.Generator, users: np.ndarray, n_items: int, n_neg: int,
                     positive_keys: np.ndarray, rounds: int = 20) -> np.ndarray:
  """[len(users), n_neg] uniform items, redrawn while they are the user's training positive.

  positive_keys: sorted user * n_items + item of every training pair.
  """
  neg = rng.integers(0, n_items, (len(users), n_neg), dtype=np.int64)
  for _ in range(rounds):
    keys = users[:, None] * n_items + neg
    pos = np.minimum(np.searchsorted(positive_keys, keys), len(positive_keys) - 1)
    bad = positive_keys[pos] == keys
    if not bad.any():
      break
    neg[bad] = rng.integers(0, n_items, int(bad.sum()), dtype=np.int64)
  return neg.astype(np.int32)


def make_step(config, s: dict[str, Any]):
  """The jitted training step: (tree, edges, batch, key) -> (tree, loss), explicit shardings."""
  model, tx, mesh = s["model"], s["tx"], s["mesh"]
  replicated = NamedSharding(mesh, P())
  edges_sh = graph_lib.edge_sharding(mesh)
  batch_sh = sharding_lib.batch_sharding(mesh)
  decay = config.graph.ema_decay
  l2 = config.graph.l2

  def loss_fn(params, edges, batch, key):
    if config.model.name == "gcmc":
      logits = model.apply(params, edges, batch["user"], batch["item"], train=True,
                           rngs={"dropout": key})
      return graph_lib.gcmc_loss(logits, batch["label"], batch["mask"])
    users, items = model.apply(params, edges)
    user_ego, item_ego = model.apply(params, method=graph_lib.LightGCN.ego)
    return graph_lib.bpr_loss(users, items, user_ego, item_ego, batch, l2)

  def step(tree, edges, batch, key):
    loss, grads = jax.value_and_grad(loss_fn)(tree["params"], edges, batch, key)
    new, norm = optim.apply_gradients(tree, grads, tx)
    if "ema" in tree:
      new["ema"] = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, tree["ema"],
                                new["params"])
    return new, {"loss": loss, "grad_norm": norm}

  step = jax.jit(step, in_shardings=(replicated, edges_sh, batch_sh, replicated),
                 out_shardings=(replicated, replicated), donate_argnums=(0,))
  edges = s["edges"]  # on the devices once, sharded over `data`
  return lambda tree, batch, key: step(tree, edges, batch, key)


def epoch_batches(config, s: dict[str, Any], epoch: int):
  """Host batches of one epoch (seeded by epoch, so a resumed run sees the same ones)."""
  n_train = len(s["train_users"])
  n_data = s["n_data"]
  rng = np.random.default_rng([config.seed, epoch])
  if config.model.name == "gcmc" and config.graph.full_batch:
    size, order = n_train, np.arange(n_train)
  else:
    size, order = config.train.batch_size, rng.permutation(n_train)
  size = -(-size // n_data) * n_data
  for lo in range(0, n_train, size):
    idx = order[lo:lo + size]
    users = s["train_users"][idx]
    batch = {"user": users.astype(np.int32), "mask": np.ones(len(idx), np.float32)}
    if config.model.name == "gcmc":
      batch.update(item=s["train_items"][idx].astype(np.int32),
                   label=s["level_of_edge"][idx].astype(np.int32))
    else:
      batch.update(pos=s["train_items"][idx].astype(np.int32),
                   neg=sample_negatives(rng, users, s["store"].n_items,
                                        config.graph.bpr_negatives, s["positive_keys"]))
    yield _pad(batch, size)


def _eval_params(tree, config):
  """GC-MC evaluates the moving average of params (the paper's test-time weights).

  The average starts at zero and is divided by 1 - decay^step (as Adam's moments), so early
  evaluations are not pulled towards the initial weights.
  """
  if "ema" not in tree:
    return tree["params"]
  correction = 1.0 - config.graph.ema_decay ** max(int(tree["step"]), 1)
  return jax.tree.map(lambda e: e / correction, tree["ema"])


# ------------------------------------------------------------------------------ the family
@dataclasses.dataclass
class GraphSetup(Setup):
  s: dict[str, Any] = None  # the graph, model and optimizer (_setup)


class GraphFamily(Family):
  name = "graph"
  models = GRAPH_MODELS
  reads = ("graph",)
  architecture_keys = tuple(f"graph.{k}" for k in (
      "gcmc_hidden", "gcmc_dense", "gcmc_accumulation", "gcmc_ordinal_sharing",
      "gcmc_dense_activation", "num_basis", "ema_decay", "gcmc_norm", "layers", "embed_dim"))
  DEFAULTS = {"gcmc": {"optimizer.lr": 0.01, "train.epochs": 100, "train.batch_size": 10_000},
              "lightgcn": {"train.epochs": 50, "train.batch_size": 2048}}
  SEARCH_SPACE = {"gcmc": {"optimizer.lr": ("log", 1e-3, 3e-2),
                           "graph.dropout": ("float", 0.0, 0.8)},
                  "lightgcn": {"graph.layers": ("int", 1, 4), "graph.l2": ("log", 1e-6, 1e-2),
                               "optimizer.lr": ("log", 1e-4, 1e-2)}}

  def check(self, config) -> None:
    _check_config(config)

  def setup(self, config, meta: dict[str, Any] | None = None) -> GraphSetup:
    s = _setup(config, meta)
    is_gcmc = config.model.name == "gcmc"
    return GraphSetup(
        config=config, store=s["store"], split=s["split"], mesh=s["mesh"],
        valid_metric="rmse" if is_gcmc else config.graph.valid_metric,
        lower_is_better=is_gcmc, n_examples=len(s["train_users"]), unit="pairs",
        steps_per_epoch=s["steps_per_epoch"],
        extra_meta={"global_mean": s["global_mean"], "levels_raw": s["levels_raw"].tolist()},
        s=s)

  def init(self, setup: GraphSetup):
    seed = setup.config.seed
    return jax.jit(lambda: setup.s["init"](seed),
                   out_shardings=NamedSharding(setup.mesh, P()))()

  def make_step(self, setup: GraphSetup):
    return make_step(setup.config, setup.s)

  def batches(self, setup: GraphSetup, epoch: int):
    return SizedBatches(lambda: epoch_batches(setup.config, setup.s, epoch),
                        setup.s["steps_per_epoch"])

  def recommender(self, setup: GraphSetup, tree, which: str, meta: dict[str, Any]):
    return GraphRecommender(setup.s, setup.config, _eval_params(tree, setup.config), which,
                            meta)


FAMILY = GraphFamily()
