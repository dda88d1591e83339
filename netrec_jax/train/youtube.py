"""Training the YouTube-style candidate model (netrec_jax/models/youtube.py) on the store.

An example is one training rating (user, target movie, stars). Its input is the user's other
training movies (a random window of at most youtube.max_history of them, the target always
left out, so neither the target nor its rating leaks into the history it is predicted from)
and side features: demographics where the store's users table keeps them (ML-100K and ML-1M:
age, gender, occupation) and the user's train-split activity (log count and mean stars, also
without the target). Batches of examples are sharded over the mesh's `data` axis; parameters
are replicated. The loss is the sampled softmax over the catalog (popularity-sampled
negatives, shared by the batch, with the log-Q correction) plus the rating head's MSE.

Serving uses the user's most recent youtube.eval_max_history training movies: ranking is a dot
product of the user vector with every item's softmax vector; ratings come from the rating head.

Checkpoints: WORKDIR/checkpoints/{latest,best} (orbax) hold params, optimizer state and epoch
with the config and store fingerprint; training resumes from `latest`, final metrics come from
`best` (by validation RMSE), and `load_recommender` restores it behind the evaluator interface.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from netrec_jax.data import datasets
from netrec_jax.data.histories import HISTORY_WEIGHTINGS, Histories, history_batch, side_features
from netrec_jax.eval import evaluator
from netrec_jax.models.youtube import YouTubeDNN, sampled_softmax_loss
from netrec_jax.train import input_pipeline, optim, state as state_lib
from netrec_jax.train.family import Family, Setup, SizedBatches



# ---------------------------------------------------------------------------------- setup
def _check_config(config) -> None:
  """What config_checks' per-field ranges cannot say: choices and relations between fields."""
  y = config.youtube
  if y.history_weighting not in HISTORY_WEIGHTINGS:
    raise ValueError(f"youtube.history_weighting must be one of {HISTORY_WEIGHTINGS}, got "
                     f"{y.history_weighting!r}")
  if y.softmax_weight + y.rating_weight == 0:
    raise ValueError("youtube.softmax_weight and rating_weight are both 0: nothing to train")


def _setup(config, global_mean: float | None = None) -> dict[str, Any]:
  """Store, split, histories, features, sampler, model and optimizer (training and restore)."""
  y = config.youtube
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  if split is None:
    raise ValueError("youtube_dnn needs a split (split.kind must not be 'none')")
  rows = {part: split.rows(part) for part in ("train", "valid", "test")}
  if len(rows["train"]) == 0:
    raise ValueError(f"split {split.name} has no training ratings")
  hist = Histories.from_rows(store, rows["train"])
  if global_mean is None:
    global_mean = float(hist.sums.sum() / hist.counts.sum())
  side = side_features(store, split, hist, y)
  # Popularity sampler over items with training ratings; log of expected counts per step.
  popularity = np.bincount(hist.items, minlength=store.n_items).astype(np.float64)
  weights = np.where(popularity > 0, popularity ** y.sampler_power, 0.0)
  sampler = weights / weights.sum()
  with np.errstate(divide="ignore"):
    log_q = np.where(sampler > 0, np.log(y.num_sampled * sampler), 0.0).astype(np.float32)
  model = YouTubeDNN(store.n_items, embed_dim=y.embed_dim, tower=tuple(y.tower),
                     out_dim=y.out_dim, dropout=y.dropout, global_mean=global_mean,
                     init_std=config.model.init_std)
  mesh = state_lib.make_mesh(config.mesh)
  data_devices = mesh.shape[state_lib.DATA]
  batch_size = -(-config.train.batch_size // data_devices) * data_devices
  steps_per_epoch = -(-len(rows["train"]) // batch_size)
  tx = optim.dense_optimizer(config.optimizer, steps_per_epoch * config.train.epochs)
  eval_width = int(min(y.eval_max_history, max(int(hist.counts.max()), 1)))

  def init(seed: int = 0):
    dummy = {"history": jnp.zeros((1, 2), jnp.int32), "weight": jnp.zeros((1, 2)),
             "side": jnp.zeros((1, side.width)), "items": jnp.zeros((1,), jnp.int32)}
    params = model.init({"params": jax.random.PRNGKey(seed)}, dummy["history"],
                        dummy["weight"], dummy["side"], dummy["items"])
    return optim.init_tree(params, tx)

  # Serving functions, compiled once per run (each epoch's validation reuses them).
  replicated, sharding = NamedSharding(mesh, P()), input_pipeline.batch_sharding(mesh)
  user_fn = jax.jit(lambda p, b: model.apply(p, b["history"], b["weight"], b["side"],
                                             method=YouTubeDNN.user_vector),
                    in_shardings=(replicated, sharding), out_shardings=sharding)
  rating_fn = jax.jit(lambda p, u, i: model.apply(p, u, i, method=YouTubeDNN.rating),
                      in_shardings=(replicated, sharding, sharding), out_shardings=sharding)

  return dict(store=store, split=split, rows=rows, hist=hist, side=side, sampler=sampler,
              user_fn=user_fn, rating_fn=rating_fn,
              log_q=log_q, global_mean=global_mean, model=model, mesh=mesh,
              batch_size=batch_size, tx=tx, init=init, eval_width=eval_width,
              popularity=popularity, steps_per_epoch=steps_per_epoch)


# ---------------------------------------------------------------------------------- train
def make_train_step(model: YouTubeDNN, tx, y):
  """One optimizer step on a batch of examples; losses are means over real examples."""

  def step(tree, batch, sampled, log_q, key):
    def loss_fn(p):
      user, target_logit, rating = model.apply(p, batch["history"], batch["weight"],
                                               batch["side"], batch["target"], train=True,
                                               rngs={"dropout": key})
      sampled_logits = model.apply(p, user, sampled, method=YouTubeDNN.softmax_logits)
      hits = (sampled[None, :] == batch["target"][:, None]
              if y.remove_accidental_hits else None)
      softmax = sampled_softmax_loss(target_logit, sampled_logits, log_q[batch["target"]],
                                     log_q[sampled], hits, correct=y.log_q_correction)
      mse = (rating - batch["stars"]) ** 2
      n = jnp.maximum(batch["example_weight"].sum(), 1.0)
      softmax = jnp.sum(batch["example_weight"] * softmax) / n
      mse = jnp.sum(batch["example_weight"] * mse) / n
      return y.softmax_weight * softmax + y.rating_weight * mse, (softmax, mse)

    (loss, (softmax, mse)), grads = jax.value_and_grad(loss_fn, has_aux=True)(tree["params"])
    tree, norm = optim.apply_gradients(tree, grads, tx)
    return tree, {"loss": loss, "softmax": softmax, "mse": mse, "grad_norm": norm}

  return step


def train_batch(s: dict[str, Any], config, rows: np.ndarray, rng: np.random.Generator
                ) -> dict[str, np.ndarray]:
  """The padded example batch of training store `rows` (padding has example_weight 0)."""
  store, size = s["store"], s["batch_size"]
  users = np.take(store.user, rows)
  targets = np.take(store.item, rows).astype(np.int32)
  stars = store.stars(rows)
  batch = history_batch(s["hist"], s["side"], users, config.youtube.max_history,
                        config.youtube.history_weighting, targets, stars, rng)
  batch.update(target=targets, stars=stars, example_weight=np.ones(len(rows), np.float32))
  pad = size - len(rows)
  if pad:
    batch = {k: np.pad(v, [(0, pad)] + [(0, 0)] * (v.ndim - 1)) for k, v in batch.items()}
  return batch


# ------------------------------------------------------------------------------- serving
class YouTubeRecommender:
  """A youtube_dnn model behind the evaluator interface (netrec_jax/eval/evaluator.py).

  predict() is the rating head; score_items() is the candidate generator: the dot product of
  the user vector with every item's softmax vector (plus its bias), i.e. nearest-neighbour
  search by inner product. Items without training ratings were never a target nor a sampled
  negative, so their vectors are untrained: they are ranked last.
  """

  fold_in_method = ("natural fold-in: the user vector is the tower applied to the (weighted) "
                    "mean of the rated movies' history embeddings, with activity features "
                    "from the given stars and demographics at the average user's")

  def __init__(self, s: dict[str, Any], params, config, which: str, meta: dict[str, Any]):
    self._s, self.params, self.config, self.which, self.meta = s, params, config, which, meta
    self.store, self.split, self.model = s["store"], s["split"], s["model"]
    self.name = config.model.name
    self.global_mean = float(s["global_mean"])
    self.rating_note = ""
    self.prediction_note = (f"rating head, clipped to the rating range "
                            f"{list(self.store.rating_range)}")
    self.cold_rule = ("users without training ratings: empty history + side features; items "
                      "without training ratings: untrained item vectors (ranked last)")
    self.trained_items = s["popularity"] > 0
    self._devices = s["mesh"].shape[state_lib.DATA]
    self._user_fn, self._rating_fn = s["user_fn"], s["rating_fn"]
    self._user_cache: np.ndarray | None = None
    self._item_cache: tuple[np.ndarray, np.ndarray] | None = None

  # -------------------------------------------------------------------------- vectors
  def _pad(self, n: int) -> int:
    return -(-n // self._devices) * self._devices

  def users_from_batch(self, batch: dict[str, np.ndarray]) -> np.ndarray:
    """User vectors [B, out_dim] of a history batch (padded to the data axis here)."""
    n = batch["history"].shape[0]
    size = self._pad(n)
    padded = {k: np.pad(v, [(0, size - n)] + [(0, 0)] * (v.ndim - 1)) for k, v in batch.items()}
    return np.asarray(jax.device_get(self._user_fn(self.params, padded)))[:n]

  def compute_user_vectors(self, users: np.ndarray, chunk: int = 1024) -> np.ndarray:
    out = []
    for lo in range(0, len(users), chunk):
      batch = history_batch(self._s["hist"], self._s["side"], users[lo:lo + chunk],
                            self._s["eval_width"], self.config.youtube.history_weighting)
      out.append(self.users_from_batch(batch))
    return (np.concatenate(out) if out else
            np.zeros((0, self.config.youtube.out_dim), np.float32))

  def user_vectors(self) -> np.ndarray:
    """[n_users, out_dim] user vectors (the tower's output) from each training history."""
    if self._user_cache is None:
      self._user_cache = self.compute_user_vectors(np.arange(self.store.n_users))
    return self._user_cache

  def _items(self) -> tuple[np.ndarray, np.ndarray]:
    if self._item_cache is None:
      p = jax.device_get(self.params["params"])
      self._item_cache = (np.asarray(p["item_out"]), np.asarray(p["item_out_bias"]))
    return self._item_cache

  def item_vectors(self) -> np.ndarray:
    """[n_items, out_dim] softmax item vectors (the serving index)."""
    return self._items()[0]

  # --------------------------------------------------------------------------- scoring
  def _scores(self, user_vecs: np.ndarray) -> np.ndarray:
    vecs, bias = self._items()
    scores = user_vecs @ vecs.T + bias[None]
    low = scores.min() - 1.0 if scores.size else 0.0
    scores[:, ~self.trained_items] = low
    return scores

  def score_items(self, users: np.ndarray) -> np.ndarray:
    return self._scores(self.user_vectors()[np.asarray(users)])

  def ratings_for_vectors(self, user_vecs: np.ndarray, items: np.ndarray,
                          chunk: int = 65536) -> np.ndarray:
    out = np.empty(len(items), np.float64)
    for lo in range(0, len(items), chunk):
      u, i = user_vecs[lo:lo + chunk], np.asarray(items[lo:lo + chunk], np.int32)
      n = len(i)
      size = self._pad(n)
      pred = self._rating_fn(self.params, np.pad(u, ((0, size - n), (0, 0))),
                             np.pad(i, (0, size - n)))
      out[lo:lo + n] = np.asarray(jax.device_get(pred))[:n]
    return out

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The rating head's stars for (dense user, dense item) pairs."""
    return self.ratings_for_vectors(self.user_vectors()[np.asarray(users)], items)

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] candidate scores for a new user who rated `items` (dense ids) with `stars`."""
    items, stars = evaluator.check_fold_in_input(items, stars, self.store.n_items)
    weighting = self.config.youtube.history_weighting
    weight = {"rating": stars, "centered": stars - stars.mean()}.get(weighting,
                                                                    np.ones_like(stars))
    batch = {"history": items[None].astype(np.int32), "weight": weight[None].astype(np.float32),
             "side": self._s["side"].new_user(stars)}
    return self._scores(self.users_from_batch(batch))[0].astype(np.float32)


# ------------------------------------------------------------------------------ the family
@dataclasses.dataclass
class YouTubeSetup(Setup):
  s: dict[str, Any] = None  # histories, features, sampler, model, serving functions (_setup)


class YouTubeFamily(Family):
  name = "youtube"
  models = ("youtube_dnn",)
  reads = ("youtube", "model.init_std")
  architecture_keys = tuple(f"youtube.{k}" for k in (
      "embed_dim", "tower", "out_dim", "history_weighting", "use_demographics", "use_activity"))
  DEFAULTS = {"youtube_dnn": {"optimizer.dense": "adamw", "train.batch_size": 1024}}

  def check(self, config) -> None:
    _check_config(config)

  def setup(self, config, meta: dict[str, Any] | None = None) -> YouTubeSetup:
    s = _setup(config, global_mean=meta["global_mean"] if meta else None)
    return YouTubeSetup(
        config=config, store=s["store"], split=s["split"], mesh=s["mesh"], valid_metric="rmse",
        lower_is_better=True, n_examples=len(s["rows"]["train"]), unit="examples",
        steps_per_epoch=s["steps_per_epoch"], extra_meta={"global_mean": s["global_mean"]},
        s=s)

  def init(self, setup: YouTubeSetup):
    seed = setup.config.seed
    return jax.jit(lambda: setup.s["init"](seed),
                   out_shardings=NamedSharding(setup.mesh, P()))()

  def make_step(self, setup: YouTubeSetup):
    """Params replicated, examples split over the data axis; the batch's sampled negatives
    travel with it (replicated inside the step)."""
    replicated = NamedSharding(setup.mesh, P())
    step = jax.jit(make_train_step(setup.s["model"], setup.s["tx"], setup.config.youtube),
                   in_shardings=(replicated, input_pipeline.batch_sharding(setup.mesh),
                                 replicated, replicated, replicated),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))
    log_q = jax.device_put(setup.s["log_q"], replicated)
    n_sampled = setup.config.youtube.num_sampled

    def run(tree, batch, key):
      # Every row of "sampled" holds the batch's shared negatives (a per-row copy shards
      # over `data` like the rest of the batch).
      return step(tree, {k: v for k, v in batch.items() if k != "sampled"},
                  batch["sampled"][0, :n_sampled], log_q, key)

    return run

  def batches(self, setup: YouTubeSetup, epoch: int):
    """Examples shuffled per epoch (seeded by epoch: a resumed run sees the same)."""
    s, config = setup.s, setup.config

    def make():
      rng = np.random.default_rng([config.seed, epoch])
      rows = s["rows"]["train"]
      order = rows[rng.permutation(len(rows))]
      for k in range(0, len(order), s["batch_size"]):
        batch = train_batch(s, config, np.sort(order[k:k + s["batch_size"]]), rng)
        sampled = rng.choice(s["store"].n_items, config.youtube.num_sampled,
                             p=s["sampler"]).astype(np.int32)
        batch["sampled"] = np.broadcast_to(sampled, (s["batch_size"], len(sampled))).copy()
        yield batch

    return SizedBatches(make, s["steps_per_epoch"])

  def recommender(self, setup: YouTubeSetup, tree, which: str, meta: dict[str, Any]):
    return YouTubeRecommender(setup.s, tree["params"], setup.config, which, meta)


FAMILY = YouTubeFamily()
