"""A trained pair model (MF, GMF, MLP, NeuMF, the hybrid deep CF) behind the evaluator interface.

The model's pieces come from the pair family's setup (netrec_jax/train/pair.py: store, split,
config, mesh, the Flax module, table specs, side features, the jitted predict step): the
recommender only reads them. Scores are computed on the devices, batch by batch; a new user
is folded in by closed-form ridge regression (explicit MF) or by Adam on their rows.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from netrec_jax import models
from netrec_jax import sharding as sharding_lib
from netrec_jax.eval import evaluator
from netrec_jax.models.base import gather_features


def predict_pairs(exp: Any, state, users: np.ndarray, items: np.ndarray) -> np.ndarray:
  """Scores for (dense user, dense item) pairs, batch by batch on the devices."""
  size = sharding_lib.round_to_data(exp.config.train.eval_batch_size, exp.mesh)
  sharding = sharding_lib.batch_sharding(exp.mesh)
  out = np.empty(len(users), np.float32)
  for lo in range(0, len(users), size):
    batch = {"user": np.asarray(users[lo:lo + size], np.int32),
             "item": np.asarray(items[lo:lo + size], np.int32)}
    n = len(batch["user"])
    batch = {k: np.pad(v, (0, size - n)) for k, v in batch.items()}
    scores = exp.predict(state, sharding_lib.put_batch(batch, sharding), exp.aux)
    out[lo:lo + n] = sharding_lib.to_host(scores)[:n]
  return out


class PairRecommender:
  """A trained JAX model behind the evaluator interface (netrec_jax.eval.evaluator).

  Besides scoring, it exposes what using a trained model needs (launch.py's recommend /
  similar / analyze / serve modes): the store and split it was trained on, its embeddings and
  biases as host arrays, and `fold_in` for a new user who rated a few movies.
  """

  # A new user's vector from a handful of ratings: gradient fold-in settings (NCF / hybrid).
  FOLD_IN_STEPS = 200
  FOLD_IN_LR = 0.05
  FOLD_IN_NEGATIVES = 4  # implicit models: sampled unrated items per given movie

  def __init__(self, exp: Any, state, which: str = "training",
               meta: dict[str, Any] | None = None):
    self.exp, self.state, self.which, self.meta = exp, state, which, meta or {}
    self.store, self.split, self.config = exp.store, exp.split, exp.config
    self.name = exp.config.model.name
    self.prediction_note = (f"clipped to the rating range {list(exp.store.rating_range)}"
                            if exp.config.task == "explicit" else "logits (ranking only)")
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

  def ranking_vectors(self):
    """MF ranks a user's items by <p_u, q_i> + b_i (mu and b_u are the same for every item):
    the evaluator may take its top-K on the device. Only plain float32 MF (towers do not
    factorise; bfloat16 products would rank differently from score_items)."""
    if self.exp.config.model.name != "mf" or self.exp.config.model.compute_dtype != "float32":
      return None  # the host path ranks it
    bias = self.biases()["item"] if "item_bias" in self.exp.specs else None
    return self.user_vectors(), self.item_vectors(), bias

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
      features = gather_features(aux, pair_users, pair_items)
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
