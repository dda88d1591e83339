"""Training row models (I-AutoRec, U-AutoRec, the deep autoencoder) from the store's CSC/CSR.

A batch is a set of rows (items for I-AutoRec, users for U-AutoRec) gathered from the training
ratings as padded-sparse arrays and sharded over the `data` axis; the loss is the masked MSE
over observed entries plus L2 on weights. Predictions for a (user, item) pair encode the
row's training ratings and read the reconstruction at the other side's column; rows with no
training rating predict the training mean (AutoRec's rule for unseen users/items).

Checkpoints: WORKDIR/checkpoints/{latest,best} (orbax, as the pair trainer) hold params,
optimizer state and epoch with the config and store fingerprint; training resumes from
`latest`, the final metrics come from `best`, and `load_recommender` restores it behind the
evaluator interface (RowRecommender), which is how comparisons and launch.py's eval mode use it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from netrec_jax.data import datasets
from netrec_jax.eval import evaluator, metrics as metrics_lib
from netrec_jax.models.autorec import SparseAutoencoder, SparseRows, decoder_params
from netrec_jax.progress import Progress, quiet_library_logs
from netrec_jax.train import checkpoint as ckpt_lib
from netrec_jax.train import epochs as epochs_lib
from netrec_jax.train import input_pipeline, state as state_lib

ROW_MODELS = ("autorec", "deep_ae")


def bucket_width(length: int, smallest: int = 8) -> int:
  """Row widths rounded up to a power of two: a handful of compiled shapes, not one per batch."""
  return max(smallest, 1 << max(0, int(length) - 1).bit_length())


@dataclasses.dataclass(frozen=True)
class RowBatching:
  """How rows are grouped: at most `rows` per batch and at most `entries` padded cells.

  A batch of padded-sparse rows costs rows x width x hidden floats in the encoder's gather and
  the decoder's (and as much again in their gradients), with the width set by the longest row.
  On Netflix-like data one popular movie has 100k+ ratings, so a fixed row count would blow up
  memory; the cell budget shrinks such batches instead. Row counts and widths are padded to
  powers of two (rows also to a multiple of the data devices): few shapes, few compiles.
  """

  rows: int  # a multiple of `multiple`
  entries: int
  multiple: int = 1

  def padded_rows(self, n: int) -> int:
    size = max(self.multiple, 1 << max(0, n - 1).bit_length())
    return min(-(-size // self.multiple) * self.multiple, self.rows)

  def pad(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    pad = self.padded_rows(batch["index"].shape[0]) - batch["index"].shape[0]
    width = bucket_width(batch["index"].shape[1])
    return {k: np.pad(v, ((0, pad), (0, width - v.shape[1]))) for k, v in batch.items()}

  def spans(self, lengths: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive [lo, hi) batches over rows of these lengths, in the given order."""
    out, lo, longest = [], 0, 0
    for k, length in enumerate(np.asarray(lengths).tolist()):
      grown = max(longest, length)
      if k > lo and (k - lo + 1 > self.rows or
                     self.padded_rows(k - lo + 1) * bucket_width(grown) > self.entries):
        out.append((lo, k))
        lo, grown = k, length
      longest = grown
    if lo < len(lengths):
      out.append((lo, len(lengths)))
    return out


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


def epoch_batches(entities: np.ndarray, lengths: np.ndarray, batching: RowBatching,
                  rng: np.random.Generator, window_batches: int = 32) -> list[np.ndarray]:
  """One epoch's batches: shuffled, then sorted by row length within windows of batches.

  Rows are padded to the longest row of their batch; with long-tailed activity a random batch
  pads every row to the one popular item's length. Sorting within windows of `window_batches`
  batches keeps similar lengths together (far less padding) while the batch order stays random.
  entities must be sorted (lengths are looked up by searchsorted).
  """
  order = entities[rng.permutation(len(entities))]
  window = batching.rows * window_batches
  for lo in range(0, len(order), window):
    chunk = order[lo:lo + window]
    order[lo:lo + window] = chunk[np.argsort(lengths[np.searchsorted(entities, chunk)],
                                             kind="stable")]
  spans = batching.spans(lengths[np.searchsorted(entities, order)])
  batches = [order[lo:hi] for lo, hi in spans]
  return [batches[k] for k in rng.permutation(len(batches))]


def make_encoder(model: SparseAutoencoder) -> Callable:
  """jit(params, batch) -> the decoder's input code of each row (inference mode)."""
  return jax.jit(lambda p, b: model.apply(p, b["index"], b["value"], b["mask"], None))


def encode_rows(encode: Callable, params, train_index: SparseRows, entities: np.ndarray,
                batching: RowBatching) -> np.ndarray:
  """Codes [len(entities), H] of rows built from their training ratings."""
  width = decoder_params(params)[0].shape[1]
  out = np.zeros((len(entities), width), np.float32)
  order = np.argsort(train_index.lengths(entities), kind="stable")  # similar lengths together
  for lo, hi in batching.spans(train_index.lengths(entities[order])):
    chunk = order[lo:hi]
    out[chunk] = np.asarray(encode(params, batching.pad(train_index.batch(entities[chunk]))
                                   ))[:len(chunk)]
  return out


def predict_pairs(encode: Callable, params, train_index: SparseRows, users: np.ndarray,
                  items: np.ndarray, side: str, batching: RowBatching, global_mean: float
                  ) -> np.ndarray:
  """Predictions for pairs: encode each row's training ratings, read the other column.

  The decoder is linear in the code, so a pair costs one dot product once its row is encoded.
  Rows without training ratings predict global_mean.
  """
  row_ids = np.asarray(items if side == "item" else users)
  columns = np.asarray(users if side == "item" else items)
  weights, bias = (np.asarray(a) for a in decoder_params(params))
  unique_rows, inverse = np.unique(row_ids, return_inverse=True)
  order = np.argsort(inverse, kind="stable")
  bounds = np.searchsorted(inverse[order], np.arange(len(unique_rows) + 1))
  out = np.empty(len(row_ids), np.float64)
  chunk = 16 * batching.rows
  for lo in range(0, len(unique_rows), chunk):
    hi = min(lo + chunk, len(unique_rows))
    codes = encode_rows(encode, params, train_index, unique_rows[lo:hi], batching)
    pairs = order[bounds[lo]:bounds[hi]]
    out[pairs] = (np.einsum("ph,ph->p", codes[inverse[pairs] - lo], weights[columns[pairs]])
                  + bias[columns[pairs]] + global_mean)
  out[train_index.lengths(row_ids) == 0] = global_mean
  return out


def _setup(config, global_mean: float | None = None) -> dict[str, Any]:
  """Store, split rows, model and optimizer of a row-model config (training and restore)."""
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  rows = {part: split.rows(part) for part in ("train", "valid", "test")}
  side = config.model.autorec_side
  if side not in ("item", "user"):
    raise ValueError(f"model.autorec_side must be item or user, got {side!r}")
  if len(rows["train"]) == 0:
    raise ValueError(f"split {split.name} has no training ratings")
  if global_mean is None:
    global_mean = float(store.stars(rows["train"]).astype(np.float64).mean())
  n_columns = store.n_users if side == "item" else store.n_items
  model = _model(config, n_columns, global_mean)
  mesh = state_lib.make_mesh(config.mesh)
  data_devices = mesh.shape[state_lib.DATA]
  batch_rows = -(-config.model.row_batch // data_devices) * data_devices
  batching = RowBatching(batch_rows, max(config.model.row_batch_entries, batch_rows),
                         data_devices)
  tx = _optimizer(config)
  train_index = SparseRows(store, rows["train"], side)
  dummy = train_index.batch(np.arange(1))

  def init(seed: int = 0):
    params = model.init({"params": jax.random.PRNGKey(seed),
                         "dropout": jax.random.PRNGKey(seed + 1)},
                        dummy["index"], dummy["value"], dummy["mask"], dummy["index"])
    return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}

  return dict(store=store, split=split, rows=rows, side=side, global_mean=global_mean,
              train_index=train_index,
              model=model, mesh=mesh, batching=batching, tx=tx, init=init)


def train_and_evaluate(config, workdir: str | os.PathLike) -> dict[str, Any]:
  """Trains a row model into WORKDIR (resuming from its latest checkpoint); final metrics."""
  quiet_library_logs()
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  t_start = time.time()
  s = _setup(config)
  store, split, rows, side, model, tx = (s[k] for k in ("store", "split", "rows", "side",
                                                         "model", "tx"))
  global_mean, batching, mesh = s["global_mean"], s["batching"], s["mesh"]
  train_index, encode = s["train_index"], make_encoder(model)
  replicated = NamedSharding(mesh, P())
  sharding = input_pipeline.batch_sharding(mesh)
  refeed = config.model.ae_refeed

  # Squared errors are summed and divided by the epoch's mean number of ratings per batch, not
  # by this batch's count: batches are length-sorted (epoch_batches), and a per-batch mean
  # would give a batch of rarely rated rows as much weight as one of popular rows. This way
  # every training rating weighs the same over an epoch, as in AutoRec's summed objective.
  n_train_ratings = len(rows["train"])

  def update(params, opt_state, index, value, mask, key, normalizer):
    def loss_fn(p):
      pred = model.apply(p, index, value, mask, index, train=True, rngs={"dropout": key})
      return jnp.sum(mask * jnp.square(pred - value)) / normalizer
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def step(params, opt_state, batch, key, ratings_per_batch):
    params, opt_state, loss = update(params, opt_state, batch["index"], batch["value"],
                                     batch["mask"], key, ratings_per_batch)
    if refeed:
      # Kuchaiev & Ginsburg 2017: the dense reconstruction f(x) is a fixed point to aim for,
      # so f(f(x)) is trained towards f(x) over every column, in a second update.
      every = jnp.broadcast_to(jnp.arange(model.n_columns, dtype=jnp.int32),
                               (batch["index"].shape[0], model.n_columns))
      dense = jax.lax.stop_gradient(model.apply(params, batch["index"], batch["value"],
                                                batch["mask"], every))
      has_row = (batch["mask"].sum(1, keepdims=True) > 0).astype(dense.dtype)
      params, opt_state, _ = update(params, opt_state, every, dense,
                                    jnp.broadcast_to(has_row, dense.shape),
                                    jax.random.fold_in(key, 1),
                                    normalizer=jnp.maximum(has_row.sum() * model.n_columns, 1.0))
    return params, opt_state, loss

  step = jax.jit(step, in_shardings=(replicated, replicated, sharding, replicated, replicated),
                 out_shardings=(replicated, replicated, replicated), donate_argnums=(0, 1))
  runs = epochs_lib.EpochCheckpoints(workdir, config, store, split, metric="rmse",
                                     lower_is_better=True,
                                     extra_meta={"global_mean": global_mean})
  serialize = runs.serialize
  tree = runs.resume(epochs_lib.abstract_tree(s["init"], replicated))
  if tree is None:
    tree = jax.device_put(s["init"](config.seed), replicated)
  params, opt_state = tree["params"], tree["opt_state"]

  # ---- Epochs: rows shuffled per epoch (seeded by epoch, so a resumed run sees the same order).
  train_entities = np.flatnonzero(train_index.lengths(np.arange(train_index.n_entities)) > 0)
  epochs_run = 0
  for epoch in range(runs.first_epoch, config.train.epochs):
    if runs.stop_early():
      break
    t0 = time.time()
    batches = epoch_batches(train_entities, train_index.lengths(train_entities), batching,
                            np.random.default_rng([config.seed, epoch]))
    ratings_per_batch = jnp.float32(n_train_ratings / len(batches))
    progress = Progress(f"epoch {epoch + 1}/{config.train.epochs}", len(train_entities),
                        unit="rows", every_s=config.train.log_every_s)
    losses, done = [], 0
    for k, entities in enumerate(batches):
      batch = batching.pad(train_index.batch(entities))
      key = jax.random.fold_in(jax.random.PRNGKey(config.seed), epoch * 100003 + k)
      params, opt_state, loss = step(params, opt_state, jax.device_put(batch, sharding), key,
                                     ratings_per_batch)
      if serialize:
        jax.block_until_ready(loss)
      losses.append(loss)
      done += len(entities)
      progress(done)
    train_loss = float(jnp.mean(jnp.stack(losses)))
    if not np.isfinite(train_loss):
      raise FloatingPointError(f"loss became {train_loss} in epoch {epoch}; nothing saved")
    train_seconds = time.time() - t0
    valid = _rating_metrics(encode, params, train_index, store, rows["valid"], side, batching,
                            global_mean)
    record = {"epoch": epoch, "train_loss": train_loss, "valid_rmse": valid.get("rmse"),
              "epoch_seconds": time.time() - t0, "train_seconds": train_seconds,
              "rows_per_s": len(train_entities) / train_seconds,
              "ratings_per_s": n_train_ratings / train_seconds}
    if jax.process_index() == 0:
      with open(workdir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    logging.info("epoch %d/%d: train loss %.4f, valid rmse %s, %.0f rows/s", epoch + 1,
                 config.train.epochs, train_loss, valid.get("rmse"), record["rows_per_s"])
    runs.end_epoch(epoch, {"params": params, "opt_state": opt_state,
                           "step": jnp.asarray(epoch, jnp.int32)}, valid.get("rmse"))
    epochs_run += 1
  runs.close()

  return epochs_lib.write_final_metrics(
      workdir, load_recommender, rate_keys=("rows_per_s", "ratings_per_s"),
      best_epoch=runs.best_epoch, epochs_run=epochs_run, train_seconds=time.time() - t_start)


def _rating_metrics(encode, params, train_index, store, part_rows, side, batching,
                    global_mean) -> dict[str, Any]:
  if len(part_rows) == 0:
    return {"n": 0}
  users, items = np.take(store.user, part_rows), np.take(store.item, part_rows)
  pred = predict_pairs(encode, params, train_index, users, items, side, batching, global_mean)
  return metrics_lib.rating_metrics(pred, store.stars(part_rows).astype(np.float64),
                                    store.rating_range)


class RowRecommender:
  """A restored row model behind the evaluator interface (netrec_jax/eval/evaluator.py).

  Predictions encode the row's training ratings and read the other side's column; a pair
  whose user or item has no training rating gets the training mean (cold_rule). Full-catalog
  scores are one matmul: the decoder is linear in the row's code.
  """

  def __init__(self, model: SparseAutoencoder, params, store, split, train_index: SparseRows,
               batching: RowBatching, config, which: str, meta: dict[str, Any]):
    self.model, self.params, self.store, self.split, self.config = (model, params, store,
                                                                    split, config)
    self.side = config.model.autorec_side
    self.name = f"{config.model.name}_{self.side}" if config.model.name == "autorec" else (
        config.model.name)
    self.which, self.meta = which, meta
    self.global_mean = float(meta["global_mean"])
    self.rating_note = ""
    self.cold_rule = "training mean for a user or item with no training rating"
    self.train_rows = split.rows("train")
    self.batching = batching
    trained_users = np.zeros(store.n_users, bool)
    trained_users[np.take(store.user, self.train_rows)] = True
    trained_items = np.zeros(store.n_items, bool)
    trained_items[np.take(store.item, self.train_rows)] = True
    self.trained = {"user": trained_users, "item": trained_items}
    self.train_index = train_index
    self._encode = make_encoder(model)
    weights, bias = decoder_params(params)
    self._decoder = (np.asarray(weights), np.asarray(bias))
    self._item_codes = None

  def codes(self, entities: np.ndarray) -> np.ndarray:
    """The decoder's input for each row entity (items for I-AutoRec, users for U-AutoRec)."""
    return encode_rows(self._encode, self.params, self.train_index, entities, self.batching)

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    pred = predict_pairs(self._encode, self.params, self.train_index, users, items,
                         self.side, self.batching, self.global_mean)
    cold = ~(self.trained["user"][users] & self.trained["item"][items])
    pred[cold] = self.global_mean
    return pred

  def score_items(self, users: np.ndarray) -> np.ndarray:
    weights, bias = self._decoder
    if self.side == "item":
      if self._item_codes is None:
        self._item_codes = self.codes(np.arange(self.store.n_items))
      scores = weights[users] @ self._item_codes.T + bias[users, None]
    else:
      scores = self.codes(users) @ weights.T + bias[None]
    scores = scores + self.global_mean
    scores[:, ~self.trained["item"]] = self.global_mean
    scores[~self.trained["user"][users]] = self.global_mean
    return scores

  def item_vectors(self) -> np.ndarray:
    """Item embeddings for similar-movie search: I-AutoRec's item codes, else decoder rows."""
    if self.side == "item":
      if self._item_codes is None:
        self._item_codes = self.codes(np.arange(self.store.n_items))
      return self._item_codes
    return self._decoder[0]

  fold_in_method = "encoder pass over the new user's partial rating vector (U-AutoRec / AE)"

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """Scores of every item for a new user who rated `items` (dense indices) with `stars`."""
    if self.side != "user":
      raise ValueError(f"{self.name} encodes item rows; a new user needs a user-based model "
                       "(model.autorec_side=user)")
    batch = {"index": np.asarray(items, np.int32)[None],
             "value": np.asarray(stars, np.float32)[None],
             "mask": np.ones((1, len(items)), np.float32)}
    weights, bias = self._decoder
    return (np.asarray(self._encode(self.params, batch))[0] @ weights.T + bias
            + self.global_mean)

  def evaluate_splits(self) -> dict[str, Any]:
    """Rating metrics on the split's valid and test rows, labelled with protocol and data."""
    store, split = self.store, self.split
    result = {"protocol": split.protocol, "split": split.name, "store": store.name,
              "store_fingerprint": store.fingerprint, "model": self.name, "task": "explicit",
              "checkpoint": self.which, "checkpoint_epoch": int(self.meta["epoch"]),
              "checkpoint_step": int(self.meta["step"]),
              "predictions": f"clipped to the rating range {list(store.rating_range)}",
              "cold_rule": self.cold_rule}
    for part in ("valid", "test"):
      result[part] = evaluator.rating_metrics_on(self, store, split.rows(part))
    return result


def load_recommender(workdir: str | os.PathLike, config=None, which: str = "best"
                     ) -> RowRecommender:
  """The best (or latest) checkpoint of a row-model run, behind the evaluator interface.

  With `config`, the checkpoint must fit it (same store fingerprint and model); its data
  section says where the store is now.
  """
  checkpoints, which, meta, saved = epochs_lib.open_run(workdir, config, which)
  s = _setup(saved, global_mean=meta["global_mean"])
  if s["store"].fingerprint != meta["store_fingerprint"]:
    raise ckpt_lib.CheckpointError(
        f"{workdir}: checkpoint was trained on store {meta['store_fingerprint']}, but its config "
        f"now builds {s['store'].fingerprint}")
  tree, meta = checkpoints.restore(which, jax.eval_shape(s["init"]))
  checkpoints.close()
  return RowRecommender(s["model"], tree["params"], s["store"], s["split"], s["train_index"],
                        s["batching"], saved, which, meta)


def load_row_model(workdir: str | os.PathLike, which: str = "best"):
  """(model, params, store, split, config) of a row-model run, restored from its checkpoint."""
  r = load_recommender(workdir, which=which)
  return r.model, r.params, r.store, r.split, r.config


def evaluate_checkpoint(config, restore_from: str | os.PathLike, workdir: str | os.PathLike,
                        which: str = "best") -> dict[str, Any]:
  """Restores a row-model run and evaluates it on config's split into WORKDIR."""
  return epochs_lib.evaluate_checkpoint(load_recommender, config, restore_from, workdir, which)


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
