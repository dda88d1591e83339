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

from netrec_jax import sharding as sharding_lib
from netrec_jax.data import datasets
from netrec_jax.data.histories import HISTORY_WEIGHTINGS, Histories, history_batch, side_features
from netrec_jax.models.youtube import YouTubeDNN, sampled_softmax_loss
from netrec_jax.recommenders.youtube import YouTubeRecommender
from netrec_jax.train import optim
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
  mesh = sharding_lib.make_mesh(config.mesh)
  data_devices = mesh.shape[sharding_lib.DATA]
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
  replicated, sharding = NamedSharding(mesh, P()), sharding_lib.batch_sharding(mesh)
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
  # decay_mask all: the trainer before the one loop (a4ffec5) ran optax.adamw with decay on
  # every parameter (biases too), and youtube_dnn_ml100k's lr and weight decay were picked on
  # validation that way; the one optimizer's own default is matrices only.
  DEFAULTS = {"youtube_dnn": {"optimizer.dense": "adamw", "optimizer.decay_mask": "all",
                              "train.batch_size": 1024}}
  SEARCH_SPACE = {"youtube_dnn": {"optimizer.lr": ("log", 3e-4, 1e-2),
                                  "youtube.dropout": ("float", 0.0, 0.5),
                                  "optimizer.weight_decay": ("log", 1e-6, 1e-2)}}

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
                   in_shardings=(replicated, sharding_lib.batch_sharding(setup.mesh),
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
