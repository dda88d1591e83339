"""A YouTube-style deep candidate model (Covington et al. 2016) with a rating head.

The user is what they watched: the (optionally rating-weighted) mean of the input embeddings
of the movies in their history, concatenated with side features (demographics where the
store has them, activity counts), goes through a ReLU tower to a user vector u. Candidate
generation is a softmax over the catalog, logit(u, i) = <u, v_i> + c_i, trained with a
sampled softmax whose logits are corrected by log Q (the expected count of each item under
the popularity sampler), and served as dot-product nearest-neighbour search over v. A rating
head on the same u, mu + b_i + a(u) + <P u, w_i>, is trained with MSE so the model's RMSE sits
beside MF's (the source document reports 0.935 on ML-100K for this style of model).

Histories are padded-sparse: `history [B, L]` item ids and `weight [B, L]` (0 at padding and
at the example's own target, so the target never leaks into the history it is predicted from).

Training, checkpoints and the evaluator adapter live in netrec_jax/train/youtube.py.
"""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

# Logit given to a sampled negative that is the example's own target (an "accidental hit").
_MASKED = -1e9


class YouTubeDNN(nn.Module):
  """History-mean + side features -> ReLU tower -> user vector; softmax and rating heads."""

  n_items: int
  embed_dim: int = 32  # input (history) embedding width
  tower: Sequence[int] = (128, 64)  # ReLU layers; a linear layer of width out_dim follows
  out_dim: int = 32  # user vector / output item embedding width
  dropout: float = 0.0  # after each ReLU layer, training only
  global_mean: float = 0.0  # rating head offset
  init_std: float = 0.05

  def setup(self):
    normal = nn.initializers.normal(self.init_std)
    self.history_embed = nn.Embed(self.n_items, self.embed_dim, embedding_init=normal,
                                  name="history_embed")
    self.layers = [nn.Dense(w, name=f"tower_{k}") for k, w in enumerate(self.tower)]
    self.to_user = nn.Dense(self.out_dim, name="user_out")
    self.drop = nn.Dropout(self.dropout)
    # Softmax (candidate generation) item vectors v_i and biases c_i.
    self.item_out = self.param("item_out", normal, (self.n_items, self.out_dim))
    self.item_out_bias = self.param("item_out_bias", nn.initializers.zeros, (self.n_items,))
    # Rating head: item vectors w_i, biases b_i, and a projection of u to (P u, a(u)).
    self.rating_item = self.param("rating_item", normal, (self.n_items, self.out_dim))
    self.rating_item_bias = self.param("rating_item_bias", nn.initializers.zeros,
                                       (self.n_items,))
    self.rating_user = nn.Dense(self.out_dim + 1, name="rating_user")

  def user_vector(self, history: jax.Array, weight: jax.Array, side: jax.Array, *,
                  train: bool = False) -> jax.Array:
    """[B, out_dim] user vectors from padded histories [B, L] and side features [B, F]."""
    chex.assert_equal_shape([history, weight])
    chex.assert_rank(side, 2)
    emb = self.history_embed(history)  # [B, L, E]
    # Normalised by sum |w| (centred-rating weights can be negative); an empty history (a
    # user with no training ratings) is the zero vector, not NaN.
    total = jnp.sum(jnp.abs(weight), axis=1, keepdims=True)
    mean = jnp.einsum("bl,ble->be", weight, emb) / jnp.maximum(total, 1e-6)
    x = jnp.concatenate([mean, side.astype(mean.dtype)], axis=-1)
    for layer in self.layers:
      x = self.drop(nn.relu(layer(x)), deterministic=not train)
    return self.to_user(x)

  def softmax_logits(self, user: jax.Array, items: jax.Array) -> jax.Array:
    """<u_b, v_i> + c_i for every user row and each of `items` [K]: [B, K]."""
    return user @ self.item_out[items].T + self.item_out_bias[items]

  def target_logit(self, user: jax.Array, items: jax.Array) -> jax.Array:
    """<u_b, v_{items_b}> + c_{items_b}: [B]."""
    return jnp.sum(user * self.item_out[items], -1) + self.item_out_bias[items]

  def rating(self, user: jax.Array, items: jax.Array) -> jax.Array:
    """Predicted stars of user row b for items[b]: mu + b_i + a(u) + <P u, w_i>, [B]."""
    projected = self.rating_user(user)
    vec, bias = projected[:, :-1], projected[:, -1]
    return (self.global_mean + self.rating_item_bias[items] + bias
            + jnp.sum(vec * self.rating_item[items], -1))

  def __call__(self, history, weight, side, items, *, train: bool = False):
    """(user vectors, target logits, ratings) for examples (history, side) -> items [B]."""
    user = self.user_vector(history, weight, side, train=train)
    return user, self.target_logit(user, items), self.rating(user, items)


def sampled_softmax_loss(target_logit: jax.Array, sampled_logits: jax.Array,
                         log_q_target: jax.Array, log_q_sampled: jax.Array,
                         accidental_hit: jax.Array | None = None,
                         correct: bool = True) -> jax.Array:
  """Per-example sampled-softmax NLL [B] with the log-Q correction.

  target_logit [B] and sampled_logits [B, K] are raw logits; log_q_* = log of each item's
  expected count among the K samples (K * q_i for sampling with replacement). Subtracting
  log Q makes sum_k exp(z_k - log Q_k) an unbiased estimate of the full partition function,
  so the gradient approaches the full softmax's as K grows; without it, popular items are
  over-represented among negatives and get pushed down too hard. The target's logit gets
  the same correction (as TensorFlow's sampled_softmax_loss does), which shifts the loss by
  the constant log Q_target and leaves the gradient's limit unchanged.

  accidental_hit [B, K] (optional) marks sampled negatives equal to the target to drop them
  (TensorFlow's default). Keeping them is what makes the corrected estimate consistent: the
  samples then estimate the whole partition function, the target's term included; dropping
  them leaves out the target's share p_t of it, a bias that only matters for items with a
  large softmax probability.
  """
  chex.assert_rank([target_logit, sampled_logits], [1, 2])
  if correct:
    target_logit = target_logit - log_q_target
    sampled_logits = sampled_logits - log_q_sampled[None, :]
  if accidental_hit is not None:
    chex.assert_equal_shape([sampled_logits, accidental_hit])
    sampled_logits = jnp.where(accidental_hit, _MASKED, sampled_logits)
  logits = jnp.concatenate([target_logit[:, None], sampled_logits], axis=1)
  return jax.nn.logsumexp(logits, axis=1) - target_logit


def full_softmax_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-example NLL [B] of targets [B] under a softmax over all logits [B, n_items]."""
  chex.assert_rank([logits, targets], [2, 1])
  return jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, targets[:, None], 1)[:, 0]
