"""Mult-VAE and Mult-DAE (Liang et al. 2018, "Variational Autoencoders for Collaborative
Filtering"): a user's whole interaction row in, a multinomial over the catalog out.

As in the paper's reference code (dawenl/vae_cf): the binary row is L2-normalised, input
dropout (0.5) applied, then a tanh MLP [n_items -> 600 -> 200]; the VAE's last encoder layer
gives the mean and log-variance of a 200-d Gaussian code, the DAE's gives the code itself; the
decoder mirrors the encoder ([200 -> 600 -> n_items], tanh between layers, none at the end).
The loss is the multinomial log-likelihood of the row, -sum_i x_i log softmax(logits)_i,
averaged over users, plus beta times the KL to the standard normal (VAE only), with beta
annealed linearly to a cap (`beta`). At inference the code is the mean (no sampling, no dropout).
"""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

VARIANTS = ("vae", "dae")


class MultVAE(nn.Module):
  """rows [B, n_items] (binary) -> (logits [B, n_items], KL per row [B])."""

  n_items: int
  hidden: tuple[int, ...] = (600,)  # encoder widths before the code; the decoder mirrors them
  latent: int = 200  # the code's width
  dropout: float = 0.5  # on the input row, as the paper
  variational: bool = True  # False: Mult-DAE (the code is deterministic, no KL)

  def setup(self):
    dense = lambda n, name: nn.Dense(n, name=name, kernel_init=nn.initializers.xavier_uniform(),
                                     bias_init=nn.initializers.normal(0.001))
    self.encoder = [dense(n, f"enc_{k}") for k, n in enumerate(self.hidden)]
    self.code = dense(2 * self.latent if self.variational else self.latent, "code")
    self.decoder = [dense(n, f"dec_{k}") for k, n in enumerate(reversed(self.hidden))]
    self.out = dense(self.n_items, "out")
    self.drop = nn.Dropout(self.dropout)

  def encode(self, rows: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """(mean, log-variance) of the code (the DAE's log-variance is zeros)."""
    chex.assert_shape(rows, (None, self.n_items))
    x = rows / jnp.maximum(jnp.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)
    x = self.drop(x, deterministic=not train)
    for layer in self.encoder:
      x = jnp.tanh(layer(x))
    h = self.code(x)
    if not self.variational:
      return h, jnp.zeros_like(h)
    return h[:, :self.latent], h[:, self.latent:]

  def decode(self, z: jax.Array) -> jax.Array:
    for layer in self.decoder:
      z = jnp.tanh(layer(z))
    return self.out(z)

  def __call__(self, rows: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    mean, logvar = self.encode(rows, train)
    z = mean
    if self.variational and train:
      z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(self.make_rng("sample"), mean.shape)
    kl = (0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)
          if self.variational else jnp.zeros(rows.shape[0]))
    return self.decode(z), kl


def multinomial_loss(logits: jax.Array, rows: jax.Array, kl: jax.Array, beta: jax.Array,
                     weight: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(loss, negative log-likelihood): means over the rows whose weight is 1 (padding is 0)."""
  chex.assert_equal_shape((logits, rows))
  nll = -jnp.sum(jax.nn.log_softmax(logits, axis=-1) * rows, axis=-1)
  n = jnp.maximum(weight.sum(), 1.0)
  nll = jnp.sum(nll * weight) / n
  return nll + beta * jnp.sum(kl * weight) / n, nll


def annealed_beta(step: Any, cap: float, anneal_steps: int) -> jax.Array:
  """beta = min(cap, step / anneal_steps) (the paper anneals over 200k updates to 0.2)."""
  if anneal_steps <= 0:
    return jnp.asarray(cap, jnp.float32)
  return jnp.minimum(cap, jnp.asarray(step, jnp.float32) / anneal_steps)
