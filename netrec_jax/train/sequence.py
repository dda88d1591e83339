"""Training sequence models (BERT4Rec) on each user's training ratings ordered by date.

A user's sequence is their training items ordered by store.date, same-day ratings in the
seeded random order the leave-last-out split uses (splits.time_order_keys). On the leave-last-out split (split.kind = loo) the
last item is test and the one before validation, so neither is ever in a training sequence;
both are scored from the training sequence with [MASK] appended, which is what
`SequenceRecommender.score_items` does, so the held-out items never leak into the input.

Training is the cloze task (netrec_jax/models/bert4rec.py): each epoch every user contributes
one sample with fresh masks (a random window of max_len items if the sequence is longer), or,
with probability sequence.last_mask_prob, only the last item masked (the paper's trick that
matches serving). Batches [B, max_len] are sharded over the mesh's `data` axis.

Checkpoints: WORKDIR/checkpoints/{latest,best} as the other families (rows.py); `best` is
chosen by validation NDCG@10 over the full catalog (protocol loo_full); final metrics come from
the restored best checkpoint through the common evaluator, on loo_full and on the paper's
loo_pop100 (last item vs 100 popularity-sampled negatives).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from netrec_jax.data import datasets
from netrec_jax.data import splits as splits_lib
from netrec_jax.data.store import RatingStore
from netrec_jax.eval import evaluator
from netrec_jax.models.bert4rec import PAD, Bert4Rec, attention_dtype, cloze_loss, mask_token
from netrec_jax.progress import Progress, quiet_library_logs
from netrec_jax.train import checkpoint as ckpt_lib
from netrec_jax.train import epochs as epochs_lib
from netrec_jax.train import input_pipeline
from netrec_jax.train import state as state_lib

SEQUENCE_MODELS = ("bert4rec",)
# config.sequence fields that fix the shapes of the saved parameters.
ARCHITECTURE_KEYS = ("max_len", "hidden", "layers", "heads")
FULL_KS = (5, 10, 20)  # cut-offs of the full-catalog metrics (HR@10, NDCG@10, Recall@20 ...)
REPORTED = ("hit_rate@10", "ndcg@10", "recall@20", "hit_rate@20", "ndcg@20", "mrr",
            "coverage@10", "n_users")
SAMPLED_NEGATIVES = 100  # loo_pop100: the BERT4Rec paper's protocol


# ------------------------------------------------------------------------------ sequences
@dataclasses.dataclass
class Sequences:
  """Each user's training item tokens (item + 1), oldest first: tokens[offsets[u]:offsets[u+1]]."""

  offsets: np.ndarray  # int64 [n_users + 1]
  tokens: np.ndarray  # int32 [n_train]

  def of(self, user: int) -> np.ndarray:
    return self.tokens[self.offsets[user]:self.offsets[user + 1]]

  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets)


def training_sequences(store: RatingStore, train_rows: np.ndarray, seed: int = 0) -> Sequences:
  """Users' training items ordered by date, same-day ratings in the seeded random order that
  the leave-last-out split uses (splits.time_order_keys: the store's own same-day order is by
  item index, which a sequence model would learn)."""
  train_rows = np.sort(np.asarray(train_rows))
  users = np.take(store.user, train_rows).astype(np.int64)
  order = np.lexsort((splits_lib.time_order_keys(store, seed)[train_rows], users))
  offsets = np.zeros(store.n_users + 1, np.int64)
  np.cumsum(np.bincount(users, minlength=store.n_users), out=offsets[1:])
  tokens = (np.take(store.item, train_rows)[order] + 1).astype(np.int32)
  return Sequences(offsets, tokens)


def serving_tokens(sequences: Sequences, users: np.ndarray, max_len: int,
                   n_items: int) -> np.ndarray:
  """int32 [len(users), max_len]: the last max_len - 1 training items, then [MASK]."""
  out = np.full((len(users), max_len), PAD, np.int32)
  out[:, -1] = mask_token(n_items)
  for row, user in enumerate(users):
    history = sequences.of(int(user))[-(max_len - 1):] if max_len > 1 else []
    out[row, max_len - 1 - len(history):max_len - 1] = history
  return out


def max_predictions(max_len: int, mask_prob: float) -> int:
  """Most masked positions a sample can have (the loss's static P)."""
  return max(1, math.ceil(mask_prob * max_len))


def cloze_batch(sequences: Sequences, users: np.ndarray, rng: np.random.Generator,
                max_len: int, mask_prob: float, last_mask_prob: float, n_items: int,
                batch_size: int) -> dict[str, np.ndarray]:
  """One training batch [batch_size, max_len] of masked samples; rows past `users` are empty.

  tokens: inputs with [MASK]; labels: the true tokens everywhere; weights: 1 where masked.
  """
  limit = max_predictions(max_len, mask_prob)
  tokens = np.full((batch_size, max_len), PAD, np.int32)
  labels = np.full((batch_size, max_len), PAD, np.int32)
  weights = np.zeros((batch_size, max_len), np.float32)
  for row, user in enumerate(users):
    seq = sequences.of(int(user))
    if len(seq) == 0:
      continue
    if rng.random() < last_mask_prob:
      window = seq[-max_len:]
      masked = np.array([len(window) - 1])
    else:
      start = rng.integers(0, len(seq) - max_len + 1) if len(seq) > max_len else 0
      window = seq[start:start + max_len]
      n_masked = min(limit, max(1, round(len(window) * mask_prob)))
      masked = rng.choice(len(window), n_masked, replace=False)
    lo = max_len - len(window)
    labels[row, lo:] = window
    tokens[row, lo:] = window
    tokens[row, lo + masked] = mask_token(n_items)
    weights[row, lo + masked] = 1.0
  return {"tokens": tokens, "labels": labels, "weights": weights}


def _part_as_test(split: splits_lib.Split, part: str) -> splits_lib.Split:
  """`split` with `part`'s rows as its test rows, so validation runs the test-set evaluator."""
  if part == "test":
    return split
  assignment = np.array(split.assignment, np.int8)
  assignment[assignment == splits_lib.TEST] = splits_lib.UNUSED
  assignment[assignment == splits_lib.PARTS[part]] = splits_lib.TEST
  return splits_lib.Split(name=f"{split.name}[{part}]", protocol=split.protocol,
                          assignment=assignment, params=split.params, info=split.info)


# ----------------------------------------------------------------------------------- setup
def _optimizer(config) -> optax.GradientTransformation:
  """AdamW (decay on matrices only, as BERT) after global-norm clipping."""
  s = config.sequence
  parts = [optax.clip_by_global_norm(s.clip_norm)] if s.clip_norm > 0 else []
  decay_mask = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)
  return optax.chain(*parts, optax.adamw(s.lr, weight_decay=s.weight_decay, mask=decay_mask))


def _check_config(config) -> None:
  s = config.sequence
  if config.model.name not in SEQUENCE_MODELS:
    raise ValueError(f"model.name {config.model.name!r} is not a sequence model "
                     f"{SEQUENCE_MODELS}")
  for field in ("max_len", "hidden", "layers", "heads", "batch_users", "eval_batch_users",
                "epochs", "eval_every"):
    if s[field] <= 0:
      raise ValueError(f"sequence.{field} must be positive, got {s[field]}")
  if s.max_len < 2:
    raise ValueError("sequence.max_len must be at least 2 (history + [MASK])")
  if s.hidden % s.heads:
    raise ValueError(f"sequence.hidden {s.hidden} is not divisible by sequence.heads {s.heads}")
  for field in ("mask_prob", "last_mask_prob", "dropout"):
    if not 0 <= s[field] <= 1 or (field != "last_mask_prob" and s[field] == 1):
      raise ValueError(f"sequence.{field} must be in [0, 1), got {s[field]}")
  if s.mask_prob <= 0 and s.last_mask_prob <= 0:
    raise ValueError("sequence.mask_prob and last_mask_prob are both 0: nothing to predict")


def _setup(config) -> dict[str, Any]:
  """Store, split, sequences, model, mesh and optimizer of a sequence config."""
  _check_config(config)
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  if split is None:
    raise ValueError("a sequence model needs a split (split.kind = loo)")
  if split.protocol != "loo":
    logging.warning("split %s is not leave-last-out: the held-out items are not each user's "
                    "latest, so scoring from the training sequence is not next-item prediction",
                    split.name)
  train_rows = split.rows("train")
  if len(train_rows) == 0:
    raise ValueError(f"split {split.name} has no training ratings")
  s = config.sequence
  model = Bert4Rec(n_items=store.n_items, max_len=s.max_len, hidden=s.hidden, layers=s.layers,
                   heads=s.heads, dropout=s.dropout,
                   attention_dtype=attention_dtype(s.attention_dtype))
  mesh = state_lib.make_mesh(config.mesh)
  data_devices = mesh.shape[state_lib.DATA]
  round_up = lambda n: -(-n // data_devices) * data_devices
  tx = _optimizer(config)

  def init(seed: int = 0):
    params = model.init({"params": jax.random.PRNGKey(seed)},
                        jnp.zeros((1, s.max_len), jnp.int32))
    return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}

  return {"store": store, "split": split, "train_rows": train_rows, "model": model,
          "mesh": mesh, "tx": tx, "init": init,
          "sequences": training_sequences(store, train_rows, config.split.seed),
          "batch_users": round_up(s.batch_users),
          "eval_batch_users": round_up(s.eval_batch_users),
          "max_predictions": max_predictions(s.max_len, s.mask_prob)}


@functools.lru_cache(maxsize=8)
def _scorer(model: Bert4Rec, mesh):
  """Jitted logits at the last position for a user batch sharded over `data`.

  Cached per (model, mesh): validation and the restored best checkpoint reuse one compile.
  """
  replicated = NamedSharding(mesh, P())
  sharding = input_pipeline.batch_sharding(mesh)
  return jax.jit(lambda params, tokens: model.apply(params, tokens)[:, 0],
                 in_shardings=(replicated, sharding), out_shardings=sharding)


def _check_architecture(meta: dict[str, Any], config, where) -> None:
  saved = meta.get("config", {}).get("sequence", {})
  problems = [f"sequence.{k}: checkpoint {saved.get(k)!r}, config {config.sequence[k]!r}"
              for k in ARCHITECTURE_KEYS if saved.get(k) != config.sequence[k]]
  if problems:
    raise ckpt_lib.CheckpointError(f"{where}: checkpoint config is incompatible: "
                                   + "; ".join(problems))


# ------------------------------------------------------------------------------ training
def train_and_evaluate(config, workdir: str | os.PathLike) -> dict[str, Any]:
  """Trains BERT4Rec into WORKDIR (resuming from its latest checkpoint); final metrics."""
  quiet_library_logs()
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  t_start = time.time()
  s = _setup(config)
  store, split, model, tx, mesh = (s[k] for k in ("store", "split", "model", "tx", "mesh"))
  sequences, batch_users, n_predict = s["sequences"], s["batch_users"], s["max_predictions"]
  seq_cfg = config.sequence
  replicated = NamedSharding(mesh, P())
  sharding = input_pipeline.batch_sharding(mesh)

  # ---- Train step: cloze loss over masked positions, batch sharded over `data`.
  def step(params, opt_state, batch, key):
    loss, grads = jax.value_and_grad(
        lambda p: cloze_loss(model, p, batch, n_predict, train=True, rng=key))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(step, in_shardings=(replicated, replicated, sharding, replicated),
                 out_shardings=(replicated, replicated, replicated), donate_argnums=(0, 1))
  scorer = _scorer(model, mesh)
  # ---- Resume from `latest`, or start from scratch.
  runs = epochs_lib.EpochCheckpoints(workdir, config, store, split, metric="ndcg@10",
                                     lower_is_better=False, check=_check_architecture)
  serialize = runs.serialize
  tree = runs.resume(epochs_lib.abstract_tree(s["init"], replicated))
  if tree is None:
    tree = jax.device_put(s["init"](config.seed), replicated)
  params, opt_state = tree["params"], tree["opt_state"]

  valid_data = evaluator.prepare(store, _part_as_test(split, "valid"), relevance_threshold=None)
  train_users = np.flatnonzero(sequences.lengths() > 0)
  n_train = int(sequences.lengths().sum())
  epochs_run, pending = 0, []
  for epoch in range(runs.first_epoch, seq_cfg.epochs):
    if runs.stop_early():
      break
    # ---- Epoch: users shuffled and masks drawn from (seed, epoch), so a resume replays them.
    t0 = time.time()
    rng = np.random.default_rng([config.seed, epoch])
    order = train_users[rng.permutation(len(train_users))]
    progress = Progress(f"epoch {epoch + 1}/{seq_cfg.epochs}", len(order), unit="users",
                        every_s=config.train.log_every_s)
    losses = []
    for k in range(0, len(order), batch_users):
      batch = cloze_batch(sequences, order[k:k + batch_users], rng, seq_cfg.max_len,
                          seq_cfg.mask_prob, seq_cfg.last_mask_prob, store.n_items, batch_users)
      key = jax.random.fold_in(jax.random.PRNGKey(config.seed), epoch * 100003 + k)
      params, opt_state, loss = step(params, opt_state, jax.device_put(batch, sharding), key)
      if serialize:
        jax.block_until_ready(loss)
      losses.append(loss)
      progress(min(k + batch_users, len(order)))
    train_loss = float(jnp.mean(jnp.stack(losses)))
    if not np.isfinite(train_loss):
      raise FloatingPointError(f"loss became {train_loss} in epoch {epoch}; nothing saved")
    train_seconds = time.time() - t0
    record = {"epoch": epoch, "train_loss": train_loss, "train_seconds": train_seconds,
              "users_per_s": len(order) / train_seconds,
              "items_per_s": n_train / train_seconds}
    last = epoch == seq_cfg.epochs - 1
    if (epoch + 1) % seq_cfg.eval_every == 0 or last:
      recommender = SequenceRecommender(model, params, store, split, config, "training",
                                        {"epoch": epoch, "step": epoch}, scorer=scorer,
                                        sequences=sequences)
      valid = _full_ranking(recommender, valid_data, seq_cfg.eval_batch_users)
      record.update({f"valid_{k}": v for k, v in valid.items() if k != "protocol"})
      runs.end_epoch(epoch, {"params": params, "opt_state": opt_state,
                             "step": jnp.asarray(epoch, jnp.int32)}, valid["ndcg@10"])
      logging.info("epoch %d/%d: train loss %.4f, valid ndcg@10 %.4f hr@10 %.4f (loo_full), "
                   "%.0f users/s", epoch + 1, seq_cfg.epochs, train_loss, valid["ndcg@10"],
                   valid["hit_rate@10"], record["users_per_s"])
    else:
      logging.info("epoch %d/%d: train loss %.4f, %.0f users/s", epoch + 1, seq_cfg.epochs,
                   train_loss, record["users_per_s"])
    record["epoch_seconds"] = time.time() - t0
    pending.append(record)
    if "valid_ndcg@10" in record and jax.process_index() == 0:
      # Written with the checkpoint that covers these epochs, so a resume never repeats lines.
      with open(workdir / "metrics.jsonl", "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in pending)
      pending = []
    epochs_run += 1
  runs.close()

  return epochs_lib.write_final_metrics(
      workdir, load_recommender, rate_keys=("users_per_s",), best_epoch=runs.best_epoch,
      epochs_run=epochs_run, train_seconds=time.time() - t_start)


def _full_ranking(recommender, data: evaluator.EvalData, user_batch: int) -> dict[str, Any]:
  """Full-catalog metrics (training items excluded) of data's test rows, reported subset."""
  result = evaluator.evaluate(recommender, data, ks=FULL_KS, user_batch=user_batch)
  ranking = result["ranking"]
  return {"protocol": ranking["protocol"], **{k: ranking[k] for k in REPORTED}}


# ------------------------------------------------------------------------------ serving
class SequenceRecommender:
  """A BERT4Rec model behind the evaluator interface (netrec_jax/eval/evaluator.py).

  score_items(users) reads the logits at a [MASK] appended to each user's training sequence,
  so neither the validation nor the test item is ever in the input. No rating predictions.
  """

  def __init__(self, model: Bert4Rec, params, store: RatingStore, split, config, which: str,
               meta: dict[str, Any], *, scorer=None, sequences: Sequences | None = None):
    self.model, self.params, self.store, self.split, self.config = (model, params, store,
                                                                    split, config)
    self.name = config.model.name
    self.which, self.meta = which, meta
    self.rating_note = ("not applicable: BERT4Rec ranks the next item from the sequence and "
                        "does not predict stars")
    self.cold_rule = "a user with no training items is scored from [MASK] alone"
    self.mesh = state_lib.make_mesh(config.mesh)
    self._score = scorer or _scorer(model, self.mesh)
    self.sequences = sequences or training_sequences(store, split.rows("train"),
                                                     config.split.seed)
    self.batch_users = config.sequence.eval_batch_users
    self._data_devices = self.mesh.shape[state_lib.DATA]

  def predict(self, users: np.ndarray, items: np.ndarray) -> None:
    return None

  def input_tokens(self, users: np.ndarray) -> np.ndarray:
    """The model input used to score `users`: training history, then [MASK]."""
    return serving_tokens(self.sequences, np.asarray(users), self.config.sequence.max_len,
                          self.store.n_items)

  def score_items(self, users: np.ndarray) -> np.ndarray:
    users = np.asarray(users)
    out = []
    for lo in range(0, len(users), self.batch_users):
      tokens = self.input_tokens(users[lo:lo + self.batch_users])
      n = len(tokens)
      padded = -(-n // self._data_devices) * self._data_devices
      tokens = np.pad(tokens, ((0, padded - n), (0, 0)))
      out.append(np.asarray(self._score(self.params, tokens))[:n])
    return (np.concatenate(out) if out
            else np.zeros((0, self.store.n_items), np.float32)).astype(np.float32)

  fold_in_method = ("the given movies, in the order given, as the user's sequence, then "
                    "[MASK]: one encoder pass (BERT4Rec needs no per-user parameters)")

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] next-item scores for a new user who watched `items` (dense indices), in order.

    Stars are not used: BERT4Rec models which movie comes next, not how it is rated.
    """
    items = np.asarray(items, np.int64).reshape(-1)
    if len(items) == 0:
      raise ValueError("fold_in needs at least one movie")
    max_len = self.config.sequence.max_len
    tokens = np.full((self._data_devices, max_len), PAD, np.int32)
    tokens[:, -1] = mask_token(self.store.n_items)
    history = (items[-(max_len - 1):] + 1).astype(np.int32) if max_len > 1 else []
    tokens[:, max_len - 1 - len(history):max_len - 1] = history
    return np.asarray(self._score(self.params, tokens))[0].astype(np.float32)

  def item_vectors(self) -> np.ndarray:
    """The (tied) input/output item embeddings, [n_items, hidden], for similar movies."""
    return np.asarray(self.params["params"]["item_embed"]["embedding"][1:self.store.n_items + 1])

  def evaluate_splits(self) -> dict[str, Any]:
    """loo_full on valid and test, loo_pop100 on test; every block labelled with its protocol."""
    store, split = self.store, self.split
    s = self.config.sequence
    result = {"protocol": split.protocol, "split": split.name, "store": store.name,
              "store_fingerprint": store.fingerprint, "model": self.name,
              "task": "implicit (next item)", "checkpoint": self.which,
              "checkpoint_epoch": int(self.meta["epoch"]),
              "checkpoint_step": int(self.meta["step"]),
              "predictions": "ranking scores only (no ratings)",
              "input": "each user's training items by date, then [MASK]"}
    for part in ("valid", "test"):
      data = evaluator.prepare(store, _part_as_test(split, part), relevance_threshold=None)
      if data.relevant.nnz == 0:
        result[part] = {"n": 0}
        continue
      result[part] = _full_ranking(self, data, s.eval_batch_users)
      if part == "test":
        try:
          sampled = evaluator.sampled_ranking(self, data, SAMPLED_NEGATIVES, FULL_KS,
                                              s.eval_batch_users, sampler="popularity")
        except ValueError as e:  # a toy catalog with fewer than 100 candidates per user
          result["test_sampled"] = {"protocol": "loo_pop100", "skipped": str(e)}
          continue
        result["test_sampled"] = {k: sampled[k] for k in ("protocol", "hr@10", "ndcg@10", "mrr",
                                                          "n", "n_negatives", "sampler")}
    return result


def load_recommender(workdir: str | os.PathLike, config=None, which: str = "best"
                     ) -> SequenceRecommender:
  """The best (or latest) checkpoint of a sequence run, behind the evaluator interface.

  With `config`, the checkpoint must fit it (same store, model and architecture); its data
  and mesh sections say where the store is now and which devices to use.
  """
  checkpoints, which, meta, saved = epochs_lib.open_run(workdir, config, which,
                                                        check=_check_architecture)
  if config is not None:
    with saved.unlocked():
      saved.sequence.eval_batch_users = config.sequence.eval_batch_users
  s = _setup(saved)
  if s["store"].fingerprint != meta["store_fingerprint"]:
    raise ckpt_lib.CheckpointError(
        f"{workdir}: checkpoint was trained on store {meta['store_fingerprint']}, but its config "
        f"now builds {s['store'].fingerprint}")
  tree, meta = checkpoints.restore(which, jax.eval_shape(s["init"]))
  checkpoints.close()
  return SequenceRecommender(s["model"], tree["params"], s["store"], s["split"], saved, which,
                             meta, sequences=s["sequences"])


def evaluate_checkpoint(config, restore_from: str | os.PathLike, workdir: str | os.PathLike,
                        which: str = "best") -> dict[str, Any]:
  """Restores a sequence run and evaluates it on config's split into WORKDIR."""
  return epochs_lib.evaluate_checkpoint(load_recommender, config, restore_from, workdir, which)
