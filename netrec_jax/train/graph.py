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

import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from netrec_jax.data import datasets
from netrec_jax.data import splits as splits_lib
from netrec_jax.eval import evaluator
from netrec_jax.models import graph as graph_lib
from netrec_jax.progress import Progress, quiet_library_logs
from netrec_jax.train import checkpoint as ckpt_lib
from netrec_jax.train import epochs as epochs_lib
from netrec_jax.train import input_pipeline, state as state_lib

GRAPH_MODELS = ("gcmc", "lightgcn")
# graph.* fields that change the saved state's shapes or meaning (checkpoint.py's
# COMPATIBILITY_KEYS does not cover this section, so we check it here).
SHAPE_KEYS = {
    "gcmc": ("gcmc_hidden", "gcmc_dense", "gcmc_accumulation", "gcmc_ordinal_sharing",
             "gcmc_dense_activation", "num_basis", "ema_decay", "gcmc_norm"),
    "lightgcn": ("layers", "embed_dim"),
}


# ---------------------------------------------------------------------------------- setup
def _check_config(config) -> None:
  g, name = config.graph, config.model.name
  if name not in GRAPH_MODELS:
    raise ValueError(f"model.name {name!r} is not a graph model; expected one of {GRAPH_MODELS}")
  problems = []
  if g.layers < 0:
    problems.append(f"graph.layers must be >= 0, got {g.layers}")
  if min(g.embed_dim, g.gcmc_hidden, g.gcmc_dense, g.num_basis, g.batch_size,
         g.bpr_negatives, g.eval_every) < 1:
    problems.append("graph.embed_dim, gcmc_hidden, gcmc_dense, num_basis, batch_size, "
                    "bpr_negatives and eval_every must be >= 1")
  if not 0 <= g.dropout < 1:
    problems.append(f"graph.dropout must be in [0, 1), got {g.dropout}")
  if not 0 <= g.ema_decay < 1:
    problems.append(f"graph.ema_decay must be in [0, 1), got {g.ema_decay}")
  if g.gcmc_accumulation not in ("stack", "sum"):
    problems.append(f"graph.gcmc_accumulation must be stack or sum, got {g.gcmc_accumulation!r}")
  if g.gcmc_norm not in ("symmetric", "left"):
    problems.append(f"graph.gcmc_norm must be symmetric or left, got {g.gcmc_norm!r}")
  if g.gcmc_dense_activation not in ("identity", "relu"):
    problems.append("graph.gcmc_dense_activation must be identity or relu, got "
                    f"{g.gcmc_dense_activation!r}")
  if g.edge_chunk < 0:
    problems.append(f"graph.edge_chunk must be >= 0, got {g.edge_chunk}")
  metric, _, k = g.valid_metric.partition("@")
  if metric not in ("recall", "ndcg") or not k.isdigit() or int(k) < 1:
    problems.append(f"graph.valid_metric must look like recall@20 or ndcg@20, got "
                    f"{g.valid_metric!r}")
  if problems:
    raise ValueError("bad graph config: " + "; ".join(problems))


def _valid_k(config) -> int:
  return int(config.graph.valid_metric.partition("@")[2])


def _relevance(config) -> float | None:
  """The comparison's rule: threshold <= 0 makes every held-out rating relevant."""
  t = config.compare.relevance_threshold
  return None if t <= 0 else float(t)


def _optimizer(config) -> optax.GradientTransformation:
  """Adam (both papers); LightGCN's L2 is in its loss, on the batch's ego embeddings only."""
  return optax.adam(config.optimizer.lr)


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
  _check_config(config)
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
  tx = _optimizer(config)
  ema = config.model.name == "gcmc" and config.graph.ema_decay > 0
  dummy_edges = {k: jnp.asarray(v[:, :n_data]) for k, v in host_edges.items()}

  def init(seed: int = 0) -> dict[str, Any]:
    rngs = {"params": jax.random.PRNGKey(seed), "dropout": jax.random.PRNGKey(seed + 1)}
    if config.model.name == "gcmc":
      params = model.init(rngs, dummy_edges, jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32))
    else:
      params = model.init(rngs, dummy_edges)
    tree = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
    if ema:
      tree["ema"] = jax.tree.map(jnp.zeros_like, params)  # debiased in _eval_params
    return tree

  trained_users = np.zeros(store.n_users, bool)
  trained_users[train_users] = True
  trained_items = np.zeros(store.n_items, bool)
  trained_items[train_items] = True
  return dict(store=store, split=split, rows=rows, mesh=mesh, n_data=n_data,
              host_edges=host_edges, model=model, tx=tx, init=init, ema=ema,
              levels_raw=levels_raw, level_values=level_values, global_mean=global_mean,
              train_users=train_users, train_items=train_items, level_of_edge=level_of_edge,
              trained={"user": trained_users, "item": trained_items})


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


def _check_graph_section(meta: dict[str, Any], config, where) -> None:
  saved = meta.get("config", {}).get("graph", {})
  problems = [f"graph.{k}: checkpoint {saved.get(k)!r}, config {config.graph[k]!r}"
              for k in SHAPE_KEYS[config.model.name]
              if k in saved and saved.get(k) != config.graph[k]]
  if problems:
    raise ckpt_lib.CheckpointError(f"{where}: checkpoint config is incompatible: "
                                   + "; ".join(problems))


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
    updates, opt_state = tx.update(grads, tree["opt_state"], tree["params"])
    params = optax.apply_updates(tree["params"], updates)
    new = {"params": params, "opt_state": opt_state, "step": tree["step"] + 1}
    if "ema" in tree:
      new["ema"] = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, tree["ema"], params)
    return new, loss

  return jax.jit(step, in_shardings=(replicated, edges_sh, batch_sh, replicated),
                 out_shardings=(replicated, replicated), donate_argnums=(0,))


def epoch_batches(config, s: dict[str, Any], epoch: int, positive_keys: np.ndarray | None):
  """Host batches of one epoch (seeded by epoch, so a resumed run sees the same ones)."""
  n_train = len(s["train_users"])
  n_data = s["n_data"]
  rng = np.random.default_rng([config.seed, epoch])
  if config.model.name == "gcmc" and config.graph.full_batch:
    size, order = n_train, np.arange(n_train)
  else:
    size, order = config.graph.batch_size, rng.permutation(n_train)
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
                                        config.graph.bpr_negatives, positive_keys))
    yield _pad(batch, size), len(idx)


def train_and_evaluate(config, workdir: str | os.PathLike) -> dict[str, Any]:
  """Trains a graph model into WORKDIR (resuming from its latest checkpoint); final metrics."""
  quiet_library_logs()
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  t_start = time.time()

  # ---- Data, graph and model.
  s = _setup(config)
  store, split, mesh = s["store"], s["split"], s["mesh"]
  replicated = NamedSharding(mesh, P())
  edges = _eval_functions(s)["edges"]  # put on the devices once, sharded over `data`
  batch_sh = input_pipeline.batch_sharding(mesh)
  step = make_step(config, s)
  is_gcmc = config.model.name == "gcmc"
  metric_name = "valid_rmse" if is_gcmc else f"valid_{config.graph.valid_metric}"
  lower_is_better = is_gcmc
  positive_keys = None
  if not is_gcmc:
    positive_keys = np.unique(s["train_users"] * store.n_items + s["train_items"])
  valid_data = _valid_eval_data(store, split, config) if not is_gcmc else None

  # ---- Resume or start.
  runs = epochs_lib.EpochCheckpoints(
      workdir, config, store, split, metric=metric_name[len("valid_"):],
      lower_is_better=lower_is_better, check=_check_graph_section,
      extra_meta={"valid_metric": metric_name, "global_mean": s["global_mean"],
                  "levels_raw": s["levels_raw"].tolist()})
  serialize = runs.serialize
  tree = runs.resume(epochs_lib.abstract_tree(s["init"], replicated))
  if tree is None:
    tree = jax.device_put(s["init"](config.seed), replicated)
  first_epoch = runs.first_epoch

  # ---- Epochs; validation, metrics and checkpoints every graph.eval_every epochs.
  n_train = len(s["train_users"])
  n_edges = int((s["host_edges"]["weight"] > 0).sum())
  total_epochs = config.train.epochs
  overall = Progress(f"{config.model.name} training", max(total_epochs - first_epoch, 1),
                     unit="epochs", every_s=config.train.log_every_s)
  losses, t_block, train_seconds, epochs_run = [], time.time(), 0.0, 0
  key0 = jax.random.PRNGKey(config.seed)
  for epoch in range(first_epoch, total_epochs):
    if runs.stop_early():
      logging.info("early stop: no validation improvement in %d evaluations",
                   config.train.early_stopping_patience)
      break
    t0 = time.time()
    for batch, _ in epoch_batches(config, s, epoch, positive_keys):
      key = jax.random.fold_in(key0, int(epoch) * 1_000_003 + len(losses))
      tree, loss = step(tree, edges, jax.device_put(batch, batch_sh), key)
      if serialize:
        jax.block_until_ready(loss)
      losses.append(loss)
    jax.block_until_ready(tree["step"])
    train_seconds += time.time() - t0
    epochs_run += 1
    overall(epoch - first_epoch + 1)
    if (epoch + 1) % config.graph.eval_every and epoch + 1 < total_epochs:
      continue
    # -- Validation and checkpoints.
    train_loss = float(jnp.mean(jnp.stack(losses)))
    if not np.isfinite(train_loss):
      raise FloatingPointError(f"loss became {train_loss} by epoch {epoch}; nothing saved")
    recommender = GraphRecommender(s, config, _eval_params(tree, config), which="training",
                                   meta={"epoch": epoch, "step": int(tree["step"])})
    valid = recommender.valid_metrics(valid_data)
    value = valid.get("rmse") if is_gcmc else valid.get(config.graph.valid_metric)
    block_seconds = time.time() - t_block
    record = {"epoch": epoch, "step": int(tree["step"]), "train_loss": train_loss,
              metric_name: value, "block_seconds": block_seconds,
              "train_seconds": train_seconds,
              "pairs_per_s": n_train * epochs_run / max(train_seconds, 1e-9),
              "edges_per_s": n_edges * len(losses) / max(train_seconds, 1e-9)}
    if not is_gcmc:
      record["valid_ndcg@%d" % _valid_k(config)] = valid.get(f"ndcg@{_valid_k(config)}")
    if jax.process_index() == 0:
      with open(workdir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    logging.info("epoch %d/%d: train loss %.4f, %s %s", epoch + 1, total_epochs, train_loss,
                 metric_name, value)
    runs.end_epoch(epoch, tree, value, step=int(tree["step"]))
    losses, t_block, train_seconds, epochs_run = [], time.time(), 0.0, 0
  runs.close()

  # ---- Final metrics from the best checkpoint, restored.
  return epochs_lib.write_final_metrics(
      workdir, load_recommender, rate_keys=("pairs_per_s", "edges_per_s"),
      best_epoch=runs.best_epoch, evaluations=len(epochs_lib.read_log(workdir)),
      train_seconds=time.time() - t_start,
      graph={"users": store.n_users, "items": store.n_items, "edges": n_edges,
             "edge_shards": s["n_data"]})


def _eval_params(tree, config):
  """GC-MC evaluates the moving average of params (the paper's test-time weights).

  The average starts at zero and is divided by 1 - decay^step (as Adam's moments), so early
  evaluations are not pulled towards the initial weights.
  """
  if "ema" not in tree:
    return tree["params"]
  correction = 1.0 - config.graph.ema_decay ** max(int(tree["step"]), 1)
  return jax.tree.map(lambda e: e / correction, tree["ema"])


def _valid_view(split: splits_lib.Split) -> splits_lib.Split:
  """The split with validation rows as its test part, so the evaluator ranks against them."""
  a = np.asarray(split.assignment)
  assignment = np.where(a == splits_lib.VALID, splits_lib.TEST,
                        np.where(a == splits_lib.TEST, splits_lib.UNUSED, a)).astype(np.int8)
  return splits_lib.Split(name=f"{split.name}:valid", protocol=split.protocol,
                          assignment=assignment, params=split.params, info=split.info)


def _valid_eval_data(store, split, config) -> evaluator.EvalData | None:
  view = _valid_view(split)
  if len(split.rows("valid")) == 0:
    return None
  return evaluator.prepare(store, view, relevance_threshold=_relevance(config))


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

  # -- metrics
  def valid_metrics(self, valid_data: evaluator.EvalData | None = None) -> dict[str, Any]:
    """Validation RMSE (GC-MC) or ranking metrics at graph.valid_metric's K (LightGCN)."""
    if self.is_gcmc:
      return self._rating_part("valid")
    if valid_data is None:
      return {"n": 0}
    k = _valid_k(self.config)
    result = evaluator.evaluate(self, valid_data, ks=(k,),
                                user_batch=self.config.compare.user_batch)
    return result["ranking"]

  def _rating_part(self, part: str) -> dict[str, Any]:
    return evaluator.rating_metrics_on(self, self.store, self.split.rows(part))

  def evaluate_splits(self) -> dict[str, Any]:
    """Metrics on the split's valid and test rows, labelled with protocol and data."""
    store, split = self.store, self.split
    result = {"protocol": split.protocol, "split": split.name, "store": store.name,
              "store_fingerprint": store.fingerprint, "model": self.name,
              "task": "explicit" if self.is_gcmc else "implicit",
              "checkpoint": self.which, "checkpoint_epoch": int(self.meta["epoch"]),
              "checkpoint_step": int(self.meta["step"]), "cold_rule": self.cold_rule}
    if self.is_gcmc:
      result["predictions"] = (f"expected rating over levels {self.s['level_values'].tolist()}, "
                               f"clipped to the rating range {list(store.rating_range)}")
      for part in ("valid", "test"):
        result[part] = self._rating_part(part)
      return result
    ks = tuple(sorted(set(self.config.compare.ks) | {_valid_k(self.config)}))
    result["predictions"] = "scores (dot products of layer-mean embeddings)"
    valid_data = _valid_eval_data(store, split, self.config)
    result["valid"] = ({"n": 0} if valid_data is None else evaluator.evaluate(
        self, valid_data, ks=ks, user_batch=self.config.compare.user_batch)["ranking"])
    if len(split.rows("test")):
      test_data = evaluator.prepare(store, split, relevance_threshold=_relevance(self.config))
      test = evaluator.evaluate(self, test_data, ks=ks, user_batch=self.config.compare.user_batch)
      result["test"] = test["ranking"]
      result["ranking_protocol"] = test["ranking"]["protocol"]
    else:
      result["test"] = {"n": 0}
    return result


# -------------------------------------------------------------------------------- restore
def load_recommender(workdir: str | os.PathLike, config=None, which: str = "best"
                     ) -> GraphRecommender:
  """The best (or latest) checkpoint of a graph-model run, behind the evaluator interface.

  With `config`, the checkpoint must fit it (same store fingerprint, model and graph shapes);
  its data and mesh sections say where the store is now and which devices to use.
  """
  checkpoints, which, meta, saved = epochs_lib.open_run(workdir, config, which,
                                                        check=_check_graph_section)
  if config is not None:
    with saved.unlocked():
      saved.train.eval_batch_size = config.train.eval_batch_size
      saved.compare = config.compare
  s = _setup(saved, meta=meta)
  if s["store"].fingerprint != meta["store_fingerprint"]:
    raise ckpt_lib.CheckpointError(
        f"{workdir}: checkpoint was trained on store {meta['store_fingerprint']}, but its config "
        f"now builds {s['store'].fingerprint}")
  replicated = NamedSharding(s["mesh"], P())
  tree, meta = checkpoints.restore(which, epochs_lib.abstract_tree(s["init"], replicated))
  checkpoints.close()
  return GraphRecommender(s, saved, _eval_params(tree, saved), which, meta)


def evaluate_checkpoint(config, restore_from: str | os.PathLike, workdir: str | os.PathLike,
                        which: str = "best") -> dict[str, Any]:
  """Restores a graph-model run and evaluates it on config's split into WORKDIR."""
  return epochs_lib.evaluate_checkpoint(load_recommender, config, restore_from, workdir, which)
