"""Model registry: config.model.name -> a Flax module with table_specs() and __call__."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from netrec_jax.models.base import ITEM, USER, TableSpec, init_table
from netrec_jax.models.cf import NCF, BiasedMF, HybridDeepCF

MODELS = ("mf", "gmf", "mlp", "neumf", "hybrid")


def build_model(model_cfg: Any, global_mean: float = 0.0):
  """The module for config.model, starting at `global_mean` for explicit ratings."""
  name = model_cfg.name
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.get(model_cfg.compute_dtype)
  if dtype is None:
    raise ValueError(f"model.compute_dtype must be float32 or bfloat16, got "
                     f"{model_cfg.compute_dtype!r}")
  for field in ("embed_dim", "gmf_dim"):
    if model_cfg[field] <= 0:
      raise ValueError(f"model.{field} must be positive, got {model_cfg[field]}")
  for field in ("mlp_layers", "hidden"):
    if any(w <= 0 for w in model_cfg[field]):
      raise ValueError(f"model.{field} must hold positive widths, got {model_cfg[field]}")
  if not 0 <= model_cfg.dropout < 1:
    raise ValueError(f"model.dropout must be in [0, 1), got {model_cfg.dropout}")
  if name == "mf":
    return BiasedMF(model_cfg.embed_dim, use_bias=model_cfg.use_bias, global_mean=global_mean,
                    init_std=model_cfg.init_std, dtype=dtype)
  if name in ("gmf", "mlp", "neumf"):
    return NCF(name, model_cfg.gmf_dim, tuple(model_cfg.mlp_layers), model_cfg.dropout,
               global_mean=global_mean, use_features=model_cfg.use_features,
               init_std=model_cfg.init_std, dtype=dtype)
  if name == "hybrid":
    return HybridDeepCF(model_cfg.embed_dim, tuple(model_cfg.hidden), model_cfg.dropout,
                        model_cfg.batch_norm, global_mean=global_mean,
                        use_features=model_cfg.use_features, init_std=model_cfg.init_std,
                        dtype=dtype)
  raise ValueError(f"unknown model.name {name!r}; expected one of {MODELS}")


__all__ = ["build_model", "MODELS", "TableSpec", "USER", "ITEM", "init_table", "BiasedMF", "NCF",
           "HybridDeepCF"]
