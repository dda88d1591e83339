"""BERT4Rec (Sun et al. 2019): a bidirectional transformer over a user's item sequence.

Tokens: 0 is padding, item index i is token i + 1, and n_items + 1 is [MASK]. Sequences are
left-padded (right-aligned), so the most recent item always sits at position max_len - 1 and
the learned position embedding means "steps before the end", the same in training and serving.

Training is the cloze task: some items are replaced by [MASK] and predicted from both sides;
the loss counts masked positions only (`cloze_loss`). Serving appends [MASK] after the user's
history and reads the logits there (the paper also trains on samples with only the last item
masked, so that this position is not out of distribution).

The output layer is the paper's: a GELU projection, then the item embedding matrix shared
with the input (tied weights) plus an item bias.
"""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from netrec_jax.data.sequences import PAD

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def attention_dtype(name: str, platform: str | None = None) -> Any:
  """The attention compute dtype: `auto` is bfloat16 on accelerators, float32 on CPU."""
  if name == "auto":
    platform = platform or jax.devices()[0].platform
    return jnp.float32 if platform == "cpu" else jnp.bfloat16
  if name not in DTYPES:
    raise ValueError(f"sequence.attention_dtype must be auto, float32 or bfloat16, got {name!r}")
  return DTYPES[name]


class TransformerBlock(nn.Module):
  """Post-LN block as in the paper: LN(x + Dropout(MHA(x))), then LN(x + Dropout(FFN(x)))."""

  hidden: int
  heads: int
  dropout: float
  attention_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, train: bool) -> jax.Array:
    attended = nn.MultiHeadDotProductAttention(
        num_heads=self.heads, qkv_features=self.hidden, out_features=self.hidden,
        dropout_rate=self.dropout, dtype=self.attention_dtype, name="attention")(
            x, mask=mask, deterministic=not train)
    # Residuals and layer norms stay in float32 whatever the attention ran in.
    x = nn.LayerNorm(name="attention_norm")(
        x + nn.Dropout(self.dropout)(attended.astype(jnp.float32), deterministic=not train))
    ff = nn.Dense(4 * self.hidden, name="ff_in")(x)
    ff = nn.Dense(self.hidden, name="ff_out")(nn.gelu(ff))
    return nn.LayerNorm(name="ff_norm")(x + nn.Dropout(self.dropout)(ff, deterministic=not train))


class Bert4Rec(nn.Module):
  """tokens [B, L] -> item logits [B, P, n_items] at `positions` [B, P] (default: the last)."""

  n_items: int  # catalog size; tokens are item + 1, then [MASK] (0 is padding)
  max_len: int  # tokens per sample, [MASK] included
  hidden: int = 64  # width of the embeddings and of every layer
  layers: int = 2  # transformer blocks
  heads: int = 2  # attention heads per block (hidden must divide by it)
  dropout: float = 0.1  # on embeddings, attention output and feed-forward output
  attention_dtype: Any = jnp.float32  # bfloat16 halves attention memory on accelerators

  @nn.compact
  def __call__(self, tokens: jax.Array, positions: jax.Array | None = None, *,
               train: bool = False) -> jax.Array:
    chex.assert_rank(tokens, 2)
    batch, length = tokens.shape
    if length > self.max_len:
      raise ValueError(f"sequence length {length} exceeds max_len {self.max_len}")
    init = nn.initializers.truncated_normal(0.02)
    embed = nn.Embed(self.n_items + 2, self.hidden, embedding_init=init, name="item_embed")
    position = self.param("position_embed", init, (self.max_len, self.hidden))
    # Right-aligned: the last token always gets the last position embedding.
    x = embed(tokens) + position[self.max_len - length:][None]
    x = nn.Dropout(self.dropout)(nn.LayerNorm(name="embed_norm")(x), deterministic=not train)
    valid = tokens != PAD
    mask = nn.make_attention_mask(valid, valid)  # bidirectional; padding neither side
    for k in range(self.layers):
      x = TransformerBlock(self.hidden, self.heads, self.dropout, self.attention_dtype,
                           name=f"block_{k}")(x, mask, train)
    if positions is None:
      positions = jnp.full((batch, 1), length - 1, jnp.int32)
    chex.assert_rank(positions, 2)
    h = jnp.take_along_axis(x, positions[..., None], axis=1)  # [B, P, hidden]
    h = nn.LayerNorm(name="output_norm")(nn.gelu(nn.Dense(self.hidden, name="output_dense")(h)))
    items = embed.embedding[1:self.n_items + 1]  # tied: the input table's item rows
    bias = self.param("output_bias", nn.initializers.zeros, (self.n_items,))
    logits = h @ items.T + bias
    chex.assert_shape(logits, (batch, positions.shape[1], self.n_items))
    return logits


def masked_positions(weights: jax.Array, max_predictions: int) -> jax.Array:
  """int32 [B, P]: the masked positions (weight > 0) of each row first, then filler.

  Computing logits only there keeps the [B, P, n_items] output P/L of the full [B, L, n_items].
  Rows with fewer masked positions are filled with unmasked ones, which carry weight 0.
  """
  _, positions = jax.lax.top_k(weights, max_predictions)
  return positions.astype(jnp.int32)


def cloze_loss(model: Bert4Rec, params: Any, batch: dict[str, jax.Array], max_predictions: int,
               *, train: bool = False, rng: jax.Array | None = None) -> jax.Array:
  """Mean cross-entropy over masked positions only.

  batch: tokens [B, L] (inputs with [MASK] where masked), labels [B, L] (the true tokens),
  weights [B, L] (1 where masked, else 0). Labels where weight is 0 are never read into the
  loss: they neither change it nor get a gradient.
  """
  chex.assert_equal_shape([batch["tokens"], batch["labels"], batch["weights"]])
  positions = masked_positions(batch["weights"], max_predictions)
  rngs = {"dropout": rng} if train else {}
  logits = model.apply(params, batch["tokens"], positions, train=train, rngs=rngs)
  weights = jnp.take_along_axis(batch["weights"], positions, axis=1)
  labels = jnp.take_along_axis(batch["labels"], positions, axis=1)
  # Token -> item index; unmasked filler reads item 0 and is weighted out.
  target = jnp.where(weights > 0, labels - 1, 0)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), target)
  return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0)
