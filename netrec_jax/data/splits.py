"""Reproducible train/validation/test splits, saved beside the store as one int8 per rating.

A split is a column aligned with the store's rows: 0 train, 1 validation, 2 test, -1 unused,
and, for the strong-generalization protocol only, 3 and 4: the fold-in input rows of the
validation and test users (their targets are 1 and 2). Code that reads train, valid or test
rows never sees fold-in rows; only the evaluator folds them in.
Each carries the protocol name of `shared/docs/protocols-and-anchors.md` (`time_2005`,
`random_90_10_seed0`, `ml100k_u1`, `netflix_probe`, `loo` for the leave-last-out protocols,
`strong_generalization`), its parameters, its sizes and the cold-start share of its test set,
so every result computed on it can say exactly what it was evaluated on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from netrec_jax.data.errors import DataError
from netrec_jax.data.store import NO_DATE, RatingStore, days_to_iso, iso_to_days

TRAIN, VALID, TEST, UNUSED = 0, 1, 2, -1
# Strong generalization: a held-out user's fold-in input rows (the model sees them at
# evaluation only, never in training); VALID / TEST rows are that user's targets.
VALID_FOLD_IN, TEST_FOLD_IN = 3, 4
PARTS = {"train": TRAIN, "valid": VALID, "test": TEST, "unused": UNUSED,
         "valid_fold_in": VALID_FOLD_IN, "test_fold_in": TEST_FOLD_IN}
FOLD_IN_OF = {"valid": "valid_fold_in", "test": "test_fold_in"}  # targets -> their inputs
STRONG_PROTOCOL = "strong_generalization"
BLOCK_ROWS = 1 << 22


@dataclasses.dataclass
class Split:
  name: str
  protocol: str
  assignment: np.ndarray  # int8 [n_ratings]
  params: dict[str, Any]
  info: dict[str, Any] = dataclasses.field(default_factory=dict)

  def rows(self, part: str) -> np.ndarray:
    """Store rows (int64, ascending) in `part`: train, valid, test or unused."""
    if part not in PARTS:
      raise ValueError(f"unknown split part {part!r}; expected one of {sorted(PARTS)}")
    code = PARTS[part]
    out = [np.flatnonzero(np.asarray(self.assignment[lo:lo + BLOCK_ROWS]) == code) + lo
           for lo in range(0, len(self.assignment), BLOCK_ROWS)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)

  def sizes(self) -> dict[str, int]:
    """Rows per part; the fold-in parts are listed only when the split has them."""
    counts = np.zeros(6, np.int64)
    for lo in range(0, len(self.assignment), BLOCK_ROWS):
      counts += np.bincount(np.asarray(self.assignment[lo:lo + BLOCK_ROWS]) + 1, minlength=6)
    out = {"unused": int(counts[0]), "train": int(counts[1]), "valid": int(counts[2]),
           "test": int(counts[3])}
    if counts[4] or counts[5]:
      out.update(valid_fold_in=int(counts[4]), test_fold_in=int(counts[5]))
    return out


# ------------------------------------------------------------------------------- protocols
def time_split(store: RatingStore, cutoff: str = "2005-01-01",
               valid_fraction: float = 0.0) -> Split:
  """Train before `cutoff`, test on or after it; validation = the latest slice of train."""
  if not store.has_dates:
    raise DataError(store.path, "a time split needs dates, and this store has none")
  cut = iso_to_days(cutoff)
  assignment = np.empty(store.n_ratings, np.int8)
  for sl in store.iter_row_blocks():
    assignment[sl] = np.where(np.asarray(store.date[sl]) >= cut, TEST, TRAIN)
  valid_from = None
  if valid_fraction > 0:
    valid_from = _date_quantile(store, assignment, 1.0 - valid_fraction)
    for sl in store.iter_row_blocks():
      block = assignment[sl]
      block[(block == TRAIN) & (np.asarray(store.date[sl]) >= valid_from)] = VALID
  year = cutoff[:4]
  return Split(name=f"time_{year}" + ("_valid" if valid_fraction else ""),
               protocol=f"time_{year}", assignment=assignment,
               params={"cutoff": cutoff, "valid_fraction": valid_fraction,
                       "valid_from": days_to_iso(valid_from) if valid_from is not None else None})


def _date_quantile(store: RatingStore, assignment: np.ndarray, q: float) -> int:
  """Smallest training date d with P(date < d) >= q, from a histogram (bounded memory)."""
  lo, hi = (iso_to_days(x) for x in store.meta["date_range"])
  hist = np.zeros(hi - lo + 1, np.int64)
  for sl in store.iter_row_blocks():
    d = np.asarray(store.date[sl])[assignment[sl] == TRAIN]
    hist += np.bincount(d[d != NO_DATE] - lo, minlength=len(hist))
  cdf = np.cumsum(hist)
  return int(lo + np.searchsorted(cdf, q * cdf[-1], side="left") + 1)


def random_split(store: RatingStore, test_fraction: float = 0.1, valid_fraction: float = 0.1,
                 seed: int = 0) -> Split:
  """Seeded random holdout of ratings; `valid_fraction` is taken out of the training part."""
  if not 0 < test_fraction < 1 or not 0 <= valid_fraction < 1:
    raise ValueError("fractions must be in (0, 1)")
  rng = np.random.default_rng(seed)
  u = rng.random(store.n_ratings, dtype=np.float32)
  assignment = np.where(u < test_fraction, TEST, TRAIN).astype(np.int8)
  valid_cut = test_fraction + (1 - test_fraction) * valid_fraction
  assignment[(u >= test_fraction) & (u < valid_cut)] = VALID
  train_pct = round(100 * (1 - test_fraction))
  protocol = f"random_{train_pct}_{100 - train_pct}_seed{seed}"
  return Split(name=protocol, protocol=protocol, assignment=assignment,
               params={"test_fraction": test_fraction, "valid_fraction": valid_fraction,
                       "seed": seed})


def item_cold_split(store: RatingStore, item_fraction: float = 0.1, valid_fraction: float = 0.05,
                    seed: int = 0) -> Split:
  """Every rating of a seeded random `item_fraction` of the movies is test: those movies are
  unseen in training (new-movie cold start, where only content can score them). A random
  `valid_fraction` of the remaining ratings validates."""
  if not 0 < item_fraction < 1 or not 0 <= valid_fraction < 1:
    raise ValueError("fractions must be in (0, 1)")
  rng = np.random.default_rng([seed, 13])
  cold_items = rng.random(store.n_items) < item_fraction
  assignment = np.where(cold_items[np.asarray(store.item)], TEST, TRAIN).astype(np.int8)
  train = np.flatnonzero(assignment == TRAIN)
  assignment[rng.choice(train, int(round(len(train) * valid_fraction)), replace=False)] = VALID
  protocol = f"item_cold_{round(100 * item_fraction)}_seed{seed}"
  return Split(name=protocol, protocol=protocol, assignment=assignment,
               params={"item_fraction": item_fraction, "valid_fraction": valid_fraction,
                       "seed": seed, "cold_items": int(cold_items.sum())})


def time_order_keys(store: RatingStore, seed: int = 0) -> np.ndarray:
  """float64 per rating: its date plus a seeded uniform [0, 1) tie-breaker.

  Stores keep dates in days, and a user often rates dozens of movies on one day; the store
  orders those by item index. Taking "the last" rating by (date, item) would hold out the
  highest-numbered movie of the user's last day (on ML-100K mostly obscure titles), and a
  sequence model could learn that index order. Same-day ratings are therefore ordered at
  random, with a seed, here and in every time-ordered sequence (netrec_jax/train/sequence.py).
  """
  tie = np.random.default_rng([seed, 11]).random(store.n_ratings)
  return np.asarray(store.date, np.float64) + tie


def leave_last_out(store: RatingStore, n_valid: int = 1, min_train: int = 1,
                   seed: int = 0) -> Split:
  """Each user's last rating (by date; same-day ties in seeded random order) is test, the one
  before validation.

  Users with fewer than min_train + 1 + n_valid ratings keep all of theirs in train.
  """
  counts = store.ratings_per_user()
  ends = np.asarray(store.user_offsets[1:], np.int64)
  eligible = counts >= min_train + 1 + n_valid
  order = np.lexsort((time_order_keys(store, seed), np.asarray(store.user)))
  assignment = np.zeros(store.n_ratings, np.int8)
  assignment[order[ends[eligible] - 1]] = TEST
  for k in range(1, n_valid + 1):
    assignment[order[ends[eligible] - 1 - k]] = VALID
  return Split(name="loo" if n_valid == 0 else f"loo_valid{n_valid}", protocol="loo",
               assignment=assignment,
               params={"n_valid": n_valid, "min_train": min_train,
                       "users_held_out": int(eligible.sum()),
                       "same_day_ties": f"random, seed {seed}"})


def with_validation(split: Split, fraction: float, seed: int = 0) -> Split:
  """A seeded random `fraction` of split's training rows moved to validation; test unchanged.

  For official splits that come without a validation part (ml100k folds, Netflix probe), so
  tuning and early stopping never look at the test ratings. The protocol name is kept.
  """
  assignment = np.array(split.assignment, np.int8)
  train = np.flatnonzero(assignment == TRAIN)
  rng = np.random.default_rng([seed, 7])
  assignment[rng.choice(train, int(round(len(train) * fraction)), replace=False)] = VALID
  return Split(name=f"{split.name}_valid{round(100 * fraction)}_seed{seed}",
               protocol=split.protocol, assignment=assignment,
               params={**split.params, "base_split": split.name, "valid_fraction": fraction,
                       "valid_seed": seed})


def merge_valid(split: Split) -> Split:
  """split with its validation rows counted as training, named NAME_refit; test unchanged.

  The Netflix Prize refit: models whose epochs (and blend weights) were chosen on the
  validation rows are trained once more on train + validation. There is no validation set
  left, so nothing can be chosen on this split.
  """
  if split.protocol == STRONG_PROTOCOL:
    raise ValueError(f"split {split.name}: the strong-generalization split's validation users "
                     "are held out (their fold-in rows are not training rows); it has no refit")
  assignment = np.array(split.assignment, np.int8)
  assignment[assignment == VALID] = TRAIN
  return Split(name=f"{split.name}_refit", protocol=split.protocol, assignment=assignment,
               params={**split.params, "refit_of": split.name, "valid_merged": True})


# ------------------------------------------------------------------- strong generalization
def _bincount_rows(column: np.ndarray, mask: np.ndarray, minlength: int) -> np.ndarray:
  """bincount of column[rows] over the rows where mask is True, in row blocks."""
  out = np.zeros(minlength, np.int64)
  for lo in range(0, len(mask), BLOCK_ROWS):
    m = mask[lo:lo + BLOCK_ROWS]
    out += np.bincount(np.asarray(column[lo:lo + BLOCK_ROWS])[m], minlength=minlength)
  return out


def heldout_count(heldout_users: float, n_users: int) -> int:
  """Users per held-out part: heldout_users itself when >= 1, else that share of n_users."""
  if heldout_users <= 0:
    raise ValueError(f"heldout_users must be > 0, got {heldout_users}")
  return int(heldout_users) if heldout_users >= 1 else int(round(heldout_users * n_users))


def strong_generalization(store: RatingStore, heldout_users: float = 0.1,
                          threshold: float = 4.0, min_user_interactions: int = 5,
                          min_item_interactions: int = 0, target_fraction: float = 0.2,
                          seed: int = 0, kcore: bool = False) -> Split:
  """Liang et al. 2018's strong generalization (Mult-VAE; also EASE, RecVAE, Rendle 2021).

  1. Interactions are ratings >= `threshold`; every other rating is UNUSED.
  2. Liang's filter, in his order: items with fewer than `min_item_interactions` interactions
     (default 0: none, as Liang's min_sc=0), then users with fewer than
     `min_user_interactions` (default 5) lose their interactions (UNUSED); 0 disables either.
     One pass each, as Liang's code; with `kcore` both are iterated to a fixed point (the
     k-core: every remaining user and item has at least its minimum of interactions).
  3. The remaining users (with at least one interaction) are permuted with `seed`; as in
     Liang's code the last n_heldout are test users, the n_heldout before them validation
     users and the rest train users. n_heldout = `heldout_users` when >= 1, else that share
     of the users (0.1: 604 each on ML-1M; Liang used 10,000 on ML-20M, 40,000 on Netflix).
  4. Train users' interactions are TRAIN. The catalog is the items of those interactions;
     held-out users' interactions with other items are UNUSED (Liang keeps only items seen
     in training), and counted.
  5. Each held-out user's remaining n interactions: a seeded random floor(target_fraction * n)
     are targets (VALID / TEST), the others fold-in input (VALID_FOLD_IN / TEST_FOLD_IN).
     floor as Liang's int(0.2 * n); a user with n < 5 (possible when the user filter is off)
     then has no target and is not evaluated, as in Liang's code.

  Vectorised over rows and users (a few numpy passes in row blocks; no loop per user). What
  each step removed is in `info["strong_generalization"]`, kept by save_split / load_split.
  """
  if not 0 < target_fraction < 1:
    raise ValueError(f"target_fraction must be in (0, 1), got {target_fraction}")
  if min_user_interactions < 0 or min_item_interactions < 0:
    raise ValueError("min_user_interactions and min_item_interactions must be >= 0")
  n, n_users, n_items = store.n_ratings, store.n_users, store.n_items
  user, item = store.user, store.item
  interaction = np.zeros(n, bool)
  for sl in store.iter_row_blocks(BLOCK_ROWS):
    interaction[sl] = store.stars(sl) >= np.float32(threshold)
  n_interactions = int(interaction.sum())
  report: dict[str, Any] = {"ratings": int(n), "ratings_below_threshold": n - n_interactions,
                            "interactions": n_interactions}

  # Liang's filter_triplets: items first, then users.
  item_counts = _bincount_rows(item, interaction, n_items)
  report["items_with_interactions"] = int((item_counts > 0).sum())
  if min_item_interactions > 0:
    drop_item = (item_counts > 0) & (item_counts < min_item_interactions)
    before = int(interaction.sum())
    for lo in range(0, n, BLOCK_ROWS):
      block = interaction[lo:lo + BLOCK_ROWS]
      block &= ~drop_item[np.asarray(item[lo:lo + BLOCK_ROWS])]
    report["items_removed_by_min_interactions"] = int(drop_item.sum())
    report["interactions_removed_by_item_filter"] = before - int(interaction.sum())
  if kcore:
    _kcore(store, interaction, max(min_user_interactions, 1), min_item_interactions, report)
  user_counts = _bincount_rows(user, interaction, n_users)
  report["users_without_interactions"] = int((user_counts == 0).sum())
  kept = user_counts >= max(min_user_interactions, 1)
  dropped = (user_counts > 0) & ~kept
  report["users_removed_by_min_interactions"] = int(dropped.sum())
  report["interactions_removed_by_user_filter"] = int(user_counts[dropped].sum())

  # Users: seeded permutation, train | validation | test (Liang's order).
  rng = np.random.default_rng([seed, 17])
  users = rng.permutation(np.flatnonzero(kept))
  n_heldout = heldout_count(heldout_users, len(users))
  if n_heldout < 1 or 2 * n_heldout >= len(users):
    raise ValueError(f"strong generalization needs 1 <= n_heldout and 2 * n_heldout < the "
                     f"{len(users)} users kept, got n_heldout = {n_heldout} "
                     f"(heldout_users = {heldout_users})")
  n_train_users = len(users) - 2 * n_heldout
  role = np.full(n_users, -1, np.int8)  # -1 unused, else TRAIN / VALID / TEST
  role[users[:n_train_users]] = TRAIN
  role[users[n_train_users:n_train_users + n_heldout]] = VALID
  role[users[n_train_users + n_heldout:]] = TEST

  assignment = np.full(n, UNUSED, np.int8)
  heldout_rows = []
  for lo in range(0, n, BLOCK_ROWS):
    r = role[np.asarray(user[lo:lo + BLOCK_ROWS])]
    m = interaction[lo:lo + BLOCK_ROWS]
    assignment[lo:lo + BLOCK_ROWS][m & (r == TRAIN)] = TRAIN
    heldout_rows.append(np.flatnonzero(m & (r > TRAIN)) + lo)
  heldout = np.concatenate(heldout_rows) if heldout_rows else np.zeros(0, np.int64)
  catalog = _bincount_rows(item, assignment == TRAIN, n_items) > 0
  outside = ~catalog[np.take(item, heldout)]
  report["catalog_items"] = int(catalog.sum())
  report["heldout_interactions_outside_catalog"] = int(outside.sum())
  report["heldout_items_outside_catalog"] = int(len(np.unique(np.take(item, heldout[outside]))))
  heldout = heldout[~outside]

  # Each held-out user: a seeded floor(target_fraction * n) of the interactions are targets.
  h_users = np.take(user, heldout).astype(np.int64)
  per_user = np.bincount(h_users, minlength=n_users)
  n_targets = np.floor(target_fraction * per_user + 1e-9).astype(np.int64)
  order = np.lexsort((rng.random(len(heldout)), h_users))
  sorted_users = h_users[order]
  starts = np.concatenate([[0], np.cumsum(per_user)])[:-1]
  rank = np.arange(len(order)) - starts[sorted_users]
  target = np.zeros(len(heldout), bool)
  target[order] = rank < n_targets[sorted_users]
  h_role = role[h_users]
  assignment[heldout] = np.where(target, h_role,
                                 np.where(h_role == VALID, VALID_FOLD_IN, TEST_FOLD_IN))
  for part, code in (("valid", VALID), ("test", TEST)):
    in_part = role == code
    report[f"{part}_users"] = int(in_part.sum())
    report[f"{part}_users_without_targets"] = int((in_part & (n_targets == 0)).sum())
  report["train_users"] = int(n_train_users)

  name = f"strong_gen_h{n_heldout}_seed{seed}"
  if threshold != 4.0:
    name += f"_t{threshold:g}"
  if min_user_interactions != 5:
    name += f"_u{min_user_interactions}"
  if min_item_interactions != 0:
    name += f"_i{min_item_interactions}"
  if target_fraction != 0.2:
    name += f"_f{target_fraction:g}"
  if kcore:
    name += "_kcore"
  return Split(name=name, protocol=STRONG_PROTOCOL, assignment=assignment,
               params={"heldout_users": heldout_users, "n_heldout": n_heldout,
                       "interaction_threshold": threshold,
                       "min_user_interactions": min_user_interactions,
                       "min_item_interactions": min_item_interactions,
                       "target_fraction": target_fraction, "seed": seed, "kcore": kcore},
               info={STRONG_PROTOCOL: report})


def _kcore(store: RatingStore, interaction: np.ndarray, min_user: int, min_item: int,
           report: dict[str, Any]) -> None:
  """Removes (in place) the interactions of users and items below their minimum until none is:
  dropping a user can push an item under its minimum, and the reverse."""
  n, before, rounds = store.n_ratings, int(interaction.sum()), 0
  while True:
    user_counts = _bincount_rows(store.user, interaction, store.n_users)
    item_counts = _bincount_rows(store.item, interaction, store.n_items)
    drop_user = (user_counts > 0) & (user_counts < min_user)
    drop_item = (item_counts > 0) & (item_counts < min_item)
    if not drop_user.any() and not drop_item.any():
      break
    rounds += 1
    for lo in range(0, n, BLOCK_ROWS):
      block = interaction[lo:lo + BLOCK_ROWS]
      block &= ~(drop_user[np.asarray(store.user[lo:lo + BLOCK_ROWS])]
                 | drop_item[np.asarray(store.item[lo:lo + BLOCK_ROWS])])
  report["kcore_rounds"] = rounds
  report["interactions_removed_by_kcore"] = before - int(interaction.sum())


def locate_pairs(store: RatingStore, users: np.ndarray, items: np.ndarray) -> np.ndarray:
  """Store row of each dense (user, item) pair, -1 where the pair is not rated."""
  users = np.asarray(users, np.int64)
  items = np.asarray(items, np.int64)
  result = np.full(len(users), -1, np.int64)
  valid = (users >= 0) & (items >= 0)
  query = np.flatnonzero(valid)
  query = query[np.argsort(users[query], kind="stable")]
  offsets = np.asarray(store.user_offsets)
  lo_user = 0
  while lo_user < store.n_users:
    target = offsets[lo_user] + BLOCK_ROWS
    hi_user = min(max(int(np.searchsorted(offsets, target, side="right")) - 1, lo_user + 1),
                  store.n_users)
    q_lo, q_hi = np.searchsorted(users[query], [lo_user, hi_user])
    if q_hi > q_lo:
      lo, hi = int(offsets[lo_user]), int(offsets[hi_user])
      keys = (np.asarray(store.user[lo:hi], np.int64) - lo_user) * store.n_items + store.item[lo:hi]
      order = np.argsort(keys)
      sorted_keys = keys[order]
      q = query[q_lo:q_hi]
      q_keys = (users[q] - lo_user) * store.n_items + items[q]
      pos = np.minimum(np.searchsorted(sorted_keys, q_keys), len(sorted_keys) - 1)
      hit = sorted_keys[pos] == q_keys
      result[q[hit]] = lo + order[pos[hit]]
    lo_user = hi_user
  return result


def from_test_pairs(store: RatingStore, user_ids: np.ndarray, item_ids: np.ndarray, *,
                    name: str, protocol: str, source: str | os.PathLike,
                    train_pairs: tuple[np.ndarray, np.ndarray] | None = None,
                    skip_filtered: bool = False) -> Split:
  """Marks the rows of the given original-id pairs as test, the rest as train.

  With `train_pairs` only those rows are train and everything else is unused, and the two
  lists must not overlap. Pairs missing from the store are an error naming `source`; with
  `skip_filtered`, pairs whose user or item the store dropped (min-ratings filters) are
  skipped and counted instead.
  """
  users, items = store.user_index(user_ids), store.item_index(item_ids)
  n_skipped = 0
  if skip_filtered:
    known = (users >= 0) & (items >= 0)
    n_skipped = int((~known).sum())
    users, items = users[known], items[known]
    user_ids, item_ids = np.asarray(user_ids)[known], np.asarray(item_ids)[known]
  rows = locate_pairs(store, users, items)
  missing = np.flatnonzero(rows < 0)
  if len(missing):
    raise DataError(source, f"{len(missing)} of {len(rows)} test pairs are not in the store, "
                    f"e.g. user {user_ids[missing[0]]} item {item_ids[missing[0]]} (was the "
                    "store filtered, or built from other data?)")
  assignment = np.full(store.n_ratings, TRAIN if train_pairs is None else UNUSED, np.int8)
  if train_pairs is not None:
    train_rows = locate_pairs(store, store.user_index(train_pairs[0]),
                              store.item_index(train_pairs[1]))
    if (train_rows < 0).any():
      raise DataError(source, f"{int((train_rows < 0).sum())} training pairs are not in the store")
    assignment[train_rows] = TRAIN
  if (assignment[rows] == TRAIN).any() and train_pairs is not None:
    raise DataError(source, "train and test pairs overlap")
  assignment[rows] = TEST
  params = {"source": os.fspath(source)}
  if skip_filtered:
    params["skipped_filtered_pairs"] = n_skipped
  return Split(name=name, protocol=protocol, assignment=assignment, params=params)


# ------------------------------------------------------------------------- stats and files
def cold_start_stats(store: RatingStore, split: Split) -> dict[str, Any]:
  """How many test ratings have a user or item with no training rating."""
  train = split.rows("train")
  user_seen = np.zeros(store.n_users, bool)
  item_seen = np.zeros(store.n_items, bool)
  for lo in range(0, len(train), BLOCK_ROWS):
    block = train[lo:lo + BLOCK_ROWS]
    user_seen[np.take(store.user, block)] = True
    item_seen[np.take(store.item, block)] = True
  test = split.rows("test")
  cold_user = ~user_seen[np.take(store.user, test)]
  cold_item = ~item_seen[np.take(store.item, test)]
  n = max(1, len(test))
  return {
      "n_test": int(len(test)),
      "cold_user": int(cold_user.sum()),
      "cold_item": int(cold_item.sum()),
      "cold_any": int((cold_user | cold_item).sum()),
      "cold_share": float((cold_user | cold_item).sum() / n),
      "users_in_test": int(len(np.unique(np.take(store.user, test)))),
  }


_COMPUTED_INFO = ("sizes", "cold_start", "store_fingerprint", "fingerprint")


def save_split(store: RatingStore, split: Split) -> Path:
  """Writes splits/NAME.npy and .json atomically; returns the json path."""
  if len(split.assignment) != store.n_ratings:
    raise ValueError("split length differs from the store")
  folder = store.splits_dir
  folder.mkdir(exist_ok=True)
  # What the protocol reported when it made the split (e.g. strong generalization's filter
  # counts) is kept beside the sizes; the fingerprint covers every row's code, fold-in too.
  extra = {k: v for k, v in split.info.items() if k not in _COMPUTED_INFO}
  split.info = {**extra, "sizes": split.sizes(), "cold_start": cold_start_stats(store, split),
                "store_fingerprint": store.fingerprint,
                "fingerprint": _digest(split.assignment)}
  tag = f"{os.getpid()}.{uuid.uuid4().hex[:6]}"  # concurrent writers never share a temp file
  tmp = folder / f".{split.name}.npy.{tag}.tmp"
  with open(tmp, "wb") as f:
    np.save(f, np.asarray(split.assignment, np.int8))
  os.replace(tmp, folder / f"{split.name}.npy")
  doc = {"name": split.name, "protocol": split.protocol, "params": split.params, **split.info}
  tmp = folder / f".{split.name}.json.{tag}.tmp"
  tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
  os.replace(tmp, folder / f"{split.name}.json")
  return folder / f"{split.name}.json"


def load_split(store: RatingStore, name: str) -> Split:
  meta_path = store.splits_dir / f"{name}.json"
  if not meta_path.is_file():
    raise DataError(store.path, f"no split named {name!r}; available: {store.list_splits()}")
  doc = json.loads(meta_path.read_text())
  assignment = np.load(store.splits_dir / f"{name}.npy", mmap_mode="r")
  if assignment.shape != (store.n_ratings,):
    raise DataError(meta_path, "split length differs from the store")
  if doc.get("store_fingerprint") != store.fingerprint:
    raise DataError(meta_path, "split was made for another version of this store")
  info = {k: doc[k] for k in _COMPUTED_INFO}
  info.update({k: v for k, v in doc.items() if k not in ("name", "protocol", "params", *info)})
  return Split(name=doc["name"], protocol=doc["protocol"], assignment=assignment,
               params=doc["params"], info=info)


def fingerprint_of(split: Split) -> str:
  """The digest of split's row codes now (save_split records it as info["fingerprint"])."""
  return _digest(split.assignment)


def _digest(assignment: np.ndarray) -> str:
  h = hashlib.blake2b(digest_size=16)
  for lo in range(0, len(assignment), BLOCK_ROWS * 4):
    h.update(np.ascontiguousarray(assignment[lo:lo + BLOCK_ROWS * 4]).tobytes())
  return h.hexdigest()
