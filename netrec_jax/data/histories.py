"""Users' training histories and side features for the YouTube-style model, on the host.

A history is a user's training movies in date order (a CSR over the split's training rows);
a training example's history leaves its own target (and rating) out. Side features are
demographics where the store's users table keeps them (ML-100K, ML-1M) and train-split
activity (log count and mean stars), computed from training rows only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from netrec_jax.data.store import RatingStore

DEMOGRAPHICS = ("age", "gender", "occupation")
HISTORY_WEIGHTINGS = ("uniform", "rating", "centered")


@dataclasses.dataclass
class Histories:
  """Each user's training movies in date order (a CSR over the split's training rows)."""

  indptr: np.ndarray  # [n_users + 1]
  items: np.ndarray  # int32 [n_train]
  stars: np.ndarray  # float32 [n_train]
  counts: np.ndarray  # [n_users]
  sums: np.ndarray  # [n_users] sum of stars

  @classmethod
  def from_rows(cls, store: RatingStore, train_rows: np.ndarray) -> "Histories":
    # Store rows are sorted by user, then date: ascending rows are already grouped.
    users = np.take(store.user, train_rows)
    counts = np.bincount(users, minlength=store.n_users)
    stars = store.stars(train_rows)
    return cls(indptr=np.concatenate([[0], np.cumsum(counts)]),
               items=np.take(store.item, train_rows).astype(np.int32), stars=stars,
               counts=counts, sums=np.bincount(users, weights=stars, minlength=store.n_users))


@dataclasses.dataclass
class SideFeatures:
  """Per-user static features and the standardisation of the activity features."""

  static: np.ndarray  # [n_users, F_static] float32 (demographics; may be 0 wide)
  names: list[str]
  activity: bool
  log_count_stats: tuple[float, float]  # mean, std over training users
  mean_stars_stats: tuple[float, float]
  global_mean: float

  @property
  def width(self) -> int:
    return self.static.shape[1] + (2 if self.activity else 0)

  def rows(self, users: np.ndarray, counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """[len(users), width] features for users whose (history) count and star sum are given."""
    parts = [self.static[users]]
    if self.activity:
      mean = np.where(counts > 0, sums / np.maximum(counts, 1), self.global_mean)
      parts.append(np.stack([(np.log1p(counts) - self.log_count_stats[0]) /
                             self.log_count_stats[1],
                             (mean - self.mean_stars_stats[0]) / self.mean_stars_stats[1]], 1))
    return np.concatenate(parts, 1).astype(np.float32)

  def new_user(self, stars: np.ndarray) -> np.ndarray:
    """[1, width] features of a user we know only from `stars`: demographics at the average."""
    static = self.static.mean(0, keepdims=True)
    out = [static]
    if self.activity:
      out.append(self.rows(np.zeros(1, np.int64), np.array([len(stars)]),
                           np.array([float(np.sum(stars))]))[:, self.static.shape[1]:])
    return np.concatenate(out, 1).astype(np.float32)


def side_features(store: RatingStore, split, hist: Histories, cfg) -> SideFeatures:
  """Demographics (one-hot gender/occupation, standardised age) and activity statistics."""
  static, names = [], []
  if cfg.use_demographics:
    table = store.users_table()
    have = [c for c in DEMOGRAPHICS if c in table.column_names]
    for column in have:
      values = table.column(column).to_numpy(zero_copy_only=False)
      if column == "age":
        age = values.astype(np.float64)
        static.append(((age - age.mean()) / max(age.std(), 1e-6))[:, None])
        names.append("age")
      else:
        vocab = sorted({str(v) for v in values})
        index = {v: k for k, v in enumerate(vocab)}
        onehot = np.zeros((len(values), len(vocab)))
        onehot[np.arange(len(values)), [index[str(v)] for v in values]] = 1.0
        static.append(onehot)
        names += [f"{column}={v}" for v in vocab]
  static_arr = (np.concatenate(static, 1) if static else np.zeros((store.n_users, 0))
                ).astype(np.float32)
  trained = hist.counts > 0
  global_mean = float(hist.sums.sum() / max(hist.counts.sum(), 1))
  log_count = np.log1p(hist.counts[trained])
  mean_stars = hist.sums[trained] / hist.counts[trained]
  if cfg.use_activity:
    names += ["log_n_ratings", "mean_rating"]
  del split  # features come from the training rows only (hist), never the whole store
  return SideFeatures(static_arr, names, bool(cfg.use_activity),
                      (float(log_count.mean()), float(max(log_count.std(), 1e-6))),
                      (float(mean_stars.mean()), float(max(mean_stars.std(), 1e-6))),
                      global_mean)


def history_batch(hist: Histories, side: SideFeatures, users: np.ndarray, width: int,
                  weighting: str, targets: np.ndarray | None = None,
                  target_stars: np.ndarray | None = None,
                  rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
  """Padded histories [B, width] and side features of `users`.

  Training (targets given): a random cyclic window of the user's training movies with the
  target masked out; the activity features leave the target's rating out too. Serving
  (targets None): the user's most recent `width` training movies.
  """
  n = hist.counts[users]
  if rng is not None:
    offset = rng.integers(0, np.maximum(n, 1))
    offset = np.where(n > width, offset, 0)
  else:
    offset = np.maximum(n - width, 0)
  k = np.arange(width)
  valid = k[None] < n[:, None]
  pos = hist.indptr[users][:, None] + (offset[:, None] + k[None]) % np.maximum(n, 1)[:, None]
  pos = np.where(valid, pos, 0)
  items, stars = hist.items[pos], hist.stars[pos]
  counts, sums = n.astype(np.float64), hist.sums[users]
  if targets is not None:
    valid &= items != targets[:, None]
    counts, sums = counts - 1, sums - target_stars
  if weighting == "rating":
    weight = valid * stars
  elif weighting == "centered":  # liked (above the user's own mean) vs disliked movies
    mean = np.where(counts > 0, sums / np.maximum(counts, 1), side.global_mean)
    weight = valid * (stars - mean[:, None])
  else:
    weight = valid * 1.0
  return {"history": np.where(valid, items, 0).astype(np.int32),
          "weight": weight.astype(np.float32),
          "side": side.rows(users, counts, sums)}
