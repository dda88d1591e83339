"""AutoRec (Sedhain et al. 2015) and the source documents' deep autoencoder, on sparse rows.

A row is one item's vector of user ratings (I-AutoRec, from the store's CSC order) or one
user's vector of item ratings (U-AutoRec, CSR order). Rows are fed padded-sparse, never as a
dense users x items matrix: `index [B, L]` (column ids), `value [B, L]` (stars) and
`mask [B, L]` (1 observed, 0 padding). The first layer sums the embedding rows of the observed
columns weighted by their ratings (a sparse matmul, O(nnz x hidden)); the decoder is evaluated
only at the queried columns. Unobserved entries therefore never enter the loss or the gradient.

Training, checkpoints and the evaluator adapter live in netrec_jax/train/rows.py.
"""

from __future__ import annotations

from typing import Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from netrec_jax.data.store import RatingStore

ACTIVATIONS: dict[str, Callable] = {"sigmoid": nn.sigmoid, "relu": nn.relu, "selu": nn.selu,
                                    "identity": lambda x: x}


class SparseAutoencoder(nn.Module):
  """Encoder widths `hidden` (AutoRec: (500,); deep AE: (512, 256, 64)), mirrored decoder.

  Returns reconstructed ratings at `query` columns [B, Q].
  """

  n_columns: int  # users (I-AutoRec) or items (U-AutoRec)
  hidden: Sequence[int] = (500,)
  activation: str = "sigmoid"
  output_activation: str = "identity"
  dropout: float = 0.0  # on hidden layers (deep AE: 0.1)
  input_dropout: float = 0.0  # denoising: drop observed inputs (not the targets)
  global_mean: float = 0.0

  @nn.compact
  def __call__(self, index: jax.Array, value: jax.Array, mask: jax.Array,
               query: jax.Array | None, *, train: bool = False) -> jax.Array:
    """Reconstruction at `query` [B, Q]; with query=None the code the decoder reads [B, H].

    The decoder is linear in that code (output = code . decoder_out[column] + bias[column] +
    global_mean), so full-catalog scoring is one matmul with decoder_params(params).
    """
    chex.assert_equal_shape([index, value, mask])
    act = ACTIVATIONS[self.activation]
    keep = mask
    if self.input_dropout > 0 and train:
      rng = self.make_rng("dropout")
      keep = mask * jax.random.bernoulli(rng, 1 - self.input_dropout, mask.shape)
      keep = keep / (1 - self.input_dropout)
    encoder_in = nn.Embed(self.n_columns, self.hidden[0], name="encoder_in",
                          embedding_init=nn.initializers.normal(0.03))
    h = jnp.einsum("bl,blh->bh", keep * value, encoder_in(index))
    h = act(h + self.param("encoder_in_bias", nn.initializers.zeros, (self.hidden[0],)))
    widths = list(self.hidden[1:]) + list(reversed(self.hidden[:-1]))
    for width in widths:
      h = nn.Dropout(self.dropout, deterministic=not train)(h) if self.dropout else h
      h = act(nn.Dense(width)(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h) if self.dropout else h
    if query is None:
      return h
    decoder_out = nn.Embed(self.n_columns, h.shape[-1], name="decoder_out",
                           embedding_init=nn.initializers.normal(0.03))
    bias = nn.Embed(self.n_columns, 1, name="decoder_out_bias",
                    embedding_init=nn.initializers.zeros)
    out = jnp.einsum("bh,bqh->bq", h, decoder_out(query)) + bias(query)[..., 0]
    return ACTIVATIONS[self.output_activation](out) + self.global_mean


def decoder_params(params) -> tuple[jax.Array, jax.Array]:
  """(weights [n_columns, H], bias [n_columns]) of the output layer."""
  p = params["params"]
  return p["decoder_out"]["embedding"], p["decoder_out_bias"]["embedding"][:, 0]


def row_loss(pred: jax.Array, target: jax.Array, mask: jax.Array, row_weight: jax.Array
             ) -> jax.Array:
  """Squared error over observed entries only (mask 1), each row weighted: the training loss
  of the autoencoders (netrec_jax/train/autoencoder.py sets the weights)."""
  return jnp.sum(row_weight[:, None] * mask * jnp.square(pred - target))


class SparseRows:
  """The allowed ratings as CSR (by='user') or CSC (by='item'), built once per split.

  Batches are then vectorised gathers from three flat arrays (no per-row Python work and no
  full-store mask per batch), which is what keeps row models fed at Netflix scale: the index
  costs 12 bytes per allowed rating (column int32, stars float32, date int32).
  """

  def __init__(self, store: RatingStore, rows_allowed: np.ndarray | None, by: str):
    if by not in ("item", "user"):
      raise ValueError(f"by must be 'item' or 'user', got {by!r}")
    n_entities = store.n_items if by == "item" else store.n_users
    order = (np.asarray(store.item_order, np.int64) if by == "item"
             else np.arange(store.n_ratings, dtype=np.int64))
    if rows_allowed is not None:
      allowed = np.zeros(store.n_ratings, bool)
      allowed[rows_allowed] = True
      order = order[allowed[order]]
    entity = np.take(store.item if by == "item" else store.user, order)
    self.by, self.n_entities = by, n_entities
    self.indptr = np.zeros(n_entities + 1, np.int64)
    np.cumsum(np.bincount(entity, minlength=n_entities), out=self.indptr[1:])
    self.columns = np.take(store.user if by == "item" else store.item, order).astype(np.int32)
    self.values = store.stars(order).astype(np.float32)
    self.dates = np.take(store.date, order)

  def lengths(self, entities: np.ndarray) -> np.ndarray:
    entities = np.asarray(entities, np.int64)
    return self.indptr[entities + 1] - self.indptr[entities]

  def batch(self, entities: np.ndarray, max_len: int | None = None,
            width: int | None = None) -> dict[str, np.ndarray]:
    """Padded-sparse rows [len(entities), L]; L = longest row (or `width`, or max_len).

    Rows longer than max_len keep their most recent ratings.
    """
    entities = np.asarray(entities, np.int64)
    starts, lengths = self.indptr[entities], self.lengths(entities)
    if max_len is not None and (lengths > max_len).any():
      starts = starts.copy()
      lengths = np.minimum(lengths, max_len)
      long_rows = np.flatnonzero(self.lengths(entities) > max_len)
      picks = {}
      for k in long_rows:
        lo, hi = self.indptr[entities[k]], self.indptr[entities[k] + 1]
        picks[k] = lo + np.sort(np.argsort(self.dates[lo:hi], kind="stable")[-max_len:])
    else:
      picks = {}
    length = int(width or max(1, int(lengths.max()) if len(lengths) else 1))
    position = np.arange(length)[None]
    valid = position < lengths[:, None]
    gather = np.where(valid, starts[:, None] + position, 0)
    for k, where in picks.items():
      gather[k, :len(where)] = where
    index = np.where(valid, self.columns[gather], 0).astype(np.int32)
    value = np.where(valid, self.values[gather], 0).astype(np.float32)
    return {"index": index, "value": value, "mask": valid.astype(np.float32)}


def row_batch(store: RatingStore, entities: np.ndarray, rows_allowed: np.ndarray | None,
              by: str, max_len: int | None = None) -> dict[str, np.ndarray]:
  """Padded-sparse rows of `entities` (items when by='item', users when by='user').

  rows_allowed: store rows that may appear (e.g. the training split), or None for all. Each
  row's columns are the other side's indices; L is the longest row in the batch (or max_len,
  keeping the most recent ratings of longer rows). For many batches build SparseRows once.
  """
  return SparseRows(store, rows_allowed, by).batch(entities, max_len)
