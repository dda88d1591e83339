"""GLocal-K (Han et al. 2021, "GLocal-K: Global and Local Kernels for Recommender Systems").

An item-based autoencoder over the dense rating matrix R [n_items, n_users] (0 = unrated),
as the paper's reference code (usydnlp/Glocal_K) builds it:

- Local kernel. Every dense layer's weight is W * K(U, V), K[i, j] = max(0, 1 - |u_i - v_j|^2)
  with learnable vectors u_i (one per input unit) and v_j (one per output unit) of width
  kernel_dim: the finite-support kernel zeroes weights whose units drift apart, a learned
  sparsity. Two sigmoid layers of `hidden` units, then an identity layer back to n_users.
- Pre-training minimises 0.5 sum_{observed} (R - f(R))^2 + lambda_2 / 2 sum W^2 +
  lambda_s / 2 sum K^2 over every layer (TF's l2_regularizer halves, so do we).
- Global kernel (fine-tuning). The current reconstruction f(R) is average-pooled over users,
  one value per item, d [n_items]; these weight n_items learnable gk_size x gk_size kernels
  (conv_kernel [n_items, gk_size^2], a dense layer from d to the kernel's cells), scaled by
  dot_scale: GK = dot_scale * sum_i d_i k_i. R is convolved with GK (cross-correlation, SAME
  zero padding, ReLU) and the local autoencoder reconstructs from that: prediction f(conv(R)).
  The paper's text speaks of the pooled vector as the kernels' weights; the reference code
  uses them as they are (no softmax), and so do we. The pooling reads f(R) through the same
  (shared) local layers, and gradients flow through it, as in the reference.

Item rows may be padded (for sharding over devices): padded rows are zero in R and in the
mask, and the pooling reads only the first n_items rows.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def local_kernel(u: jax.Array, v: jax.Array) -> jax.Array:
  """K [n_in, n_out] = max(0, 1 - |u_i - v_j|^2) of u [n_in, d] and v [n_out, d].

  The squared distance directly (the reference squares tf.norm, whose gradient is NaN at 0).
  """
  dist2 = jnp.sum(jnp.square(u[:, None, :] - v[None, :, :]), axis=-1)
  return jnp.maximum(0.0, 1.0 - dist2)


def _symmetric_glorot_bias(key, shape, dtype=jnp.float32):
  """TF1's default for tf.get_variable (glorot_uniform) on a vector: fan_in = fan_out = n."""
  limit = jnp.sqrt(3.0 / shape[0])
  return jax.random.uniform(key, shape, dtype, -limit, limit)


class KernelDense(nn.Module):
  """y = activation(x @ (W * local_kernel(u, v)) + b)."""

  features: int
  kernel_dim: int = 5
  activation: str = "sigmoid"  # sigmoid | identity

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n_in = x.shape[-1]
    w = self.param("W", nn.initializers.xavier_uniform(), (n_in, self.features))
    u = self.param("u", nn.initializers.truncated_normal(1e-3), (n_in, self.kernel_dim))
    v = self.param("v", nn.initializers.truncated_normal(1e-3), (self.features, self.kernel_dim))
    b = self.param("b", _symmetric_glorot_bias, (self.features,))
    y = x @ (w * local_kernel(u, v)) + b
    return nn.sigmoid(y) if self.activation == "sigmoid" else y


def global_kernel(reconstruction: jax.Array, conv_kernel: jax.Array, gk_size: int,
                  dot_scale: float) -> jax.Array:
  """[gk_size, gk_size]: the per-item means of the reconstruction weighting the item kernels.

  reconstruction [>= n_items, n_users] (padded rows beyond n_items ignored); conv_kernel
  [n_items, gk_size^2].
  """
  pooled = jnp.mean(reconstruction[:conv_kernel.shape[0]], axis=1)  # item-based pooling
  return (pooled @ conv_kernel * dot_scale).reshape(gk_size, gk_size)


def global_conv(ratings: jax.Array, kernel: jax.Array) -> jax.Array:
  """ReLU(ratings * kernel): 2-D cross-correlation over (items, users), SAME zero padding."""
  out = jax.lax.conv_general_dilated(ratings[None, None], kernel[None, None], (1, 1), "SAME")
  return nn.relu(out[0, 0])


class GLocalK(nn.Module):
  """ratings [rows, n_users] -> the reconstruction [rows, n_users].

  finetune=False: the pre-training network (the local kernel AE alone); True: the fine-tuning
  network (global kernel convolution, then the same local AE). Both phases share parameters;
  conv_kernel is created by either call (so one tree serves both) and read only by the second.
  """

  n_items: int
  n_users: int
  hidden: int = 500
  layers: int = 2
  kernel_dim: int = 5
  gk_size: int = 3
  dot_scale: float = 1.0

  def setup(self):
    # Parameters: local_0 .. local_{layers-1}, out, conv_kernel.
    self.local = [KernelDense(self.hidden, self.kernel_dim, "sigmoid")
                  for _ in range(self.layers)]
    self.out = KernelDense(self.n_users, self.kernel_dim, "identity")
    self.conv_kernel = self.param("conv_kernel", nn.initializers.truncated_normal(0.1),
                                  (self.n_items, self.gk_size ** 2))

  def local_ae(self, x: jax.Array) -> jax.Array:
    return self.out(self.encode(x))

  def encode(self, x: jax.Array) -> jax.Array:
    """The last sigmoid layer's output [rows, hidden]: what the output layer reads."""
    for layer in self.local:
      x = layer(x)
    return x

  def network_input(self, ratings: jax.Array, finetune: bool) -> jax.Array:
    """What the local AE reads: R (pre-training) or ReLU(R * global kernel) (fine-tuning)."""
    if not finetune:
      return ratings
    kernel = global_kernel(self.local_ae(ratings), self.conv_kernel, self.gk_size,
                           self.dot_scale)
    return global_conv(ratings, kernel)

  def codes(self, ratings: jax.Array, finetune: bool = False) -> jax.Array:
    """Each item row's code [rows, hidden] in the phase's network (item embeddings)."""
    return self.encode(self.network_input(ratings, finetune))

  def __call__(self, ratings: jax.Array, finetune: bool = False) -> jax.Array:
    return self.local_ae(self.network_input(ratings, finetune))


def regulariser(params, lambda_2: float, lambda_s: float) -> jax.Array:
  """lambda_2 / 2 sum W^2 + lambda_s / 2 sum K(u, v)^2 over every kernel layer."""
  total = jnp.zeros((), jnp.float32)
  for name, layer in params["params"].items():
    if name == "conv_kernel":
      continue
    kernel = local_kernel(layer["u"], layer["v"])
    total = (total + 0.5 * lambda_2 * jnp.sum(jnp.square(layer["W"]))
             + 0.5 * lambda_s * jnp.sum(jnp.square(kernel)))
  return total


def objective(model: GLocalK, params, ratings: jax.Array, mask: jax.Array, finetune: bool,
              lambda_2: float, lambda_s: float) -> jax.Array:
  """The training loss: 0.5 sum_{observed} (R - pred)^2 + the regulariser (the reference's
  tf.nn.l2_loss of the masked difference plus its regularisation terms)."""
  pred = model.apply(params, ratings, finetune)
  return 0.5 * jnp.sum(jnp.square(mask * (ratings - pred))) + regulariser(params, lambda_2,
                                                                          lambda_s)
