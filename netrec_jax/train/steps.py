"""Pure step functions: train_step(state, batch, aux) -> (state, metrics) and predict_step.

They are plain functions of arrays; `trainer.py` compiles them with jax.jit and explicit
in/out shardings over the mesh. A batch is a dict of [B] arrays: user, item (int32 dense
indices), rating (float32 stars) and weight (1 for real examples, 0 for padding). `aux` holds
replicated side-feature tables (or is empty).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from netrec_jax.models.base import USER, TableSpec, gather_features
from netrec_jax.train import sparse
from netrec_jax.train.state import TrainState

Batch = dict[str, jax.Array]
TASKS = ("explicit", "implicit")


def _expand_implicit(batch: Batch, key: jax.Array, n_items: int, num_negatives: int) -> Batch:
  """Each positive plus num_negatives uniformly sampled items labelled 0 (NCF's protocol).

  Sampled items are not checked against the user's positives: at Netflix density (1.2%)
  about 1 in 85 negatives is a false negative, the usual approximation.
  """
  b = batch["user"].shape[0]
  negatives = jax.random.randint(key, (b, num_negatives), 0, n_items, dtype=jnp.int32)
  repeat = lambda x: jnp.repeat(x, num_negatives)
  return {
      "user": jnp.concatenate([batch["user"], repeat(batch["user"])]),
      "item": jnp.concatenate([batch["item"], negatives.reshape(-1)]),
      "rating": jnp.concatenate([jnp.ones(b), jnp.zeros(b * num_negatives)]),
      "weight": jnp.concatenate([batch["weight"], repeat(batch["weight"])]),
  }


def make_train_step(model, specs: dict[str, TableSpec], *, task: str,
                    dense_tx: optax.GradientTransformation, sparse_kind: str,
                    sparse_lr: Callable[[jax.Array], jax.Array], sparse_l2: float,
                    sparse_hyper: dict[str, Any], n_items: int,
                    num_negatives: int = 4) -> Callable:
  """train_step for `model`: MSE on ratings (explicit) or BCE with sampled negatives."""
  if task not in TASKS:
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")

  def train_step(state: TrainState, batch: Batch, aux: dict[str, jax.Array]):
    key = jax.random.fold_in(state.rng, state.step)
    key_dropout, key_negatives = jax.random.split(key)
    if task == "implicit":
      batch = _expand_implicit(batch, key_negatives, n_items, num_negatives)
    weight = batch["weight"]
    total_weight = jnp.maximum(weight.sum(), 1.0)
    indices = {name: batch["user"] if spec.entity == USER else batch["item"]
               for name, spec in specs.items()}
    rows = {name: state.tables[name][idx] for name, idx in indices.items()}
    features = gather_features(aux, batch["user"], batch["item"])
    has_stats = bool(jax.tree.leaves(state.batch_stats))

    def loss_fn(params, rows):
      variables = {"params": params}
      if has_stats:
        variables["batch_stats"] = state.batch_stats
      out, updates = model.apply(variables, rows, features, train=True,
                                 rngs={"dropout": key_dropout},
                                 mutable=["batch_stats"] if has_stats else [])
      if task == "explicit":
        per_example = jnp.square(out - batch["rating"])
      else:
        per_example = optax.sigmoid_binary_cross_entropy(out, batch["rating"])
      loss = jnp.sum(per_example * weight) / total_weight
      return loss, updates

    (loss, updates), (grad_params, grad_rows) = jax.value_and_grad(
        loss_fn, argnums=(0, 1), has_aux=True)(state.params, rows)

    dense_updates, opt_state = dense_tx.update(grad_params, state.opt_state, state.params)
    dense_updates = jax.tree.map(lambda u: u * state.lr_scale, dense_updates)
    params = optax.apply_updates(state.params, dense_updates)

    # Row gradients of the mean loss are 1/total_weight of per-example gradients; sparse
    # learning rates are per example (as in SGD matrix factorization), so scale back up.
    lr = sparse_lr(state.step) * state.lr_scale
    tables, slots = {}, {}
    for name, idx in indices.items():
      n_rows = state.tables[name].shape[0]
      idx = jnp.where(weight > 0, idx, n_rows)  # padding examples never touch a row
      tables[name], slots[name] = sparse.apply(
          sparse_kind, state.tables[name], state.slots[name], idx,
          grad_rows[name] * total_weight, lr=lr, l2=sparse_l2, step=state.step,
          hyper=sparse_hyper)

    new_state = state.replace(
        step=state.step + 1, tables=tables, slots=slots, params=params, opt_state=opt_state,
        batch_stats=updates.get("batch_stats", state.batch_stats) if has_stats else
        state.batch_stats)
    metrics = {"loss": loss, "weight": weight.sum(),
               "grad_norm": optax.tree.norm(grad_params) if jax.tree.leaves(grad_params)
               else jnp.zeros(())}
    return new_state, metrics

  return train_step


def make_predict_step(model, specs: dict[str, TableSpec]) -> Callable:
  """predict_step(state, batch, aux) -> [B] scores (ratings, or logits for implicit)."""

  def predict_step(state: TrainState, batch: Batch, aux: dict[str, jax.Array]) -> jax.Array:
    rows = {name: state.tables[name][batch["user"] if spec.entity == USER else batch["item"]]
            for name, spec in specs.items()}
    variables = {"params": state.params}
    if jax.tree.leaves(state.batch_stats):
      variables["batch_stats"] = state.batch_stats
    features = gather_features(aux, batch["user"], batch["item"])
    return model.apply(variables, rows, features, train=False)

  return predict_step
