"""Users' training sequences for sequence models (BERT4Rec): ordered histories, the serving
input and the cloze task's masked samples, as host numpy arrays.

A sequence is a user's training items ordered by store.date, same-day ratings in the seeded
random order the leave-last-out split uses (splits.time_order_keys), so the held-out last items
never enter a training sequence.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from netrec_jax.data import splits as splits_lib
from netrec_jax.data.store import RatingStore

# Token vocabulary of a sequence: 0 pads, item i is i + 1, n_items + 1 is [MASK].
PAD = 0


def mask_token(n_items: int) -> int:
  return n_items + 1


@dataclasses.dataclass
class Sequences:
  """Each user's training item tokens (item + 1), oldest first: tokens[offsets[u]:offsets[u+1]]."""

  offsets: np.ndarray  # int64 [n_users + 1]
  tokens: np.ndarray  # int32 [n_train]

  def of(self, user: int) -> np.ndarray:
    return self.tokens[self.offsets[user]:self.offsets[user + 1]]

  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets)


def training_sequences(store: RatingStore, train_rows: np.ndarray, seed: int = 0) -> Sequences:
  """Users' training items ordered by date, same-day ratings in the seeded random order that
  the leave-last-out split uses (splits.time_order_keys: the store's own same-day order is by
  item index, which a sequence model would learn)."""
  train_rows = np.sort(np.asarray(train_rows))
  users = np.take(store.user, train_rows).astype(np.int64)
  order = np.lexsort((splits_lib.time_order_keys(store, seed)[train_rows], users))
  offsets = np.zeros(store.n_users + 1, np.int64)
  np.cumsum(np.bincount(users, minlength=store.n_users), out=offsets[1:])
  tokens = (np.take(store.item, train_rows)[order] + 1).astype(np.int32)
  return Sequences(offsets, tokens)


def serving_tokens(sequences: Sequences, users: np.ndarray, max_len: int,
                   n_items: int) -> np.ndarray:
  """int32 [len(users), max_len]: the last max_len - 1 training items, then [MASK]."""
  out = np.full((len(users), max_len), PAD, np.int32)
  out[:, -1] = mask_token(n_items)
  for row, user in enumerate(users):
    history = sequences.of(int(user))[-(max_len - 1):] if max_len > 1 else []
    out[row, max_len - 1 - len(history):max_len - 1] = history
  return out


def max_predictions(max_len: int, mask_prob: float) -> int:
  """Most masked positions a sample can have (the loss's static P)."""
  return max(1, math.ceil(mask_prob * max_len))


def cloze_batch(sequences: Sequences, users: np.ndarray, rng: np.random.Generator,
                max_len: int, mask_prob: float, last_mask_prob: float, n_items: int,
                batch_size: int) -> dict[str, np.ndarray]:
  """One training batch [batch_size, max_len] of masked samples; rows past `users` are empty.

  tokens: inputs with [MASK]; labels: the true tokens everywhere; weights: 1 where masked.
  """
  limit = max_predictions(max_len, mask_prob)
  tokens = np.full((batch_size, max_len), PAD, np.int32)
  labels = np.full((batch_size, max_len), PAD, np.int32)
  weights = np.zeros((batch_size, max_len), np.float32)
  for row, user in enumerate(users):
    seq = sequences.of(int(user))
    if len(seq) == 0:
      continue
    if rng.random() < last_mask_prob:
      window = seq[-max_len:]
      masked = np.array([len(window) - 1])
    else:
      start = rng.integers(0, len(seq) - max_len + 1) if len(seq) > max_len else 0
      window = seq[start:start + max_len]
      n_masked = min(limit, max(1, round(len(window) * mask_prob)))
      masked = rng.choice(len(window), n_masked, replace=False)
    lo = max_len - len(window)
    labels[row, lo:] = window
    tokens[row, lo:] = window
    tokens[row, lo + masked] = mask_token(n_items)
    weights[row, lo + masked] = 1.0
  return {"tokens": tokens, "labels": labels, "weights": weights}
