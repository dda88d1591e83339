"""Collaborative-filtering models: biased MF, the NCF family (GMF, MLP, NeuMF), hybrid deep CF.

Each module maps gathered embedding rows (see base.py) and optional side features to one score
per example: a rating for explicit feedback (trained with MSE), a logit for implicit feedback
(BCE with sampled negatives). `global_mean` is the training mean rating, so explicit models
start at the global-mean predictor instead of at zero.
"""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from netrec_jax.models.base import ITEM, USER, Rows, TableSpec


def _check_rows(rows: Rows, specs: dict[str, TableSpec]) -> int:
  batch = next(iter(rows.values())).shape[0]
  for name, spec in specs.items():
    chex.assert_shape(rows[name], (batch, spec.dim))
  return batch


class BiasedMF(nn.Module):
  """mu + b_u + b_i + <p_u, q_i>: the dot-product baseline every neural model must beat."""

  embed_dim: int = 64
  use_bias: bool = True
  global_mean: float = 0.0
  init_std: float = 0.05
  dtype: jnp.dtype = jnp.float32

  def table_specs(self) -> dict[str, TableSpec]:
    specs = {"user_vec": TableSpec(USER, self.embed_dim, self.init_std),
             "item_vec": TableSpec(ITEM, self.embed_dim, self.init_std)}
    if self.use_bias:
      specs |= {"user_bias": TableSpec(USER, 1, 0.0), "item_bias": TableSpec(ITEM, 1, 0.0)}
    return specs

  @nn.compact
  def __call__(self, rows: Rows, features: jax.Array | None = None, *, train: bool = False):
    del features, train
    _check_rows(rows, self.table_specs())
    dot = jnp.sum(rows["user_vec"].astype(self.dtype) * rows["item_vec"].astype(self.dtype), -1)
    out = dot.astype(jnp.float32) + self.global_mean
    if self.use_bias:
      out = out + rows["user_bias"][:, 0] + rows["item_bias"][:, 0]
    return out


class _Tower(nn.Module):
  """Dense -> (BatchNorm) -> ReLU -> (Dropout) blocks."""

  hidden: Sequence[int]
  dropout: float = 0.0
  batch_norm: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    for width in self.hidden:
      # No bias before batch norm: BN removes it, and Adam would amplify its ~0 gradient.
      x = nn.Dense(width, use_bias=not self.batch_norm, dtype=self.dtype)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
      x = nn.relu(x)
      if self.dropout > 0:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return x


class NCF(nn.Module):
  """He et al. 2017: GMF (elementwise product), MLP (tower on concatenation), or NeuMF (both).

  `variant` is gmf, mlp or neumf. The MLP's user and item embeddings are mlp_layers[0] // 2
  wide each, as in the paper's [64, 32, 16, 8] tower.
  """

  variant: str = "neumf"
  gmf_dim: int = 32
  mlp_layers: Sequence[int] = (64, 32, 16, 8)
  dropout: float = 0.0
  global_mean: float = 0.0
  use_features: bool = False
  init_std: float = 0.01
  dtype: jnp.dtype = jnp.float32

  def table_specs(self) -> dict[str, TableSpec]:
    if self.variant not in ("gmf", "mlp", "neumf"):
      raise ValueError(f"NCF variant must be gmf, mlp or neumf, got {self.variant!r}")
    specs = {}
    if self.variant in ("gmf", "neumf"):
      specs |= {"user_gmf": TableSpec(USER, self.gmf_dim, self.init_std),
                "item_gmf": TableSpec(ITEM, self.gmf_dim, self.init_std)}
    if self.variant in ("mlp", "neumf"):
      half = self.mlp_layers[0] // 2
      specs |= {"user_mlp": TableSpec(USER, half, self.init_std),
                "item_mlp": TableSpec(ITEM, half, self.init_std)}
    return specs

  @nn.compact
  def __call__(self, rows: Rows, features: jax.Array | None = None, *, train: bool = False):
    _check_rows(rows, self.table_specs())
    parts = []
    if self.variant in ("gmf", "neumf"):
      parts.append(rows["user_gmf"] * rows["item_gmf"])
    if self.variant in ("mlp", "neumf"):
      x = [rows["user_mlp"], rows["item_mlp"]]
      if self.use_features and features is not None:
        x.append(features)
      x = jnp.concatenate(x, -1).astype(self.dtype)
      parts.append(_Tower(self.mlp_layers[1:], self.dropout, dtype=self.dtype)(x, train))
    h = jnp.concatenate([p.astype(self.dtype) for p in parts], -1)
    out = nn.Dense(1, dtype=self.dtype, name="predict")(h)[:, 0].astype(jnp.float32)
    return out + self.global_mean


class HybridDeepCF(nn.Module):
  """The source documents' biased deep CF: mu + b_u + b_i + MLP([p_u; q_i; features])."""

  embed_dim: int = 64
  hidden: Sequence[int] = (128, 64, 32)
  dropout: float = 0.2
  batch_norm: bool = True
  global_mean: float = 0.0
  use_features: bool = False
  init_std: float = 0.05
  dtype: jnp.dtype = jnp.float32

  def table_specs(self) -> dict[str, TableSpec]:
    return {"user_vec": TableSpec(USER, self.embed_dim, self.init_std),
            "item_vec": TableSpec(ITEM, self.embed_dim, self.init_std),
            "user_bias": TableSpec(USER, 1, 0.0), "item_bias": TableSpec(ITEM, 1, 0.0)}

  @nn.compact
  def __call__(self, rows: Rows, features: jax.Array | None = None, *, train: bool = False):
    _check_rows(rows, self.table_specs())
    x = [rows["user_vec"], rows["item_vec"]]
    if self.use_features and features is not None:
      x.append(features)
    x = jnp.concatenate(x, -1).astype(self.dtype)
    h = _Tower(self.hidden, self.dropout, self.batch_norm, self.dtype)(x, train)
    interaction = nn.Dense(1, dtype=self.dtype, name="predict")(h)[:, 0].astype(jnp.float32)
    return self.global_mean + rows["user_bias"][:, 0] + rows["item_bias"][:, 0] + interaction
