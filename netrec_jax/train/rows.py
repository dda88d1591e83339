"""Training row models (I-AutoRec, U-AutoRec, the deep autoencoder) from the store's CSC/CSR.

A batch is a set of rows (items for I-AutoRec, users for U-AutoRec) gathered from the training
ratings as padded-sparse arrays and sharded over the `data` axis; the loss is the masked MSE
over observed entries plus L2 on weights. Predictions for a (user, item) pair encode the
row's training ratings and read the reconstruction at the other side's column; rows with no
training rating predict the training mean (AutoRec's rule for unseen users/items).

Checkpoints: WORKDIR/checkpoints/{latest,best} (orbax, as the pair trainer) hold params,
optimizer state and step with the config and store fingerprint; the final metrics come from the
best checkpoint, and `load_row_model` restores it. Resume and the evaluator adapter come next.
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
from netrec_jax.data.store import atomic_write_text
from netrec_jax.eval import metrics as metrics_lib
from netrec_jax.models.autorec import SparseAutoencoder, masked_mse, row_batch
from netrec_jax.train import checkpoint as ckpt_lib
from netrec_jax.train import input_pipeline, state as state_lib

ROW_MODELS = ("autorec", "deep_ae")


def _pad_rows(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
  pad = size - batch["index"].shape[0]
  return {k: np.pad(v, ((0, pad), (0, 0))) for k, v in batch.items()}


def _model(config, n_columns: int, global_mean: float) -> SparseAutoencoder:
  m = config.model
  if m.name == "autorec":
    return SparseAutoencoder(n_columns, hidden=(m.autorec_hidden,), activation="sigmoid",
                             global_mean=global_mean)
  return SparseAutoencoder(n_columns, hidden=tuple(m.ae_hidden), activation=m.ae_activation,
                           dropout=m.dropout, input_dropout=m.ae_input_dropout,
                           global_mean=global_mean)


def _optimizer(config) -> optax.GradientTransformation:
  """Adam with L2 on weights, as AutoRec regularises (shared by training and restore)."""
  return optax.chain(optax.add_decayed_weights(config.model.weight_l2),
                     optax.adam(config.optimizer.lr))


def predict_pairs(model, params, store, train_rows, users, items, side: str,
                  batch_rows: int, global_mean: float) -> np.ndarray:
  """Predictions for pairs: encode each row's training ratings, read the other column."""
  row_ids = items if side == "item" else users
  columns = users if side == "item" else items
  out = np.full(len(users), global_mean, np.float64)
  order = np.argsort(row_ids, kind="stable")
  unique_rows, starts = np.unique(row_ids[order], return_index=True)
  ends = np.append(starts[1:], len(order))
  apply = jax.jit(lambda p, b, q: model.apply(p, b["index"], b["value"], b["mask"], q))
  for lo in range(0, len(unique_rows), batch_rows):
    rows = unique_rows[lo:lo + batch_rows]
    batch = row_batch(store, rows, train_rows, by=side)
    seg = [order[starts[k]:ends[k]] for k in range(lo, lo + len(rows))]
    width = max(len(s) for s in seg)
    query = np.zeros((len(rows), width), np.int32)
    for k, s in enumerate(seg):
      query[k, :len(s)] = columns[s]
    pred = np.asarray(apply(params, batch, query))
    has_train = batch["mask"].sum(1) > 0
    for k, s in enumerate(seg):
      if has_train[k]:
        out[s] = pred[k, :len(s)]
  return out


def train_and_evaluate(config, workdir: str | os.PathLike) -> dict[str, Any]:
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  rows = {part: split.rows(part) for part in ("train", "valid", "test")}
  side = config.model.autorec_side
  if side not in ("item", "user"):
    raise ValueError(f"model.autorec_side must be item or user, got {side!r}")
  n_columns = store.n_users if side == "item" else store.n_items
  global_mean = float(store.stars(rows["train"]).astype(np.float64).mean())
  mesh = state_lib.make_mesh(config.mesh)
  data_devices = mesh.shape[state_lib.DATA]
  batch_rows = -(-config.model.row_batch // data_devices) * data_devices
  model = _model(config, n_columns, global_mean)

  # ---- State, optimizer, sharded step.
  tx = _optimizer(config)
  dummy = _pad_rows(row_batch(store, np.arange(1), rows["train"], by=side), batch_rows)
  params = model.init({"params": jax.random.PRNGKey(config.seed),
                       "dropout": jax.random.PRNGKey(config.seed + 1)},
                      dummy["index"], dummy["value"], dummy["mask"], dummy["index"])
  replicated = NamedSharding(mesh, P())
  params = jax.device_put(params, replicated)
  opt_state = jax.device_put(tx.init(params), replicated)
  sharding = input_pipeline.batch_sharding(mesh)

  def step(params, opt_state, batch, key):
    def loss_fn(p):
      pred = model.apply(p, batch["index"], batch["value"], batch["mask"], batch["index"],
                         train=True, rngs={"dropout": key})
      return masked_mse(pred, batch["value"], batch["mask"])
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(step, in_shardings=(replicated, replicated, sharding, replicated),
                 out_shardings=(replicated, replicated, replicated), donate_argnums=(0, 1))
  serialize = jax.devices()[0].platform == "cpu" and jax.device_count() > 1

  checkpoints = ckpt_lib.Checkpoints(workdir)

  def save(which: str, epoch: int, params, opt_state, value) -> None:
    tree = {"params": params, "opt_state": opt_state, "step": jnp.asarray(epoch, jnp.int32)}
    meta = {"config": config.to_dict(), "epoch": epoch, "step": epoch, "valid_rmse": value,
            "store_fingerprint": store.fingerprint, "split": split.name,
            "protocol": split.protocol, "global_mean": global_mean}
    checkpoints.save(which, epoch, tree, meta)
    if serialize:
      checkpoints.wait()

  # ---- Epochs.
  train_entities = np.unique(np.take(store.item if side == "item" else store.user,
                                     rows["train"]))
  lo_hi = store.rating_range
  best, log = None, []
  for epoch in range(config.train.epochs):
    t0 = time.time()
    order = train_entities[np.random.default_rng([config.seed, epoch]).permutation(
        len(train_entities))]
    losses = []
    for k in range(0, len(order), batch_rows):
      batch = _pad_rows(row_batch(store, order[k:k + batch_rows], rows["train"], by=side),
                        batch_rows)
      key = jax.random.fold_in(jax.random.PRNGKey(config.seed), epoch * 100003 + k)
      params, opt_state, loss = step(params, opt_state, jax.device_put(batch, sharding), key)
      if serialize:
        jax.block_until_ready(loss)
      losses.append(loss)
    train_loss = float(jnp.mean(jnp.stack(losses)))
    if not np.isfinite(train_loss):
      raise FloatingPointError(f"loss became {train_loss} in epoch {epoch}; nothing saved")
    valid = _rating_metrics(model, params, store, rows, "valid", side, batch_rows, global_mean,
                            lo_hi)
    record = {"epoch": epoch, "train_loss": train_loss, "valid_rmse": valid.get("rmse"),
              "epoch_seconds": time.time() - t0, "rows_per_s": len(order) / (time.time() - t0)}
    log.append(record)
    with open(workdir / "metrics.jsonl", "a") as f:
      f.write(json.dumps(record) + "\n")
    logging.info("epoch %d/%d: train loss %.4f, valid rmse %s", epoch + 1, config.train.epochs,
                 train_loss, valid.get("rmse"))
    if valid.get("rmse") is not None and (best is None or valid["rmse"] < best[1]):
      best = (epoch, valid["rmse"])
      save("best", epoch, params, opt_state, valid["rmse"])
    save("latest", epoch, params, opt_state, valid.get("rmse"))
  checkpoints.wait()
  which = "best" if checkpoints.has("best") else "latest"
  abstract = jax.eval_shape(lambda: {"params": params, "opt_state": opt_state,
                                     "step": jnp.zeros((), jnp.int32)})
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                          abstract)
  restored, _ = checkpoints.restore(which, abstract)
  checkpoints.close()
  best_params = restored["params"]

  final = {"protocol": split.protocol, "split": split.name, "store": store.name,
           "store_fingerprint": store.fingerprint, "model": f"{config.model.name}_{side}",
           "task": "explicit", "best_epoch": best[0] if best else None, "checkpoint": which,
           "predictions": f"clipped to the rating range {list(lo_hi)}",
           "valid": _rating_metrics(model, best_params, store, rows, "valid", side, batch_rows,
                                    global_mean, lo_hi),
           "test": _rating_metrics(model, best_params, store, rows, "test", side, batch_rows,
                                   global_mean, lo_hi)}
  atomic_write_text(workdir / "final_metrics.json", json.dumps(final, indent=2) + "\n")
  return final


def _rating_metrics(model, params, store, rows, part, side, batch_rows, global_mean, lo_hi):
  if len(rows[part]) == 0:
    return {"n": 0}
  users, items = np.take(store.user, rows[part]), np.take(store.item, rows[part])
  pred = predict_pairs(model, params, store, rows["train"], users, items, side, batch_rows,
                       global_mean)
  return metrics_lib.rating_metrics(pred, store.stars(rows[part]).astype(np.float64), lo_hi)


def load_row_model(workdir: str | os.PathLike, which: str = "best"):
  """(model, params, store, split, config) of a row-model run, restored from its checkpoint."""
  import ml_collections
  checkpoints = ckpt_lib.Checkpoints(workdir)
  if not checkpoints.has(which):
    which = "latest"
  meta = checkpoints.read_meta(which)
  if meta is None:
    raise ckpt_lib.CheckpointError(f"{workdir}: no checkpoints found")
  config = ml_collections.ConfigDict(meta["config"])
  store = datasets.open_or_build(config.data)
  if store.fingerprint != meta["store_fingerprint"]:
    raise ckpt_lib.CheckpointError(f"{workdir}: checkpoint was trained on another store")
  split = datasets.make_split(store, config.split)
  side = config.model.autorec_side
  n_columns = store.n_users if side == "item" else store.n_items
  model = _model(config, n_columns, meta["global_mean"])
  dummy = row_batch(store, np.arange(1), split.rows("train"), by=side)
  tx = _optimizer(config)

  def init():
    params = model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
                        dummy["index"], dummy["value"], dummy["mask"], dummy["index"])
    return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}

  restored, _ = checkpoints.restore(which, jax.eval_shape(init))
  checkpoints.close()
  return model, restored["params"], store, split, config


def recommend_for_new_user(model, params, store, ratings: dict[int, float], k: int = 10
                           ) -> list[dict[str, Any]]:
  """Top-k unseen movies for a user who rated a few (original movie id -> stars).

  Encodes the partial rating vector with a user-based autoencoder (U-AutoRec or the deep AE
  on user rows) and ranks every other movie by its reconstruction; the given movies are never
  returned. Unknown movie ids are an error naming them.
  """
  if model.n_columns != store.n_items:
    raise ValueError("new-user recommendations need a user-based model (autorec_side=user)")
  ids = np.array(list(ratings), np.int64)
  index = store.item_index(ids)
  if (index < 0).any():
    raise ValueError(f"unknown movie ids: {ids[index < 0].tolist()}")
  value = np.array([ratings[i] for i in ids], np.float32)[None]
  query = np.arange(store.n_items, dtype=np.int32)[None]
  scores = np.array(model.apply(params, index[None].astype(np.int32), value,
                                 np.ones_like(value), query))[0]
  scores[index] = -np.inf
  top = np.argsort(-scores, kind="stable")[:k]
  items = store.items_table().take(top).to_pylist()
  return [{"movie_id": row["original_id"], "title": row.get("title"), "year": row.get("year"),
           "score": float(scores[i])} for row, i in zip(items, top)]
