"""Fixed negatives for the sampled protocols: drawn once per split, stored beside it, verified.

Sampled metrics (loo_99neg, loo_pop100) rank each held-out item against n items the user never
rated. Redrawn per run (RecBole #2077), two models or two reruns rank against different items
and their figures differ by the draw. Here they are drawn once per (split, sampler, n), by a
generator seeded from the split's fingerprint, sampler and n, written atomically to
STORE/splits/negatives/ and checked against their recorded sha256 whenever read, so every
model and every rerun ranks against the same items, and a damaged file is refused.

Known positives, never drawn: every item the user has a row for in the split, whatever its
part (train, validation, test, fold-in), i.e. every rating except the split's unused rows.
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

from netrec_jax.data import splits as splits_lib
from netrec_jax.data.errors import DataError
from netrec_jax.data.store import RatingStore, atomic_write_text

SAMPLERS = ("uniform", "popularity")
FOLDER = "negatives"  # under store.splits_dir, so list_splits (splits/*.json) never sees it
USER_BATCH = 4096  # users per vectorised draw; fixed, since the draws depend on it
FORMAT_VERSION = 1


class NegativesError(ValueError):
  """Too few candidate items for the sampled protocol."""


def sample_negatives(rng: np.random.Generator, candidates: np.ndarray, n: int,
                     popularity: np.ndarray | None = None) -> np.ndarray:
  """n distinct items of `candidates`: uniformly, or with probability proportional to
  `popularity` (training counts; items never rated in training are never drawn)."""
  weight = None
  if popularity is not None:
    weight = popularity[candidates].astype(np.float64)
    candidates, weight = candidates[weight > 0], weight[weight > 0]
  if len(candidates) < n:
    raise NegativesError(f"a test user has only {len(candidates)} items to draw {n} sampled "
                         "negatives from: the catalog is too small for this sampled protocol")
  return rng.choice(candidates, n, replace=False,
                    p=None if weight is None else weight / weight.sum())


@dataclasses.dataclass(frozen=True)
class FixedNegatives:
  """n negatives for every user with a test rating (ascending users)."""

  users: np.ndarray  # int64 [m]
  items: np.ndarray  # int32 [m, n]
  sampler: str
  sha256: str  # of the stored array (users in column 0, then the items)
  split_fingerprint: str
  popularity_sha256: str | None  # the training counts the popularity sampler drew by
  path: Path | None  # None when the store folder could not be written

  def of(self, users: np.ndarray) -> np.ndarray:
    """[len(users), n] negatives of these users (each must have a test rating)."""
    users = np.asarray(users, np.int64)
    if len(users) == 0:
      return self.items[:0]
    pos = np.minimum(np.searchsorted(self.users, users), max(len(self.users) - 1, 0))
    missing = np.ones(len(users), bool) if len(self.users) == 0 else self.users[pos] != users
    if missing.any():
      raise ValueError(f"{self.path}: no stored negatives for user {users[np.argmax(missing)]} "
                       "(not a test user of this split)")
    return self.items[pos]

  def describe(self) -> dict[str, Any]:
    """What a result records about the negatives it ranked against."""
    return {"negatives_sha256": self.sha256, "negatives_file": str(self.path),
            "negatives_users": int(len(self.users)),
            "negatives_seed": f"sha256(split fingerprint {self.split_fingerprint}, "
                              f"{self.sampler}, {self.items.shape[1]})"}


def array_sha256(array: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def seed_of(split_fingerprint: str, sampler: str, n: int) -> int:
  """The draw's seed: a function of the split's content, the sampler and n only."""
  digest = hashlib.sha256(f"{split_fingerprint}|{sampler}|{n}".encode()).digest()
  return int.from_bytes(digest[:8], "little")


def train_item_counts(store: RatingStore, split: splits_lib.Split) -> np.ndarray:
  """Training ratings per item: what the popularity sampler draws by."""
  return np.bincount(np.take(store.item, split.rows("train")),
                     minlength=store.n_items).astype(np.int64)


def paths(store: RatingStore, split: splits_lib.Split, sampler: str, n: int,
          fingerprint: str | None = None) -> tuple[Path, Path]:
  """(array, metadata) files of split's negatives; the split fingerprint is in the name, so a
  changed split never reads another split's negatives."""
  fingerprint = fingerprint or splits_lib.fingerprint_of(split)
  stem = f"{split.name}.{sampler}{n}.{fingerprint[:16]}"
  folder = store.splits_dir / FOLDER
  return folder / f"{stem}.npy", folder / f"{stem}.json"


def fixed_negatives(store: RatingStore, split: splits_lib.Split, sampler: str, n: int
                    ) -> FixedNegatives:
  """split's stored negatives (verified by sha256), drawn and stored the first time."""
  if sampler not in SAMPLERS:
    raise ValueError(f"negative sampler must be one of {SAMPLERS}, got {sampler!r}")
  if n <= 0:
    raise ValueError(f"sampled negatives must be > 0, got {n}")
  fingerprint = splits_lib.fingerprint_of(split)
  npy, meta = paths(store, split, sampler, n, fingerprint)
  if npy.is_file() and meta.is_file():
    return _read(npy, meta, fingerprint, sampler, n)
  counts = train_item_counts(store, split)
  table = draw(store, split, sampler, n, seed_of(fingerprint, sampler, n), counts)
  sha = array_sha256(table)
  pop_sha = array_sha256(counts) if sampler == "popularity" else None
  doc = {"format_version": FORMAT_VERSION, "split": split.name, "protocol": split.protocol,
         "split_fingerprint": fingerprint, "store_fingerprint": store.fingerprint,
         "sampler": sampler, "n": n, "shape": list(table.shape), "sha256": sha,
         "popularity_sha256": pop_sha, "seed": seed_of(fingerprint, sampler, n),
         "known_positives": "every row of the split except unused ones"}
  path: Path | None = npy
  try:
    npy.parent.mkdir(parents=True, exist_ok=True)
    tmp = npy.with_name(f".{npy.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
    with open(tmp, "wb") as f:
      np.save(f, table)
    os.replace(tmp, npy)
    atomic_write_text(meta, json.dumps(doc, indent=2, sort_keys=True) + "\n")
  except OSError:  # a read-only store: the draw is deterministic, so use it unstored
    path = None
  return FixedNegatives(table[:, 0].astype(np.int64), np.ascontiguousarray(table[:, 1:]),
                        sampler, sha, fingerprint, pop_sha, path)


def _read(npy: Path, meta: Path, fingerprint: str, sampler: str, n: int) -> FixedNegatives:
  try:
    doc = json.loads(meta.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise DataError(meta, f"unreadable negatives metadata ({e}); delete it and {npy.name} "
                    "to redraw") from None
  try:
    table = np.load(npy)
  except (OSError, ValueError, EOFError) as e:
    raise DataError(npy, f"unreadable stored negatives ({type(e).__name__}); delete it to "
                    "redraw") from None
  expected = (doc.get("split_fingerprint"), doc.get("sampler"), doc.get("n"))
  if expected != (fingerprint, sampler, n):
    raise DataError(meta, f"stored negatives are for split {expected[0]}, {expected[1]} "
                    f"{expected[2]}, not {fingerprint}, {sampler} {n}")
  sha = array_sha256(table)
  if table.dtype != np.int32 or list(table.shape) != doc.get("shape") or sha != doc.get("sha256"):
    raise DataError(npy, f"stored negatives fail their fingerprint (sha256 {sha[:16]}..., "
                    f"shape {list(table.shape)}; recorded {str(doc.get('sha256'))[:16]}..., "
                    f"{doc.get('shape')}): the file is damaged; delete it to redraw")
  return FixedNegatives(table[:, 0].astype(np.int64), np.ascontiguousarray(table[:, 1:]),
                        sampler, sha, fingerprint, doc.get("popularity_sha256"), npy)


# ------------------------------------------------------------------------------- the draw
def user_rows(store: RatingStore, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(store rows of these users, the position in `users` of each row's user)."""
  offsets = np.asarray(store.user_offsets, np.int64)
  starts, lengths = offsets[users], offsets[users + 1] - offsets[users]
  owner = np.repeat(np.arange(len(users)), lengths)
  first = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
  rows = np.arange(int(lengths.sum()), dtype=np.int64) - first[owner] + starts[owner]
  return rows, owner


def draw(store: RatingStore, split: splits_lib.Split, sampler: str, n: int, seed: int,
         counts: np.ndarray | None = None) -> np.ndarray:
  """int32 [m, 1 + n]: each user with a test rating (column 0) and n distinct items the user
  has no row for, uniformly or by training popularity (never an item without one).

  Vectorised rejection: for a batch of users, i.i.d. draws from the weights, those already
  known or repeated discarded, the first n kept; the sequence is extended for users still
  short. The first n distinct admissible items of an i.i.d. sequence are distributed as
  successive sampling without replacement (numpy's choice(replace=False, p)). A user still
  short after the extensions (nearly every weighted item known) is drawn by sample_negatives.
  """
  n_items = store.n_items
  users = np.unique(np.take(store.user, split.rows("test"))).astype(np.int64)
  if sampler == "popularity":
    counts = train_item_counts(store, split) if counts is None else counts
    weight = counts.astype(np.float64)
  else:
    weight = np.ones(n_items)
  cdf = np.cumsum(weight)
  weighted = weight > 0
  if not weighted.any():
    raise NegativesError("no item has a training rating: nothing to draw sampled negatives from")
  last = int(np.flatnonzero(weighted)[-1])  # a draw rounded up to cdf[-1] lands here
  rng = np.random.default_rng(seed)
  assignment = split.assignment
  out = np.empty((len(users), 1 + n), np.int32)
  out[:, 0] = users
  for lo in range(0, len(users), USER_BATCH):
    batch = users[lo:lo + USER_BATCH]
    rows, owner = user_rows(store, batch)
    known = np.asarray(assignment[rows]) != splits_lib.UNUSED
    items, owner = np.take(store.item, rows[known]).astype(np.int64), owner[known]
    known_keys = np.sort(owner * n_items + items)
    available = int(weighted.sum()) - np.bincount(owner[weighted[items]], minlength=len(batch))
    if available.min() < n:
      raise NegativesError(f"a test user has only {int(available.min())} items to draw {n} "
                           "sampled negatives from: the catalog is too small for this "
                           "sampled protocol")
    out[lo:lo + len(batch), 1:] = _draw_batch(rng, cdf, last, n_items, n, known_keys,
                                              len(batch),
                                              weight if sampler == "popularity" else None)
  return out


def _draw_batch(rng: np.random.Generator, cdf: np.ndarray, last: int, n_items: int, n: int,
                known_keys: np.ndarray, n_users: int, popularity: np.ndarray | None
                ) -> np.ndarray:
  result = np.empty((n_users, n), np.int32)
  pending = np.arange(n_users)
  seq = np.zeros((n_users, 0), np.int64)
  width = 2 * n + 32
  for _ in range(3):
    more = np.searchsorted(cdf, rng.random((len(pending), width)) * cdf[-1], side="right")
    seq = np.concatenate([seq, np.minimum(more, last)], axis=1)
    keys = pending[:, None] * n_items + seq
    flat = keys.ravel()
    pos = np.minimum(np.searchsorted(known_keys, flat), max(len(known_keys) - 1, 0))
    seen = (known_keys[pos] == flat) if len(known_keys) else np.zeros(len(flat), bool)
    order = np.argsort(flat, kind="stable")  # equal keys keep draw order: first one stays
    repeat = np.zeros(len(flat), bool)
    repeat[order[1:]] = flat[order[1:]] == flat[order[:-1]]
    ok = ~(seen | repeat).reshape(keys.shape)
    ok &= np.cumsum(ok, axis=1) <= n
    filled = ok.sum(axis=1) == n
    result[pending[filled]] = seq[filled][ok[filled]].reshape(-1, n)
    pending, seq = pending[~filled], seq[~filled]
    if len(pending) == 0:
      return result
    width *= 4
  for user in pending:  # nearly every weighted item known: the exact sampler
    own = known_keys[(known_keys >= user * n_items) & (known_keys < (user + 1) * n_items)]
    candidates = np.setdiff1d(np.arange(n_items), own - user * n_items, assume_unique=True)
    result[user] = sample_negatives(rng, candidates, n, popularity)
  return result
