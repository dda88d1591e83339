"""A trained timeSVD++ (netrec_jax/models/timesvdpp.py) behind the evaluator's Recommender
interface: SVD++'s recommender (netrec_jax/recommenders/svdpp.py) plus the time terms.

A prediction needs the rating's day. `predict_rows(rows)` takes store rows and predicts each
at its own date (the evaluator calls it when a model has it): dev_u(t) from the user's mean
training day, the item bias of the day's bin (a day after training: the last bin), and the
(user, day) bias when training saw that user on that day (else 0). `predict(users, items)`
and `score_items(users)` have no date: they predict at the user's latest training day, as a
recommendation made now would, without a per-day bias (now is a day training has not seen),
and a user without training ratings at the training's last day.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from netrec_jax.data.row_batches import UserCSR
from netrec_jax.data.store import NO_DATE
from netrec_jax.models.timesvdpp import TimeSpec
from netrec_jax.recommenders.svdpp import PREDICT_CHUNK, SVDppRecommender


@dataclasses.dataclass(frozen=True)
class UserDays:
  """The training's days per user, in days since its first day (first_day, days since epoch)."""

  first_day: int
  n_days: int  # the training's last day + 1
  mean_day: np.ndarray  # [n_users] float32 t_u (0 for a user without training ratings)
  last_day: np.ndarray  # [n_users] int32 (n_days - 1 for a user without training ratings)
  pair_keys: np.ndarray  # [n_pairs] int64 user * n_days + day of each training (user, day), sorted

  @property
  def n_pairs(self) -> int:
    return len(self.pair_keys)

  @classmethod
  def from_csr(cls, csr: UserCSR, day: np.ndarray, first_day: int
               ) -> tuple["UserDays", np.ndarray]:
    """(UserDays, [n_ratings] int32 row of each csr rating's (user, day) pair)."""
    lengths = csr.lengths()
    n_days = int(day.max()) + 1 if len(day) else 1
    users = np.repeat(np.arange(csr.n_users, dtype=np.int64), lengths)
    mean_day = (np.bincount(users, weights=day, minlength=csr.n_users)
                / np.maximum(lengths, 1)).astype(np.float32)
    last_day = np.full(csr.n_users, n_days - 1, np.int32)
    rated = np.flatnonzero(lengths > 0)
    if len(rated):
      last_day[rated] = np.maximum.reduceat(day, csr.indptr[rated])
    keys = users * n_days + day
    del users
    if np.all(keys[1:] >= keys[:-1]):  # days ascending within each user: the store's order
      new = np.concatenate(([True], keys[1:] != keys[:-1]))
      pair_keys, rows = keys[new], np.cumsum(new) - 1
    else:
      pair_keys, rows = np.unique(keys, return_inverse=True)
    return cls(first_day, n_days, mean_day, last_day, pair_keys), rows.astype(np.int32)

  def pair_rows(self, users: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Row of each (user, day) among the training pairs; -1 where training has no such pair."""
    users, day = np.asarray(users, np.int64), np.asarray(day, np.int64)
    inside = (day >= 0) & (day < self.n_days)
    keys = users * self.n_days + np.where(inside, day, 0)
    pos = np.minimum(np.searchsorted(self.pair_keys, keys), max(self.n_pairs - 1, 0))
    hit = inside & (self.n_pairs > 0) & (self.pair_keys[pos] == keys)
    return np.where(hit, pos, -1)


class TimeSVDppRecommender(SVDppRecommender):
  """SVD++'s recommender with the time tables and each user's training days."""

  def __init__(self, *, spec: TimeSpec, days: UserDays, **kwargs):
    super().__init__(**kwargs)
    self.spec, self.days = spec, days
    self.prediction_note += (
        "; predict_rows: at each rating's date; predict and score_items (no date): at the "
        "user's latest training day, no per-day bias (the training's last day for a user "
        "without training ratings)")

  # ------------------------------------------------------------------------- time terms
  def deviation(self, users: np.ndarray, day: np.ndarray) -> np.ndarray:
    """dev_u(t) = sign(t - t_u) |t - t_u|^beta (float64)."""
    x = np.asarray(day, np.float64) - self.days.mean_day[users]
    return np.sign(x) * np.abs(x) ** self.spec.beta

  def day_bin(self, day: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(day, np.int64) * self.spec.n_bins // self.spec.n_days, 0,
                   self.spec.n_bins - 1)

  def time_terms(self, users: np.ndarray, items: np.ndarray, day: np.ndarray,
                 pair: np.ndarray | None) -> np.ndarray:
    """What the time terms add to SVD++'s prediction of each (user, item) at `day` [n]
    (days since the training's first day); pair: its (user, day) row, -1 or None: none."""
    s, t = self.spec, self.tables
    dev = self.deviation(users, day)
    out = np.zeros(len(users), np.float64)
    if s.item_bins:
      out += t["item_bin_bias"][items * s.n_bins + self.day_bin(day), 0]
    if s.user_alpha:
      out += t["user_alpha"][users, 0] * dev
    if s.user_day and pair is not None:
      out += np.where(pair >= 0, t["user_day_bias"][np.maximum(pair, 0), 0], 0.0)
    if s.factor_drift:
      out += dev * np.einsum("nd,nd->n", t["user_vec_alpha"][users], t["item_vec"][items])
    return out

  # -------------------------------------------------------------------- the evaluator's API
  def predict_rows(self, rows: np.ndarray) -> np.ndarray:
    """Each store row's rating predicted at its date (a row without a date: as predict)."""
    rows = np.asarray(rows, np.int64)
    out = np.empty(len(rows), np.float64)
    for lo in range(0, len(rows), PREDICT_CHUNK):
      chunk = rows[lo:lo + PREDICT_CHUNK]
      users = np.take(self.store.user, chunk).astype(np.int64)
      items = np.take(self.store.item, chunk).astype(np.int64)
      dates = np.take(self.store.date, chunk).astype(np.int64)
      dated = dates != NO_DATE
      day = np.where(dated, dates - self.days.first_day, self.days.last_day[users])
      pair = np.where(dated, self.days.pair_rows(users, day), -1)
      out[lo:lo + len(chunk)] = (super().predict(users, items)
                                 + self.time_terms(users, items, day, pair))
    return out

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """At each user's latest training day, without a per-day bias (see the module)."""
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    return (super().predict(users, items)
            + self.time_terms(users, items, self.days.last_day[users], None))

  def score_items(self, users: np.ndarray) -> np.ndarray:
    """Every item at each user's latest training day (predict's rule), [len(users), n_items]."""
    users = np.asarray(users, np.int64)
    s, t = self.spec, self.tables
    day = self.days.last_day[users]
    dev = self.deviation(users, day)
    scores = super().score_items(users)
    if s.item_bins:
      by_bin = t["item_bin_bias"][:, 0].reshape(-1, s.n_bins)  # [n_items, n_bins]
      scores = scores + by_bin[:, self.day_bin(day)].T
    if s.user_alpha:
      scores = scores + (t["user_alpha"][users, 0] * dev)[:, None]
    if s.factor_drift:
      scores = scores + (t["user_vec_alpha"][users] * dev[:, None]) @ t["item_vec"].T
    return scores

  def fold_in_item_bias(self) -> np.ndarray:
    """b_i plus the last bin's b_{i,bin}: a new user is folded in and scored as of now."""
    bias = self.tables["item_bias"][:, 0]
    if self.spec.item_bins:
      bias = bias + self.tables["item_bin_bias"][:, 0].reshape(-1, self.spec.n_bins)[:, -1]
    return bias


def drift_recovery(model: TimeSVDppRecommender, truth, min_ratings: int = 50
                   ) -> dict[str, float]:
  """How well a trained timeSVD++ recovered a synthetic store's planted drift
  (netrec_jax/data/synthetic.py, SyntheticTruth) from the training rows:

    item_slope_corr   correlation, over items with >= min_ratings training ratings, of the
                      planted item drift with the slope of the learned b_{i,Bin(t)} over the
                      bins' middle days (least squares, weighted by the bins' ratings)
    user_alpha_sign   share of users with >= min_ratings training ratings whose alpha_u has
                      the planted user drift's sign;  user_alpha_corr: their correlation
  """
  store, spec, t = model.store, model.spec, model.tables
  rows = model.split.rows("train")
  items = np.take(store.item, rows).astype(np.int64)
  bins = model.day_bin(np.take(store.date, rows).astype(np.int64) - model.days.first_day)
  out: dict[str, float] = {}
  if spec.item_bins:
    counts = np.bincount(items * spec.n_bins + bins,
                         minlength=store.n_items * spec.n_bins).reshape(-1, spec.n_bins)
    learned = t["item_bin_bias"][:, 0].reshape(-1, spec.n_bins).astype(np.float64)
    middle = (np.arange(spec.n_bins) + 0.5) * spec.n_days / spec.n_bins
    index = store.item_index(truth.item_ids)
    keep = (index >= 0) & (counts.sum(1)[np.maximum(index, 0)] >= min_ratings)
    w, b = counts[index[keep]], learned[index[keep]]
    x = middle[None] - (w * middle).sum(1, keepdims=True) / w.sum(1, keepdims=True)
    slope = (w * x * b).sum(1) / np.maximum((w * x * x).sum(1), 1e-12)
    out["item_slope_corr"] = float(np.corrcoef(slope, truth.item_drift[keep])[0, 1])
    out["n_items"] = int(keep.sum())
  if spec.user_alpha:
    index = store.user_index(truth.user_ids)
    lengths = model.csr.lengths()
    keep = (index >= 0) & (lengths[np.maximum(index, 0)] >= min_ratings)
    alpha, planted = t["user_alpha"][index[keep], 0], truth.user_drift[keep]
    out["user_alpha_sign"] = float(np.mean(np.sign(alpha) == np.sign(planted)))
    out["user_alpha_corr"] = float(np.corrcoef(alpha, planted)[0, 1])
    out["n_users"] = int(keep.sum())
  return out
