"""train_and_evaluate(config, workdir) and evaluate_checkpoint(...): the training loop.

Order of work (as flax's examples and big_vision do it):
  Set up data      store + split from the config; training mean; optional side features
  Set up mesh      (data, model) mesh; state created already sharded
  Resume           WORKDIR/checkpoints/latest if present, else from scratch
  Train loop       host-fed or device-resident epochs; NaN check before any checkpoint
  Validate         RMSE/MAE (explicit) or sampled log loss (implicit) each epoch; early stop,
                   reduce-on-plateau, best checkpoint
  Final            best state evaluated on validation and test -> final_metrics.json
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from netrec_jax import configs, models
from netrec_jax.data import datasets, features
from netrec_jax.data.splits import Split
from netrec_jax.data.store import RatingStore, atomic_write_text
from netrec_jax.eval import evaluator
from netrec_jax.progress import Progress, quiet_library_logs
from netrec_jax.train import checkpoint as ckpt_lib
from netrec_jax.train import input_pipeline, sparse, state as state_lib, steps


class NonFiniteLossError(FloatingPointError):
  pass


# ------------------------------------------------------------------------------ optimizers
def learning_rate_schedule(peak: float, opt_cfg: Any, total_steps: int) -> optax.Schedule:
  if opt_cfg.schedule == "constant":
    return optax.constant_schedule(peak)
  if opt_cfg.schedule == "warmup_cosine":
    warmup = min(int(opt_cfg.warmup_steps), max(total_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1),
                                              end_value=peak * opt_cfg.final_lr_fraction)
  raise ValueError(f"optimizer.schedule must be constant or warmup_cosine, got "
                   f"{opt_cfg.schedule!r}")


def dense_optimizer(opt_cfg: Any, total_steps: int) -> optax.GradientTransformation:
  """optax chain for the Flax params: clipping, then adam / adamw / sgd on a schedule."""
  lr = learning_rate_schedule(opt_cfg.lr, opt_cfg, total_steps)
  parts = []
  if opt_cfg.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(opt_cfg.clip_norm))
  if opt_cfg.dense == "adam":
    parts.append(optax.adam(lr))
  elif opt_cfg.dense == "adamw":
    parts.append(optax.adamw(lr, weight_decay=opt_cfg.weight_decay))
  elif opt_cfg.dense == "sgd":
    parts.append(optax.sgd(lr, momentum=opt_cfg.momentum or None))
  else:
    raise ValueError(f"optimizer.dense must be adam, adamw or sgd, got {opt_cfg.dense!r}")
  return optax.chain(*parts)


# ----------------------------------------------------------------------------------- setup
@dataclasses.dataclass
class Experiment:
  """Everything derived from a config and its data that training and evaluation share."""

  config: ml_collections.ConfigDict
  store: RatingStore
  split: Split
  rows: dict[str, np.ndarray]
  global_mean: float
  mesh: Any
  model: Any
  specs: dict[str, models.TableSpec]
  init: Any
  shardings: Any
  aux: dict[str, jax.Array]
  predict: Any
  steps_per_epoch: int
  total_steps: int
  dense_tx: optax.GradientTransformation


def _validate_config(config: Any) -> None:
  t = config.train
  for name in ("epochs", "batch_size", "eval_batch_size"):
    if t[name] <= 0:
      raise ValueError(f"train.{name} must be positive, got {t[name]}")
  if config.optimizer.sparse not in sparse.SPARSE_OPTIMIZERS:
    raise ValueError(f"optimizer.sparse must be one of {sparse.SPARSE_OPTIMIZERS}, got "
                     f"{config.optimizer.sparse!r}")
  if config.task not in steps.TASKS:
    raise ValueError(f"task must be one of {steps.TASKS}, got {config.task!r}")
  if t.input_pipeline not in ("host", "device"):
    raise ValueError(f"train.input_pipeline must be host or device, got {t.input_pipeline!r}")


def _side_features(store: RatingStore, split: Split, mesh) -> dict[str, jax.Array]:
  """Standardized [log count, mean rating] per user and item, from training rows only."""
  feats = features.split_features(store, split)
  out = {}
  for entity in ("user", "item"):
    x = np.stack([feats[entity]["log_n_ratings"], feats[entity]["mean_rating"]], 1)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
    out[f"{entity}_features"] = jax.device_put(x.astype(np.float32), NamedSharding(mesh, P()))
  return out


def setup(config: ml_collections.ConfigDict, global_mean: float | None = None) -> Experiment:
  _validate_config(config)
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  if split is None:
    raise ValueError("training needs a split (split.kind must not be 'none')")
  rows = {part: split.rows(part) for part in ("train", "valid", "test")}
  if len(rows["train"]) == 0:
    raise ValueError(f"split {split.name} has no training rows")
  if global_mean is None:
    global_mean = float(store.stars(rows["train"]).astype(np.float64).mean())
  mesh = state_lib.make_mesh(config.mesh)
  model = models.build_model(config.model, global_mean if config.task == "explicit" else 0.0)
  specs = model.table_specs()
  sizes = state_lib.table_sizes(specs, store.n_users, store.n_items, mesh)
  steps_per_epoch = (len(rows["train"]) // config.train.batch_size
                     if config.train.input_pipeline == "device"
                     else -(-len(rows["train"]) // config.train.batch_size))
  total_steps = steps_per_epoch * config.train.epochs
  dense_tx = dense_optimizer(config.optimizer, total_steps)
  aux = _side_features(store, split, mesh) if config.model.use_features else {}
  n_features = 4 if config.model.use_features else 0
  init = state_lib.state_initializer(model, specs, sizes, dense_tx, config.optimizer.sparse,
                                     config.seed, n_features)
  shardings = state_lib.state_shardings(jax.eval_shape(init), mesh)
  replicated = NamedSharding(mesh, P())
  predict = jax.jit(steps.make_predict_step(model, specs),
                    in_shardings=(shardings, input_pipeline.batch_sharding(mesh), replicated),
                    out_shardings=input_pipeline.batch_sharding(mesh))
  return Experiment(config, store, split, rows, global_mean, mesh, model, specs, init, shardings,
                    aux, predict, steps_per_epoch, total_steps, dense_tx)


def _train_step(exp: Experiment):
  cfg = exp.config
  sparse_lr = learning_rate_schedule(cfg.optimizer.sparse_lr, cfg.optimizer, exp.total_steps)
  return steps.make_train_step(
      exp.model, exp.specs, task=cfg.task, dense_tx=exp.dense_tx,
      sparse_kind=cfg.optimizer.sparse, sparse_lr=sparse_lr, sparse_l2=cfg.optimizer.embed_l2,
      sparse_hyper={}, n_items=exp.store.n_items, num_negatives=cfg.train.num_negatives)


# ------------------------------------------------------------------------------ evaluation
def predict_rows(exp: Experiment, state, rows: np.ndarray) -> np.ndarray:
  """Scores for store rows, in their order, batch by batch on the devices."""
  return predict_pairs(exp, state, np.take(exp.store.user, rows), np.take(exp.store.item, rows))


def predict_pairs(exp: Experiment, state, users: np.ndarray, items: np.ndarray) -> np.ndarray:
  """Scores for (dense user, dense item) pairs, batch by batch on the devices."""
  size = exp.config.train.eval_batch_size
  size = -(-size // exp.mesh.shape[state_lib.DATA]) * exp.mesh.shape[state_lib.DATA]
  sharding = input_pipeline.batch_sharding(exp.mesh)
  out = np.empty(len(users), np.float32)
  for lo in range(0, len(users), size):
    batch = {"user": np.asarray(users[lo:lo + size], np.int32),
             "item": np.asarray(items[lo:lo + size], np.int32)}
    n = len(batch["user"])
    batch = {k: np.pad(v, (0, size - n)) for k, v in batch.items()}
    scores = exp.predict(state, input_pipeline.put_batch(batch, sharding), exp.aux)
    out[lo:lo + n] = _to_host(scores)[:n]
  return out


def _to_host(x: jax.Array) -> np.ndarray:
  """The whole of a (possibly multi-process) sharded array on every host."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def rating_metrics(exp: Experiment, state, part: str) -> dict[str, float]:
  """RMSE and MAE in float64, predictions clipped to the store's rating range."""
  rows = exp.rows[part]
  if len(rows) == 0:
    return {"n": 0}
  lo, hi = exp.store.rating_range
  pred = np.clip(predict_rows(exp, state, rows).astype(np.float64), lo, hi)
  err = pred - exp.store.stars(rows).astype(np.float64)
  return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
          "n": int(len(rows))}


def implicit_metrics(exp: Experiment, state, part: str, negatives: int = 4) -> dict[str, float]:
  """Log loss on held-out positives and seeded uniform negatives (the training objective)."""
  rows = exp.rows[part]
  if len(rows) == 0:
    return {"n": 0}
  pos = predict_rows(exp, state, rows).astype(np.float64)
  rng = np.random.default_rng(12345)
  neg_items = rng.integers(0, exp.store.n_items, (len(rows), negatives)).astype(np.int32)
  users = np.repeat(np.take(exp.store.user, rows), negatives)
  neg = predict_pairs(exp, state, users, neg_items.reshape(-1)).astype(np.float64)
  loss = np.concatenate([np.logaddexp(0, -pos), np.logaddexp(0, neg)])
  return {"logloss": float(loss.mean()), "n": int(len(rows))}


def metrics_for(exp: Experiment, state, part: str) -> dict[str, float]:
  if exp.config.task == "explicit":
    return rating_metrics(exp, state, part)
  return implicit_metrics(exp, state, part)


def monitored(exp: Experiment) -> str:
  return "rmse" if exp.config.task == "explicit" else "logloss"


# ---------------------------------------------------------------------------------- train
def _check_finite(losses: list | jax.Array, first_step: int, epoch: int) -> float:
  """Mean of the step losses; raises naming the first step whose loss is not finite."""
  if isinstance(losses, list):
    losses = jnp.stack(losses) if losses else jnp.zeros(0)
  values = np.asarray(jax.device_get(losses))
  bad = np.flatnonzero(~np.isfinite(values))
  if len(bad):
    raise NonFiniteLossError(
        f"loss became {values[bad[0]]} at step {first_step + int(bad[0])} (epoch {epoch}); "
        "stopped before writing a checkpoint. Lower the learning rates, add clipping "
        "(optimizer.clip_norm) or check the data.")
  return float(values.mean()) if len(values) else float("nan")


def _meta(exp: Experiment, step: int, epoch: int, history: dict[str, Any]) -> dict[str, Any]:
  return {"config": exp.config.to_dict(), "step": step, "epoch": epoch,
          "store_fingerprint": exp.store.fingerprint, "store_name": exp.store.name,
          "split": exp.split.name, "protocol": exp.split.protocol,
          "split_fingerprint": exp.split.info.get("fingerprint"),
          "global_mean": exp.global_mean, "history": history,
          "jax_version": jax.__version__, "devices": jax.device_count()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike
                       ) -> dict[str, Any]:
  """Trains config's model on its data, checkpoints into workdir, returns final metrics."""
  quiet_library_logs()
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  exp = setup(config)
  cfg = config.train
  logging.info("data: %s, split %s (protocol %s): train %d, valid %d, test %d",
               exp.store.name, exp.split.name, exp.split.protocol, len(exp.rows["train"]),
               len(exp.rows["valid"]), len(exp.rows["test"]))
  logging.info("mesh %s on %d %s devices; tables %s", dict(exp.mesh.shape), jax.device_count(),
               jax.devices()[0].platform,
               {k: (v.entity, v.dim) for k, v in exp.specs.items()})

  # ---- Resume or start from scratch.
  checkpoints = ckpt_lib.Checkpoints(workdir)
  history = {"best_epoch": None, "best_metric": None, "epochs_without_improvement": 0}
  start_epoch = 0
  if checkpoints.has("latest") and cfg.resume:
    meta = checkpoints.read_meta("latest")
    ckpt_lib.check_compatible(meta, config.to_dict(), exp.store.fingerprint,
                              checkpoints.root / "latest")
    state, meta = checkpoints.restore("latest", state_lib.abstract_state(exp.init, exp.mesh))
    start_epoch, history = meta["epoch"] + 1, meta["history"]
    logging.info("resumed from %s at epoch %d, step %d", checkpoints.root / "latest",
                 start_epoch, int(state.step))
  else:
    state = jax.jit(exp.init, out_shardings=exp.shardings)()

  # ---- Compile the step for the chosen input pipeline.
  replicated = NamedSharding(exp.mesh, P())
  train_step = _train_step(exp)
  if cfg.input_pipeline == "device" and jax.process_count() > 1:
    raise ValueError("train.input_pipeline=device is single-process; use host with several "
                     "processes (each reads its slice of every batch)")
  if cfg.input_pipeline == "device":
    columns = input_pipeline.device_columns(exp.store, exp.rows["train"], exp.mesh)
    epoch_fn, _ = input_pipeline.make_device_epoch(train_step, len(exp.rows["train"]),
                                                   cfg.batch_size, exp.mesh)
    epoch_fn = jax.jit(epoch_fn, in_shardings=(exp.shardings, replicated, replicated,
                                               replicated),
                       out_shardings=(exp.shardings, replicated), donate_argnums=0)
  else:
    batches = input_pipeline.HostBatches(exp.store, exp.rows["train"], cfg.batch_size,
                                         config.seed, exp.mesh, prefetch=cfg.prefetch)
    step_fn = jax.jit(train_step, in_shardings=(exp.shardings,
                                                input_pipeline.batch_sharding(exp.mesh),
                                                replicated),
                      out_shardings=(exp.shardings, replicated), donate_argnums=0)

  # XLA's CPU runtime can deadlock when consecutive multi-device programs with collectives are
  # in flight at once on few cores (seen here: 4 fake devices on 2 cores). On CPU we wait for
  # each step; accelerators keep asynchronous dispatch.
  serialize_steps = jax.devices()[0].platform == "cpu" and jax.device_count() > 1
  metric = monitored(exp)
  log_path = workdir / "metrics.jsonl"
  train_started = time.time()
  epochs_run = 0
  for epoch in range(start_epoch, cfg.epochs):
    # ---- One epoch.
    t0 = time.time()
    first_step = int(state.step)
    if cfg.input_pipeline == "device":
      order = input_pipeline.epoch_order(len(exp.rows["train"]), config.seed, epoch, exp.mesh)
      state, step_metrics = epoch_fn(state, columns, exp.aux, order)
      train_loss = _check_finite(step_metrics["loss"], first_step, epoch)
      n_seen = exp.steps_per_epoch * cfg.batch_size
    else:
      progress = Progress(f"epoch {epoch}", len(batches), "steps", every_s=cfg.log_every_s)
      losses = []
      for k, batch in enumerate(batches.epoch(epoch)):
        state, m = step_fn(state, batch, exp.aux)
        if serialize_steps:
          jax.block_until_ready(m["loss"])
        losses.append(m["loss"])
        if (k + 1) % cfg.check_every_steps == 0:
          _check_finite(losses[-cfg.check_every_steps:], first_step + k + 1 -
                        cfg.check_every_steps, epoch)
        progress(k + 1)
      train_loss = _check_finite(losses, first_step, epoch)
      n_seen = len(exp.rows["train"])
    jax.block_until_ready(state.step)
    epoch_seconds = time.time() - t0

    # ---- Validate, track the best, early stopping and plateau.
    valid = metrics_for(exp, state, "valid") if len(exp.rows["valid"]) else {}
    value = valid.get(metric)
    improved = value is not None and (history["best_metric"] is None or
                                      value < history["best_metric"] - cfg.min_delta)
    if improved:
      history.update(best_metric=value, best_epoch=epoch, epochs_without_improvement=0)
    else:
      history["epochs_without_improvement"] += 1
      if (config.optimizer.plateau_patience > 0 and
          history["epochs_without_improvement"] % config.optimizer.plateau_patience == 0):
        state = state.replace(lr_scale=state.lr_scale * config.optimizer.plateau_factor)
    record = {"epoch": epoch, "step": int(state.step), "train_loss": train_loss,
              **{f"valid_{k}": v for k, v in valid.items() if k != "n"},
              "lr_scale": float(state.lr_scale), "epoch_seconds": epoch_seconds,
              "ratings_per_s": n_seen / epoch_seconds, "time": time.time()}
    if jax.process_index() == 0:
      with open(log_path, "a") as f:
        f.write(json.dumps(record) + "\n")
    remaining = (cfg.epochs - epoch - 1) * (time.time() - train_started) / (epochs_run + 1)
    logging.info("epoch %d/%d: train loss %.4f, valid %s %s, %.1fs, %.2fM ratings/s, ETA %.0fs",
                 epoch + 1, cfg.epochs, train_loss, metric,
                 f"{value:.4f}" if value is not None else "n/a", epoch_seconds,
                 n_seen / epoch_seconds / 1e6, remaining)

    # ---- Checkpoint (only after the finite check above).
    meta = _meta(exp, int(state.step), epoch, history)
    if improved or value is None:
      checkpoints.save("best", int(state.step), state, meta)
    checkpoints.save("latest", int(state.step), state, meta)
    if serialize_steps:
      checkpoints.wait()
    epochs_run += 1
    if cfg.early_stopping_patience > 0 and \
        history["epochs_without_improvement"] >= cfg.early_stopping_patience:
      logging.info("early stopping: no %s improvement for %d epochs", metric,
                   cfg.early_stopping_patience)
      break
  checkpoints.wait()
  train_seconds = time.time() - train_started

  # ---- Final: best state on validation and test.
  final = evaluate_state_from(exp, checkpoints, "best" if checkpoints.has("best") else "latest")
  final.update(train_seconds=train_seconds, epochs_run=epochs_run,
               best_epoch=history["best_epoch"])
  checkpoints.close()
  if jax.process_index() == 0:
    _write_json(workdir / "final_metrics.json", final)
  return final


def evaluate_state_from(exp: Experiment, checkpoints: ckpt_lib.Checkpoints, which: str
                        ) -> dict[str, Any]:
  state, meta = checkpoints.restore(which, state_lib.abstract_state(exp.init, exp.mesh))
  result = {
      "protocol": exp.split.protocol, "split": exp.split.name, "store": exp.store.name,
      "store_fingerprint": exp.store.fingerprint, "model": exp.config.model.name,
      "task": exp.config.task, "checkpoint": which, "checkpoint_step": int(meta["step"]),
      "checkpoint_epoch": int(meta["epoch"]),
      "predictions": ("clipped to the rating range " + str(list(exp.store.rating_range))
                      if exp.config.task == "explicit" else "logits"),
      "valid": metrics_for(exp, state, "valid"),
      "test": metrics_for(exp, state, "test"),
  }
  return result


class JaxRecommender:
  """A trained JAX model behind the evaluator interface (netrec_jax.eval.evaluator).

  Besides scoring, it exposes what using a trained model needs (launch.py's recommend /
  similar / analyze / serve modes): the store and split it was trained on, its embeddings and
  biases as host arrays, and `fold_in` for a new user who rated a few movies.
  """

  # A new user's vector from a handful of ratings: gradient fold-in settings (NCF / hybrid).
  FOLD_IN_STEPS = 200
  FOLD_IN_LR = 0.05
  FOLD_IN_NEGATIVES = 4  # implicit models: sampled unrated items per given movie

  def __init__(self, exp: Experiment, state, name: str | None = None):
    self.exp, self.state = exp, state
    self.store, self.split = exp.store, exp.split
    self.name = name or exp.config.model.name
    self.rating_note = ("not applicable: trained for implicit feedback (scores are logits)"
                        if exp.config.task == "implicit" else "")
    self.cold_rule = ("global mean + learned biases of the known side (unseen rows keep their "
                      "initial ~0 embeddings)")
    self._user_tables = sorted(n for n, s in exp.specs.items() if s.entity == models.USER)
    self._item_tables = sorted(n for n, s in exp.specs.items() if s.entity == models.ITEM)
    closed_form = exp.config.model.name == "mf" and exp.config.task == "explicit"
    l2 = exp.config.optimizer.embed_l2
    if closed_form:
      self.fold_in_method = (
          "closed-form ridge regression for the user vector and bias, item factors and biases "
          f"fixed, global mean {exp.global_mean:.3f}, lambda = n_ratings * embed_l2 / 2 "
          f"(embed_l2={l2:g}, the training objective's per-rating L2)")
    else:
      target = ("squared error to the given stars" if exp.config.task == "explicit" else
                f"log loss, given movies as positives vs {self.FOLD_IN_NEGATIVES} sampled "
                "movies each as negatives")
      self.fold_in_method = (
          f"no closed form for {exp.config.model.name}: {self.FOLD_IN_STEPS} Adam steps (lr "
          f"{self.FOLD_IN_LR:g}) on a new user embedding ({', '.join(self._user_tables)}) from "
          f"the mean user, towers and item embeddings fixed, {target} + per-rating L2 "
          f"{l2:g}" + ("; user side features set to the average user's" if exp.aux else ""))
    self._score_user_rows = jax.jit(self._make_score_user_rows())
    self._score_users = jax.jit(self._make_score_users())
    self._fold_in_steps = None

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray | None:
    if self.exp.config.task == "implicit":
      return None
    return predict_pairs(self.exp, self.state, users, items)

  def score_items(self, users: np.ndarray) -> np.ndarray:
    """[len(users), n_items] scores: user rows gathered on device, never repeated on the host.

    Users go in chunks of at most eval_batch_size // n_items (the memory of one predict
    batch), each padded to a power of two so only a few shapes ever compile. Several
    processes use the host-fed predict_pairs path instead (it gathers across hosts).
    """
    n_items = self.exp.store.n_items
    users = np.asarray(users, np.int32).reshape(-1)
    if jax.process_count() > 1:
      scores = predict_pairs(self.exp, self.state, np.repeat(users, n_items),
                             np.tile(np.arange(n_items), len(users)))
      return scores.reshape(len(users), n_items)
    chunk = max(1, self.exp.config.train.eval_batch_size // max(n_items, 1))
    out = np.empty((len(users), n_items), np.float32)
    for lo in range(0, len(users), chunk):
      part = users[lo:lo + chunk]
      size = min(1 << int(np.ceil(np.log2(len(part)))), chunk) if len(part) > 1 else 1
      padded = np.pad(part, (0, size - len(part)))
      scores = self._score_users(self.state, padded, self.exp.aux)
      out[lo:lo + len(part)] = np.asarray(jax.device_get(scores))[:len(part)]
    return out

  # ------------------------------------------------------------------ embeddings and biases
  def _table(self, name: str) -> np.ndarray:
    """One embedding table on the host, without the rows that pad it to the mesh."""
    n = self.store.n_users if self.exp.specs[name].entity == models.USER else self.store.n_items
    return np.asarray(jax.device_get(self.state.tables[name]))[:n]

  def _vectors(self, tables: list[str], entity: str) -> np.ndarray:
    names = [n for n in tables if not n.endswith("_bias")]
    if not names:
      raise NotImplementedError(f"{self.name} has no {entity} embedding table")
    # NeuMF has two embeddings per entity (GMF and MLP): concatenated, one vector each.
    return np.concatenate([self._table(n) for n in names], axis=1)

  def item_vectors(self) -> np.ndarray:
    """[n_items, d] item embeddings (NeuMF: GMF and MLP embeddings side by side)."""
    return self._vectors(self._item_tables, "item")

  def user_vectors(self) -> np.ndarray:
    """[n_users, d] user embeddings (NeuMF: GMF and MLP embeddings side by side)."""
    return self._vectors(self._user_tables, "user")

  def biases(self) -> dict[str, np.ndarray]:
    """{"user": [n_users], "item": [n_items]} learned biases, for MF with biases and hybrid."""
    if "user_bias" not in self.exp.specs or "item_bias" not in self.exp.specs:
      raise NotImplementedError(f"{self.name} has no user/item bias terms")
    return {"user": self._table("user_bias")[:, 0], "item": self._table("item_bias")[:, 0]}

  # ------------------------------------------------------------------------------ fold-in
  def _variables(self, state) -> dict[str, Any]:
    variables = {"params": state.params}
    if jax.tree.leaves(state.batch_stats):
      variables["batch_stats"] = state.batch_stats
    return variables

  def _features(self, aux, items: jax.Array) -> jax.Array | None:
    """Side features for a new user and `items`: the user's are the (standardized) mean, 0."""
    if not aux:
      return None
    item_features = aux["item_features"][items]
    user_features = jnp.zeros((items.shape[0], aux["user_features"].shape[1]),
                              item_features.dtype)
    return jnp.concatenate([user_features, item_features], -1)

  def _rows(self, state, user_rows: dict[str, jax.Array], items: jax.Array):
    """Model inputs pairing one (new) user's rows with each of `items`."""
    rows = {n: jnp.broadcast_to(user_rows[n][None], (items.shape[0], user_rows[n].shape[0]))
            for n in self._user_tables}
    rows.update({n: state.tables[n][items] for n in self._item_tables})
    return rows

  def _make_score_user_rows(self):
    model, n_items = self.exp.model, self.store.n_items

    def score(state, user_rows, aux):
      items = jnp.arange(n_items)
      return model.apply(self._variables(state), self._rows(state, user_rows, items),
                         self._features(aux, items), train=False)

    return score

  def _make_score_users(self):
    model, specs, n_items = self.exp.model, self.exp.specs, self.store.n_items

    def score(state, users, aux):
      pair_users = jnp.repeat(users, n_items)
      pair_items = jnp.tile(jnp.arange(n_items), users.shape[0])
      rows = {n: state.tables[n][pair_users if spec.entity == models.USER else pair_items]
              for n, spec in specs.items()}
      features = steps.gather_features(aux, pair_users, pair_items)
      out = model.apply(self._variables(state), rows, features, train=False)
      return out.reshape(users.shape[0], n_items)

    return score

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] scores for a new user who rated `items` (dense indices) with `stars`."""
    items, stars = evaluator.check_fold_in_input(items, stars, self.store.n_items)
    if self.exp.config.model.name == "mf" and self.exp.config.task == "explicit":
      user_rows = self._ridge_user_rows(items, stars)
    else:
      user_rows = self._gradient_user_rows(items, stars)
    scores = self._score_user_rows(self.state, user_rows, self.exp.aux)
    return np.asarray(jax.device_get(scores), np.float32)

  def _ridge_user_rows(self, items: np.ndarray, stars: np.ndarray) -> dict[str, jax.Array]:
    """argmin_{p, b} sum_j (r_j - mu - b_j - b - <p, q_j>)^2 + lambda (|p|^2 + b^2).

    lambda = n * embed_l2 / 2 is the objective SGD/Adagrad training minimises for one user
    (each rating adds embed_l2 * row to the row's gradient of the squared error).
    """
    q = self._table("item_vec")[items].astype(np.float64)
    target = stars - self.exp.global_mean
    with_bias = "item_bias" in self.exp.specs
    if with_bias:
      target = target - self._table("item_bias")[items, 0].astype(np.float64)
      q = np.concatenate([q, np.ones((len(items), 1))], axis=1)
    lam = max(len(items) * self.exp.config.optimizer.embed_l2 / 2, 1e-6)
    solution = np.linalg.solve(q.T @ q + lam * np.eye(q.shape[1]), q.T @ target)
    dim = self.exp.specs["user_vec"].dim
    rows = {"user_vec": jnp.asarray(solution[:dim], jnp.float32)}
    if with_bias:
      rows["user_bias"] = jnp.asarray(solution[dim:], jnp.float32)
    return rows

  def _gradient_user_rows(self, items: np.ndarray, stars: np.ndarray) -> dict[str, jax.Array]:
    """A new user's rows by Adam on the training loss, everything else fixed.

    Inputs are padded to a power of two (weights 0) so a handful of shapes compile once.
    """
    implicit = self.exp.config.task == "implicit"
    if implicit:
      rng = np.random.default_rng(len(items))
      negatives = rng.integers(0, self.store.n_items, len(items) * self.FOLD_IN_NEGATIVES)
      labels = np.concatenate([np.ones(len(items)), np.zeros(len(negatives))])
      items = np.concatenate([items, negatives])
    else:
      labels = stars
    size = max(8, 1 << int(np.ceil(np.log2(len(items)))))
    pad = size - len(items)
    batch = {"item": jnp.asarray(np.pad(items, (0, pad)), jnp.int32),
             "label": jnp.asarray(np.pad(labels, (0, pad)), jnp.float32),
             "weight": jnp.asarray(np.pad(np.ones(len(items)), (0, pad)), jnp.float32)}
    n_rated = float(len(stars))
    if self._fold_in_steps is None:
      self._fold_in_steps = jax.jit(self._make_fold_in_steps(implicit))
    init = {n: jnp.asarray(self._table(n).mean(0)) for n in self._user_tables}
    return self._fold_in_steps(self.state, self.exp.aux, init, batch, n_rated)

  def _make_fold_in_steps(self, implicit: bool):
    model, l2 = self.exp.model, self.exp.config.optimizer.embed_l2
    tx = optax.adam(self.FOLD_IN_LR)

    def run(state, aux, user_rows, batch, n_rated):
      variables = self._variables(state)
      features = self._features(aux, batch["item"])

      def loss_fn(rows):
        out = model.apply(variables, self._rows(state, rows, batch["item"]), features,
                          train=False)
        per_example = (optax.sigmoid_binary_cross_entropy(out, batch["label"]) if implicit
                       else jnp.square(out - batch["label"]))
        penalty = sum(jnp.sum(jnp.square(r)) for r in jax.tree.leaves(rows))
        return jnp.sum(per_example * batch["weight"]) + n_rated * l2 / 2 * penalty

      def step(_, carry):
        rows, opt_state = carry
        grads = jax.grad(loss_fn)(rows)
        updates, opt_state = tx.update(grads, opt_state, rows)
        return optax.apply_updates(rows, updates), opt_state

      rows, _ = jax.lax.fori_loop(0, self.FOLD_IN_STEPS, step, (user_rows, tx.init(user_rows)))
      return rows

    return run


def load_recommender(workdir: str | os.PathLike, config: ml_collections.ConfigDict | None = None,
                     which: str = "best") -> JaxRecommender:
  """The best (or latest) state of a training run, ready for the evaluator."""
  checkpoints = ckpt_lib.Checkpoints(workdir)
  if not checkpoints.has(which):
    which = "latest"
  meta = checkpoints.read_meta(which)
  saved = configs.from_checkpoint(meta["config"])
  if config is not None:  # where the data is and how to run may differ; the model may not
    store = datasets.open_or_build(config.data)
    ckpt_lib.check_compatible(meta, config.to_dict(), store.fingerprint,
                              checkpoints.root / which)
    with saved.unlocked():
      saved.data = config.data
      saved.mesh = config.mesh
      saved.train.eval_batch_size = config.train.eval_batch_size
  exp = setup(saved, global_mean=meta["global_mean"])
  state, _ = checkpoints.restore(which, state_lib.abstract_state(exp.init, exp.mesh))
  checkpoints.close()
  return JaxRecommender(exp, state, name=saved.name)


def evaluate_checkpoint(config: ml_collections.ConfigDict, restore_from: str | os.PathLike,
                        workdir: str | os.PathLike, which: str = "best") -> dict[str, Any]:
  """Restores a run's checkpoint and evaluates it; writes final_metrics.json into workdir."""
  quiet_library_logs()
  restore_from, workdir = Path(restore_from), Path(workdir)
  checkpoints = ckpt_lib.Checkpoints(restore_from)
  if not checkpoints.has(which):
    which = "latest"
  if not checkpoints.has(which):
    raise ckpt_lib.CheckpointError(f"{restore_from}: no checkpoints found under "
                                   f"{checkpoints.root}")
  meta = checkpoints.read_meta(which)
  saved = configs.from_checkpoint(meta["config"])
  store = datasets.open_or_build(config.data)
  ckpt_lib.check_compatible(meta, config.to_dict(), store.fingerprint, checkpoints.root / which)
  # Evaluate with the run's own config (same eval batches), on the data this config names.
  with saved.unlocked():
    saved.data = config.data
  exp = setup(saved, global_mean=meta["global_mean"])
  result = evaluate_state_from(exp, checkpoints, which)
  result["restored_from"] = str(restore_from)
  checkpoints.close()
  workdir.mkdir(parents=True, exist_ok=True)
  _write_json(workdir / "final_metrics.json", result)
  return result


def _write_json(path: Path, obj: Any) -> None:
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, float) and math.isnan(x):
    return None
  raise TypeError(f"not JSON serializable: {type(x)}")
