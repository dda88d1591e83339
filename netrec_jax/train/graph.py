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

from netrec_jax.data import datasets
from netrec_jax.eval import evaluator
from netrec_jax.models import graph as graph_lib
from netrec_jax.train import input_pipeline, optim, state as state_lib
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


def _valid_k(config) -> int:
  return int(config.graph.valid_metric.partition("@")[2])


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
  mesh = state_lib.make_mesh(config.mesh)
  n_data = mesh.shape[state_lib.DATA]
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

  trained_users = np.zeros(store.n_users, bool)
  trained_users[train_users] = True
  trained_items = np.zeros(store.n_items, bool)
  trained_items[train_items] = True
  return dict(store=store, split=split, rows=rows, mesh=mesh, n_data=n_data,
              host_edges=host_edges, model=model, tx=tx, init=init, ema=ema,
              levels_raw=levels_raw, level_values=level_values, global_mean=global_mean,
              train_users=train_users, train_items=train_items, level_of_edge=level_of_edge,
              trained={"user": trained_users, "item": trained_items},
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
  batch_sh = input_pipeline.batch_sharding(mesh)
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
  edges = _eval_functions(s)["edges"]  # on the devices once, sharded over `data`
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


# ----------------------------------------------------------------------- the recommender
def _eval_functions(s: dict[str, Any]) -> dict[str, Any]:
  """Device edges and jitted embed/decode functions, made once per setup (no recompiles)."""
  if "eval_fns" in s:
    return s["eval_fns"]
  model, mesh = s["model"], s["mesh"]
  replicated = NamedSharding(mesh, P())
  edges_sh = graph_lib.edge_sharding(mesh)
  is_gcmc = isinstance(model, graph_lib.GCMC)
  if is_gcmc:
    embed = lambda p, e: model.apply(p, e, method=graph_lib.GCMC.encode)
  else:
    embed = lambda p, e: model.apply(p, e)
  fns = {"edges": jax.device_put(s["host_edges"], edges_sh),
         "embed": jax.jit(embed, in_shardings=(replicated, edges_sh),
                          out_shardings=(replicated, replicated))}
  if is_gcmc:
    levels = jnp.asarray(s["level_values"])
    fns["pair_ratings"] = jax.jit(lambda p, u, v: graph_lib.expected_rating(
        model.apply(p, u, v, method=graph_lib.GCMC.decode), levels))
    fns["all_ratings"] = jax.jit(lambda p, u, v: graph_lib.expected_rating(
        model.apply(p, u, v, method=graph_lib.GCMC.decode_all), levels))
  s["eval_fns"] = fns
  return fns


class GraphRecommender:
  """A graph model behind the evaluator interface (netrec_jax/eval/evaluator.py).

  Embeddings are computed once by propagating over the training graph; GC-MC predicts the
  expected rating under its decoder's softmax over rating levels, LightGCN only ranks (dot
  product of layer-mean embeddings).
  """

  def __init__(self, s: dict[str, Any], config, params, which: str, meta: dict[str, Any]):
    self.s, self.config, self.params, self.which, self.meta = s, config, params, which, meta
    self.store, self.split, self.model = s["store"], s["split"], s["model"]
    self.name = config.model.name
    self.is_gcmc = config.model.name == "gcmc"
    self.global_mean = float(s["global_mean"])
    self.trained = s["trained"]
    self.rating_note = "" if self.is_gcmc else (
        "not applicable: LightGCN is trained for ranking (BPR scores are not ratings)")
    self.cold_rule = ("training mean for a user or item with no training rating (the graph "
                      "gives it no message)" if self.is_gcmc else
                      "a node without training edges keeps its initial ego embedding")
    self.fold_in_method = (
        "not available for GC-MC (a new user needs new edges)" if self.is_gcmc else
        "one propagation step from the given movies: the new user's vector is the sum of their "
        "final item embeddings weighted 1 / sqrt(n_given x item degree), LightGCN's symmetric "
        "normalisation (the new user's own ego embedding is unknown and left out)")
    fns = _eval_functions(s)
    users, items = fns["embed"](params, fns["edges"])
    self._users, self._items = np.asarray(users), np.asarray(items)
    self._pair_ratings, self._all_ratings = fns.get("pair_ratings"), fns.get("all_ratings")
    self.batch = max(1, int(config.train.eval_batch_size))
    self.prediction_note = (
        f"expected rating over levels {s['level_values'].tolist()}, clipped to the rating "
        f"range {list(self.store.rating_range)}" if self.is_gcmc
        else "scores (dot products of layer-mean embeddings)")
    self.extra_ks = () if self.is_gcmc else (_valid_k(config),)

  # -- evaluator interface
  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray | None:
    if not self.is_gcmc:
      return None
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    out = np.empty(len(users), np.float64)
    for lo in range(0, len(users), self.batch):
      u, i = users[lo:lo + self.batch], items[lo:lo + self.batch]
      out[lo:lo + len(u)] = np.asarray(self._pair_ratings(self.params, self._users[u],
                                                          self._items[i]))
    cold = ~(self.trained["user"][users] & self.trained["item"][items])
    out[cold] = self.global_mean
    return out

  def score_items(self, users: np.ndarray) -> np.ndarray:
    users = np.asarray(users, np.int64)
    if not self.is_gcmc:
      return self._users[users] @ self._items.T
    scores = np.asarray(self._all_ratings(self.params, self._users[users], self._items),
                        np.float64)
    scores[:, ~self.trained["item"]] = self.global_mean
    scores[~self.trained["user"][users]] = self.global_mean
    return scores

  def item_vectors(self) -> np.ndarray:
    """Final item embeddings (GC-MC: after the dense layer; LightGCN: the layer mean)."""
    return self._items

  def user_vectors(self) -> np.ndarray:
    return self._users

  def biases(self) -> dict[str, np.ndarray]:
    raise NotImplementedError(f"{self.name} has no user/item bias terms")

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] scores for a new user who interacted with `items` (LightGCN; stars unused)."""
    if self.is_gcmc:
      raise NotImplementedError(f"{self.name}: a new user needs new graph edges and a new "
                                "propagation; fold-in is not implemented for GC-MC")
    items, _ = evaluator.check_fold_in_input(items, stars, self.store.n_items)
    degree = np.bincount(np.take(self.store.item, self.split.rows("train")),
                         minlength=self.store.n_items)[items]
    weight = 1.0 / np.sqrt(len(items) * np.maximum(degree, 1))
    user = (weight[:, None] * self._items[items]).sum(0)
    return (self._items @ user).astype(np.float32)


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
