"""The dense optimizer every family uses, built from config.optimizer in one place.

clip (optimizer.clip_norm) -> coupled L2 (optimizer.l2, AutoRec's) -> adam | adamw | sgd on
the schedule (optimizer.schedule); adamw decays the parameters optimizer.decay_mask names.
Reduce-on-plateau is the loop's: it multiplies the state's `lr_scale`, which `apply_gradients`
applies to every update, so it works the same for every family without rebuilding the
optimizer.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

DENSE = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "warmup_cosine")
# adamw's decoupled weight decay on: matrices (ndim >= 2: kernels and embedding tables, not
# biases or norms, as BERT) | all (every parameter, as plain optax.adamw).
DECAY_MASKS = ("matrices", "all")


def learning_rate_schedule(peak: float, opt_cfg: Any, total_steps: int) -> optax.Schedule:
  if opt_cfg.schedule == "constant":
    return optax.constant_schedule(peak)
  if opt_cfg.schedule == "warmup_cosine":
    warmup = min(int(opt_cfg.warmup_steps), max(total_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1),
                                              end_value=peak * opt_cfg.final_lr_fraction)
  raise ValueError(f"optimizer.schedule must be one of {SCHEDULES}, got {opt_cfg.schedule!r}")


def decay_mask(kind: str | None):
  """The adamw mask of optimizer.decay_mask (None, a config from before the field: matrices,
  as it trained). Both are masks, so the optimizer state has one structure either way."""
  kind = kind or "matrices"
  if kind not in DECAY_MASKS:
    raise ValueError(f"optimizer.decay_mask must be one of {DECAY_MASKS}, got {kind!r}")
  return lambda params: jax.tree.map(lambda x: kind == "all" or x.ndim >= 2, params)


def dense_optimizer(opt_cfg: Any, total_steps: int) -> optax.GradientTransformation:
  """optax chain for a family's Flax params, from config.optimizer."""
  lr = learning_rate_schedule(opt_cfg.lr, opt_cfg, total_steps)
  parts = []
  if opt_cfg.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(opt_cfg.clip_norm))
  if opt_cfg.l2 > 0:
    parts.append(optax.add_decayed_weights(opt_cfg.l2))
  if opt_cfg.dense == "adam":
    parts.append(optax.adam(lr))
  elif opt_cfg.dense == "adamw":
    parts.append(optax.adamw(lr, weight_decay=opt_cfg.weight_decay,
                             mask=decay_mask(opt_cfg.get("decay_mask"))))
  elif opt_cfg.dense == "sgd":
    parts.append(optax.sgd(lr, momentum=opt_cfg.momentum or None))
  else:
    raise ValueError(f"optimizer.dense must be one of {DENSE}, got {opt_cfg.dense!r}")
  return optax.chain(*parts)


def init_tree(params: Any, tx: optax.GradientTransformation, **extra: Any) -> dict[str, Any]:
  """The training state of an optax family: params, optimizer state, step and lr_scale."""
  return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32),
          "lr_scale": jnp.ones((), jnp.float32), **extra}


def apply_gradients(tree: dict[str, Any], grads: Any, tx: optax.GradientTransformation
                    ) -> tuple[dict[str, Any], jax.Array]:
  """One optimizer update of tree["params"] (scaled by the plateau's lr_scale); grad norm."""
  updates, opt_state = tx.update(grads, tree["opt_state"], tree["params"])
  updates = jax.tree.map(lambda u: u * tree["lr_scale"], updates)
  new = dict(tree, params=optax.apply_updates(tree["params"], updates), opt_state=opt_state,
             step=tree["step"] + 1)
  return new, optax.tree.norm(grads)
