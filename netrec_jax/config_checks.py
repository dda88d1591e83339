"""Range checks of numeric config fields, run by the launcher before any work.

ml_collections checks types, not values: `optimizer.sparse_lr=-1` or `1e6` used to train for
minutes to an RMSE of 2.4. Every field below must lie in its range; fields a config does not
have (older checkpoints, custom configs) are skipped, and so are fields left to the model's
defaults (None) until netrec_jax/train/family.py's resolve fills them.
"""

from __future__ import annotations

import math
from typing import Any, Callable


class ConfigError(ValueError):
  """A config value outside its range (or not a number where one is needed)."""


# (description, test) by kind of field.
_RANGES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "lr": ("a learning rate: > 0 and < 10", lambda x: 0 < x < 10),
    "positive": ("> 0", lambda x: x > 0),
    "non_negative": (">= 0", lambda x: x >= 0),
    "fraction": ("in [0, 1)", lambda x: 0 <= x < 1),
    "fraction_closed": ("in [0, 1]", lambda x: 0 <= x <= 1),
    "open_fraction": ("in (0, 1)", lambda x: 0 < x < 1),
    "factor": ("in (0, 1]", lambda x: 0 < x <= 1),
    "at_least_1": (">= 1", lambda x: x >= 1),
    "devices": ("-1 (all) or >= 1", lambda x: x == -1 or x >= 1),
    "cpu_devices": ("-1 (one per core), 0 (JAX's default) or >= 1", lambda x: x >= -1),
}

FIELDS: dict[str, str] = {
    # Learning rates.
    "optimizer.sparse_lr": "lr", "optimizer.lr": "lr",
    # L2, weight decay, clipping and other non-negative amounts.
    "optimizer.embed_l2": "non_negative", "optimizer.weight_decay": "non_negative",
    "optimizer.l2": "non_negative", "optimizer.clip_norm": "non_negative",
    "optimizer.warmup_steps": "non_negative", "optimizer.plateau_patience": "non_negative",
    "graph.l2": "non_negative", "data.min_user_ratings": "non_negative",
    "data.min_item_ratings": "non_negative", "train.early_stopping_patience": "non_negative",
    "train.min_delta": "non_negative", "train.prefetch": "non_negative",
    "train.num_negatives": "non_negative", "graph.layers": "non_negative",
    "graph.edge_chunk": "non_negative", "eval.sampled_negatives": "non_negative",
    "eval.relevance_threshold": "non_negative", "content.title_weight": "non_negative",
    "content.year_weight": "non_negative", "content.genre_weight": "non_negative",
    "content.tag_weight": "non_negative", "content.user_mean_shrinkage": "non_negative",
    "content.hybrid_shrinkage": "non_negative", "youtube.softmax_weight": "non_negative",
    "youtube.rating_weight": "non_negative", "youtube.sampler_power": "non_negative",
    "vae.beta_cap": "non_negative", "vae.anneal_epochs": "non_negative",
    "split.interaction_threshold": "non_negative", "split.min_user_interactions": "non_negative",
    "split.min_item_interactions": "non_negative",
    "ease.min_stars": "non_negative", "knn.shrink": "non_negative",
    "knn.min_stars": "non_negative", "rp3.alpha": "non_negative", "rp3.beta": "non_negative",
    "rp3.min_stars": "non_negative", "ials.regularization": "non_negative",
    "ials.reg_exponent": "non_negative", "ials.cg_steps": "non_negative",
    "ials.min_stars": "non_negative", "ials.alpha": "non_negative",
    # Dropout rates, shares and decays.
    "model.dropout": "fraction", "autoencoder.dropout": "fraction",
    "autoencoder.input_dropout": "fraction", "graph.dropout": "fraction",
    "sequence.dropout": "fraction", "youtube.dropout": "fraction", "vae.dropout": "fraction",
    "split.valid_fraction": "fraction", "split.test_fraction": "fraction",
    "sequence.mask_prob": "fraction", "sequence.last_mask_prob": "fraction_closed",
    "split.target_fraction": "open_fraction",
    "graph.ema_decay": "fraction", "optimizer.momentum": "fraction",
    "optimizer.final_lr_fraction": "fraction_closed", "optimizer.plateau_factor": "factor",
    # Epochs, batch sizes, widths, counts and intervals.
    "train.epochs": "positive", "train.batch_size": "positive", "train.eval_every": "positive",
    "train.eval_batch_size": "positive", "autoencoder.batch_entries": "positive",
    "eval.user_batch": "positive", "model.embed_dim": "positive", "model.gmf_dim": "positive",
    "autoencoder.autorec_hidden": "positive", "model.init_std": "positive",
    "graph.embed_dim": "positive", "graph.init_std": "positive", "graph.gcmc_hidden": "positive",
    "graph.gcmc_dense": "positive", "graph.num_basis": "positive",
    "graph.bpr_negatives": "positive", "sequence.max_len": "positive",
    "sequence.hidden": "positive", "sequence.layers": "positive", "sequence.heads": "positive",
    "youtube.embed_dim": "positive", "youtube.out_dim": "positive",
    "youtube.max_history": "positive", "youtube.eval_max_history": "positive",
    "youtube.num_sampled": "positive", "content.min_df": "positive",
    "train.check_every_steps": "positive", "train.log_every_s": "positive",
    "eda_top_k": "positive", "data.synthetic.n_users": "positive",
    "data.synthetic.n_items": "positive", "data.synthetic.n_ratings": "positive",
    "data.synthetic.rank": "positive", "split.heldout_users": "positive",
    "data.synthetic.drift_item_std": "non_negative",
    "data.synthetic.drift_user_std": "non_negative",
    "ease.l2": "positive", "ease.max_items": "positive", "knn.k": "positive",
    "rp3.k": "positive", "ials.factors": "positive", "ials.iterations": "positive",
    "ials.unobserved_weight": "positive", "tune.trials": "positive",
    "tune.startup_trials": "non_negative",
    "tune.prune_warmup_epochs": "non_negative",
    "svdpp.embed_dim": "positive", "svdpp.init_std": "positive",
    "timesvdpp.n_bins": "positive", "timesvdpp.beta": "factor",
    "timesvdpp.bin_l2": "non_negative", "timesvdpp.alpha_l2": "non_negative",
    "timesvdpp.day_l2": "non_negative", "timesvdpp.drift_l2": "non_negative",
    # Layer widths and cut-offs (every entry).
    "model.mlp_layers": "positive", "model.hidden": "positive",
    "autoencoder.layers": "positive", "youtube.tower": "positive", "vae.hidden": "positive",
    "vae.latent": "positive", "eval.ks": "positive",
    # Devices.
    "mesh.model": "at_least_1", "mesh.data": "devices",
    "mesh.cpu_devices": "cpu_devices",
}


def _lookup(config: Any, dotted: str) -> tuple[bool, Any]:
  node = config
  for part in dotted.split("."):
    try:
      if part not in node:
        return False, None
      node = node[part]
    except TypeError:  # not a section
      return False, None
  return True, node


def problems(config: Any) -> list[str]:
  """Every field outside its range, as 'field = value (must be ...)'."""
  out = []
  for field, kind in FIELDS.items():
    found, value = _lookup(config, field)
    if not found or value is None:  # None: the model's default, checked once resolved
      continue
    what, ok = _RANGES[kind]
    values = list(value) if isinstance(value, (tuple, list)) else [value]
    for v in values:
      number = isinstance(v, (int, float)) and not isinstance(v, bool)
      if not number or math.isnan(v) or not ok(v):
        out.append(f"{field} = {value!r} (must be {what})")
        break
  return out


def validate_ranges(config: Any) -> None:
  """Raises ConfigError naming every numeric field outside its range (one line)."""
  found = problems(config)
  if found:
    raise ConfigError("config out of range: " + "; ".join(found)
                      + " (see netrec_jax/configs.py)")
