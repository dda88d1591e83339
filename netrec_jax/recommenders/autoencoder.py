"""A trained autoencoder (I-AutoRec, U-AutoRec, the deep AE) behind the evaluator interface.

A pair's prediction encodes the row's training ratings and reads the reconstruction at the
other side's column; full-catalog scores are one matmul, the decoder being linear in the code.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from netrec_jax.data.row_batches import RowBatching
from netrec_jax.models.autorec import SparseAutoencoder, SparseRows, decoder_params
from netrec_jax.recommenders.trained import Trained


def make_encoder(model: SparseAutoencoder) -> Callable:
  """jit(params, batch) -> the decoder's input code of each row (inference mode)."""
  return jax.jit(lambda p, b: model.apply(p, b["index"], b["value"], b["mask"], None))


def encode_rows(encode: Callable, params, train_index: SparseRows, entities: np.ndarray,
                batching: RowBatching) -> np.ndarray:
  """Codes [len(entities), H] of rows built from their training ratings."""
  width = decoder_params(params)[0].shape[1]
  out = np.zeros((len(entities), width), np.float32)
  order = np.argsort(train_index.lengths(entities), kind="stable")  # similar lengths together
  for lo, hi in batching.spans(train_index.lengths(entities[order])):
    chunk = order[lo:hi]
    out[chunk] = np.asarray(encode(params, batching.pad(train_index.batch(entities[chunk]))
                                   ))[:len(chunk)]
  return out


def predict_pairs(encode: Callable, params, train_index: SparseRows, users: np.ndarray,
                  items: np.ndarray, side: str, batching: RowBatching, global_mean: float
                  ) -> np.ndarray:
  """Predictions for pairs: encode each row's training ratings, read the other column.

  The decoder is linear in the code, so a pair costs one dot product once its row is encoded.
  Rows without training ratings predict global_mean.
  """
  row_ids = np.asarray(items if side == "item" else users)
  columns = np.asarray(users if side == "item" else items)
  weights, bias = (np.asarray(a) for a in decoder_params(params))
  unique_rows, inverse = np.unique(row_ids, return_inverse=True)
  order = np.argsort(inverse, kind="stable")
  bounds = np.searchsorted(inverse[order], np.arange(len(unique_rows) + 1))
  out = np.empty(len(row_ids), np.float64)
  chunk = 16 * batching.rows
  for lo in range(0, len(unique_rows), chunk):
    hi = min(lo + chunk, len(unique_rows))
    codes = encode_rows(encode, params, train_index, unique_rows[lo:hi], batching)
    pairs = order[bounds[lo]:bounds[hi]]
    out[pairs] = (np.einsum("ph,ph->p", codes[inverse[pairs] - lo], weights[columns[pairs]])
                  + bias[columns[pairs]] + global_mean)
  out[train_index.lengths(row_ids) == 0] = global_mean
  return out


class RowRecommender:
  """A restored row model behind the evaluator interface (netrec_jax/eval/evaluator.py).

  Predictions encode the row's training ratings and read the other side's column; a pair
  whose user or item has no training rating gets the training mean (cold_rule). Full-catalog
  scores are one matmul: the decoder is linear in the row's code.
  """

  def __init__(self, model: SparseAutoencoder, params, store, split, train_index: SparseRows,
               batching: RowBatching, config, which: str, meta: dict[str, Any]):
    self.model, self.params, self.store, self.split, self.config = (model, params, store,
                                                                    split, config)
    self.side = config.autoencoder.side
    self.name = f"{config.model.name}_{self.side}" if config.model.name == "autorec" else (
        config.model.name)
    self.which, self.meta = which, meta
    self.global_mean = float(meta["global_mean"])
    self.rating_note = ""
    self.cold_rule = "training mean for a user or item with no training rating"
    self.prediction_note = f"clipped to the rating range {list(store.rating_range)}"
    self.batching = batching
    self.trained = Trained.from_rows(store, split.rows("train"))
    self.train_index = train_index
    self._encode = make_encoder(model)
    weights, bias = decoder_params(params)
    self._decoder = (np.asarray(weights), np.asarray(bias))
    self._item_codes = None

  def codes(self, entities: np.ndarray) -> np.ndarray:
    """The decoder's input for each row entity (items for I-AutoRec, users for U-AutoRec)."""
    return encode_rows(self._encode, self.params, self.train_index, entities, self.batching)

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    pred = predict_pairs(self._encode, self.params, self.train_index, users, items,
                         self.side, self.batching, self.global_mean)
    return self.trained.fill_pairs(pred, users, items, self.global_mean)

  def score_items(self, users: np.ndarray) -> np.ndarray:
    weights, bias = self._decoder
    if self.side == "item":
      if self._item_codes is None:
        self._item_codes = self.codes(np.arange(self.store.n_items))
      scores = weights[users] @ self._item_codes.T + bias[users, None]
    else:
      scores = self.codes(users) @ weights.T + bias[None]
    return self.trained.fill_scores(scores + self.global_mean, users, self.global_mean)

  def item_vectors(self) -> np.ndarray:
    """Item embeddings for similar-movie search: I-AutoRec's item codes, else decoder rows."""
    if self.side == "item":
      if self._item_codes is None:
        self._item_codes = self.codes(np.arange(self.store.n_items))
      return self._item_codes
    return self._decoder[0]

  fold_in_method = "encoder pass over the new user's partial rating vector (U-AutoRec / AE)"

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """Scores of every item for a new user who rated `items` (dense indices) with `stars`."""
    if self.side != "user":
      raise ValueError(f"{self.name} encodes item rows; a new user needs a user-based model "
                       "(autoencoder.side=user)")
    batch = {"index": np.asarray(items, np.int32)[None],
             "value": np.asarray(stars, np.float32)[None],
             "mask": np.ones((1, len(items)), np.float32)}
    weights, bias = self._decoder
    return (np.asarray(self._encode(self.params, batch))[0] @ weights.T + bias
            + self.global_mean)
