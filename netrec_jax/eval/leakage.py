"""The leakage audit: checks run before every fit, a failure stops the run.

`audit(store, split, ...)` returns a record per check (name, applicable, passed, counts, what
it covers, and on failure a one-line message with an example (user, item) in original ids);
`audit_run` is what the loop and the comparison call: it writes leakage_audit.json and raises
LeakageError when a check fails. Every check is vectorised numpy over pair keys
(user * n_items + item, sorted once per part, then searchsorted).

  test_pairs_not_in_train_or_valid, valid_pairs_not_in_train
      (user, item) pairs of the rows every family reads (split.rows(part)); the store itself
      rejects duplicate pairs at build, so these catch rows selected twice or a store whose
      columns were changed after its build.
  train_before_cutoff       time splits (the split records a cutoff): no training or
                            validation rating dated on or after it (undated rows counted).
  time_order_per_user       leave-last-out: no user's training rating is dated after that
                            user's validation or test rating.
  features_from_train_rows  split_features (what the pair models' side features are built
                            from) and the run's own tables (the pair setup's standardised
                            features, the YouTube model's per-user counts and star sums)
                            equal counts and sums computed here from the assignment column.
  popularity_from_train_rows  the evaluator's item popularity (coverage, popularity@K,
                            cold-start buckets), the fixed negatives' popularity sampler and
                            the YouTube model's sampler counts equal training counts.
  negatives_exclude_positives  the fixed sampled-protocol negatives the evaluator will use
                            contain no item the user has a row for (train, valid, test).
  fold_in_excludes_targets  strong generalization: no fold-in pair is a target pair, and the
                            evaluator's fold-in matrix has no scored item; held-out users have
                            no training rows (heldout_users_not_in_train).
What it cannot see: features a family computes its own way and does not expose on its setup
(the content model's profiles and calibration, a graph model's normalisation); models that
read the store's columns directly instead of the split's rows.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from netrec_jax.data import features as features_lib
from netrec_jax.data import negatives as negatives_lib
from netrec_jax.data import splits as splits_lib
from netrec_jax.data.store import (NO_DATE, RatingStore, atomic_write_text, days_to_iso,
                                   iso_to_days)

AUDIT_FILE = "leakage_audit.json"
BLOCK_ROWS = 1 << 22
_PARTS = ("train", "valid", "test", "valid_fold_in", "test_fold_in")


class LeakageError(ValueError):
  """A leakage check failed: the message names the check and an offending pair."""


class _Keys:
  """Each part's rows and sorted pair keys, computed once and shared by the checks."""

  def __init__(self, store: RatingStore, split: splits_lib.Split):
    self.store, self.n_items = store, np.int64(store.n_items)
    # Only strong-generalization splits have fold-in rows: the others skip two scans.
    self.parts = _PARTS if split.protocol == splits_lib.STRONG_PROTOCOL else _PARTS[:3]
    self.rows = {part: split.rows(part) if part in self.parts else np.zeros(0, np.int64)
                 for part in _PARTS}
    self._sorted: dict[str, np.ndarray] = {}

  def keys(self, part: str) -> np.ndarray:
    rows = self.rows[part]
    keys = np.take(self.store.user, rows).astype(np.int64)
    keys *= self.n_items  # in place: no 100M-long temporaries
    keys += np.take(self.store.item, rows)
    return keys

  def sorted(self, part: str) -> np.ndarray:
    if part not in self._sorted:
      keys = self.keys(part)
      keys.sort()
      self._sorted[part] = keys
    return self._sorted[part]


def _member(table: np.ndarray, keys: np.ndarray, step: int = 1 << 16) -> np.ndarray:
  """keys[i] in table, both sorted: searched a slice at a time, each against the part of the
  table its range covers, so the search stays in cache (at 100M: half the time of one call)."""
  hit = np.zeros(len(keys), bool)
  if len(table) == 0:
    return hit
  for lo in range(0, len(keys), step):
    chunk = keys[lo:lo + step]
    a, b = np.searchsorted(table, [chunk[0], chunk[-1]])
    part = table[a:b + 1]
    if len(part):
      pos = np.minimum(np.searchsorted(part, chunk), len(part) - 1)
      hit[lo:lo + step] = part[pos] == chunk
  return hit


def _pair(store: RatingStore, key: int) -> str:
  """'user U item I' in original ids when the store maps them, else dense indices."""
  user, item = divmod(int(key), store.n_items)
  try:
    return (f"user {store.user_original_ids()[user]} item {store.item_original_ids()[item]} "
            "(original ids)")
  except Exception:  # a store without id tables: dense indices are what there is
    return f"user {user} item {item} (dense indices)"


def _check(name: str, covers: str, counts: dict[str, Any], failed: bool = False,
           message: str = "", applicable: bool = True) -> dict[str, Any]:
  out = {"name": name, "applicable": applicable, "passed": not failed, "covers": covers,
         "counts": counts}
  if failed:
    out["message"] = f"{name}: {message}"
  return out


def _na(name: str, covers: str, why: str) -> dict[str, Any]:
  out = _check(name, covers, {}, applicable=False)
  out["note"] = why
  return out


# ------------------------------------------------------------------------------ the checks
def _pairs(keys: _Keys) -> list[dict[str, Any]]:
  store, out = keys.store, []
  test, valid = keys.sorted("test"), keys.sorted("valid")
  in_train, in_valid = _member(keys.sorted("train"), test), _member(keys.sorted("valid"), test)
  bad = in_train | in_valid
  out.append(_check(
      "test_pairs_not_in_train_or_valid", "(user, item) of test rows vs train and valid rows",
      {"test_pairs": int(len(test)), "in_train": int(in_train.sum()),
       "in_valid": int(in_valid.sum())}, bool(bad.any()),
      f"{int(bad.sum())} test (user, item) pairs also in "
      f"{'train' if in_train.any() else 'validation'}, e.g. "
      f"{_pair(store, test[np.argmax(bad)]) if bad.any() else ''}"))
  hit = _member(keys.sorted("train"), valid)
  out.append(_check(
      "valid_pairs_not_in_train", "(user, item) of validation rows vs train rows",
      {"valid_pairs": int(len(valid)), "in_train": int(hit.sum())}, bool(hit.any()),
      f"{int(hit.sum())} validation (user, item) pairs also in train, e.g. "
      f"{_pair(store, valid[np.argmax(hit)]) if hit.any() else ''}"))
  return out


def _cutoff(keys: _Keys, split: splits_lib.Split) -> dict[str, Any]:
  name = "train_before_cutoff"
  covers = "dates of train and validation rows vs the split's cutoff"
  cutoff = split.params.get("cutoff")
  store = keys.store
  if not cutoff:
    return _na(name, covers, f"split {split.name} records no cutoff date")
  cut = iso_to_days(cutoff)
  counts, first = {"cutoff": cutoff}, None
  for part in ("train", "valid"):
    rows = keys.rows[part]
    dates = np.take(store.date, rows)
    late = dates >= cut
    counts[f"{part}_on_or_after"] = int(late.sum())
    counts[f"{part}_undated"] = int((dates == NO_DATE).sum())
    if late.any() and first is None:
      r = rows[np.argmax(late)]
      first = (part, int(store.user[r]) * keys.n_items + int(store.item[r]), int(dates[late][0]))
  msg = ""
  if first:
    n_late = counts["train_on_or_after"] + counts["valid_on_or_after"]
    msg = (f"{n_late} training/validation ratings dated on or after the cutoff {cutoff}, e.g. "
           f"{first[0]} {_pair(store, first[1])} on {days_to_iso(first[2])}")
  return _check(name, covers, counts, first is not None, msg)


def _per_user_extreme(users: np.ndarray, dates: np.ndarray, n_users: int, largest: bool
                      ) -> np.ndarray:
  """Per user the max (largest) or min date of these rows (users ascending); NaN-free fill."""
  fill = np.iinfo(np.int64).min if largest else np.iinfo(np.int64).max
  out = np.full(n_users, fill, np.int64)
  if len(users):
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ufunc = np.maximum if largest else np.minimum
    out[users[starts]] = ufunc.reduceat(dates.astype(np.int64), starts)
  return out


def _time_order(keys: _Keys, split: splits_lib.Split) -> dict[str, Any]:
  name = "time_order_per_user"
  covers = "leave-last-out: each user's latest train date vs that user's valid and test dates"
  store = keys.store
  if split.protocol != "loo":
    return _na(name, covers, "not a leave-last-out split")
  if not store.has_dates:
    return _na(name, covers, "the store has no dates")
  n_users = store.n_users
  per = {}
  for part in ("train", "valid", "test"):
    rows = keys.rows[part]
    users, dates = np.take(store.user, rows), np.take(store.date, rows)
    dated = dates != NO_DATE
    users, dates = users[dated], dates[dated]
    per[part] = (_per_user_extreme(users, dates, n_users, True),
                 _per_user_extreme(users, dates, n_users, False))
  train_max = per["train"][0]
  before_valid = train_max > per["valid"][1]
  before_test = np.maximum(train_max, per["valid"][0]) > per["test"][1]
  bad = before_valid | before_test
  counts = {"users_train_after_valid": int(before_valid.sum()),
            "users_train_or_valid_after_test": int(before_test.sum())}
  msg = ""
  if bad.any():
    user = int(np.argmax(bad))
    rows = keys.rows["train"][np.take(store.user, keys.rows["train"]) == user]
    late = rows[np.argmax(np.take(store.date, rows))]
    msg = (f"{int(bad.sum())} users have a training rating dated after their held-out one, "
           f"e.g. {_pair(store, user * keys.n_items + int(store.item[late]))}")
  return _check(name, covers, counts, bool(bad.any()), msg)


def _reference_counts(store: RatingStore, split: splits_lib.Split, sums: bool
                      ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
  """Per item (and with `sums` per user too): training rows and raw-rating sums, from the
  assignment column (not split.rows, the evaluator or features.py: computed another way)."""
  entities = (("user", store.user, store.n_users), ("item", store.item, store.n_items))
  if not sums:
    entities = entities[1:]
  out = {e: (np.zeros(n, np.int64), np.zeros(n, np.float64) if sums else None)
         for e, _, n in entities}
  for lo in range(0, store.n_ratings, BLOCK_ROWS):
    train = np.asarray(split.assignment[lo:lo + BLOCK_ROWS]) == splits_lib.TRAIN
    rating = np.asarray(store.rating[lo:lo + BLOCK_ROWS])[train] if sums else None
    for entity, column, n in entities:
      idx = np.asarray(column[lo:lo + BLOCK_ROWS])[train]
      out[entity][0][:] += np.bincount(idx, minlength=n)
      if sums:
        out[entity][1][:] += np.bincount(idx, weights=rating, minlength=n)
  return out


def _first_diff(a: np.ndarray, b: np.ndarray, rtol: float = 1e-5,
                atol: float = 1e-6) -> int | None:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    return -1
  bad = ~np.isclose(a, b, rtol=rtol, atol=atol)
  return int(np.argmax(bad)) if bad.any() else None


def _features(store: RatingStore, split: splits_lib.Split, ref, setup: Any,
              library: bool) -> dict[str, Any]:
  name = "features_from_train_rows"
  covers = []
  problems = []
  scale = store.rating_scale
  if library:
    covers.append("features.split_features (user and item count, mean, log count)")
    feats = features_lib.split_features(store, split)
    for entity in ("user", "item"):
      counts, sums = ref[entity]
      mean = sums / np.maximum(counts, 1) / scale
      got = feats[entity]
      k = _first_diff(got["n_ratings"], counts)
      if k is None:
        k = _first_diff(np.where(counts > 0, got["mean_rating"], 0), np.where(counts > 0, mean, 0))
      if k is not None:
        problems.append(f"features.split_features {entity} table differs from training-row "
                        f"counts at {entity} {k} ({got['n_ratings'][k] if k >= 0 else '?'} "
                        f"ratings counted, {counts[k] if k >= 0 else '?'} in train)")
  aux = getattr(setup, "aux", None) or {}
  if "user_features" in aux:
    covers.append("the pair setup's standardised side features")
    for entity in ("user", "item"):
      counts, sums = ref[entity]
      mean = np.where(counts > 0, sums / np.maximum(counts, 1) / scale,
                      ref["user"][1].sum() / max(ref["user"][0].sum(), 1) / scale)
      x = np.stack([np.log1p(counts), mean], 1)
      x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
      # Standardised float32 values are O(1): a near-zero one carries float32 rounding of the
      # unstandardised mean divided by a small std, so the tolerance is absolute. One rating
      # more or less moves log1p(count) or the mean by far more than this.
      k = _first_diff(np.asarray(aux[f"{entity}_features"]).reshape(-1), x.reshape(-1), 1e-4,
                      atol=1e-4)
      if k is not None:
        problems.append(f"the run's {entity}_features differ from features of the training "
                        f"rows at {entity} {max(k, 0) // 2}")
  state = getattr(setup, "s", None)  # the YouTube family keeps its tables in a dict
  hist = state.get("hist") if isinstance(state, dict) else None
  if hist is not None:
    covers.append("the YouTube model's per-user training counts and star sums")
    counts, sums = ref["user"]
    k = _first_diff(hist.counts, counts)
    if k is None:
      k = _first_diff(hist.sums, sums / scale)
    if k is not None:
      problems.append(f"the YouTube histories' counts or star sums differ from the training "
                      f"rows at user {k}")
  if not covers:
    return _na(name, "side features of the run", "the run uses no side features")
  return _check(name, "; ".join(covers), {"tables_checked": len(covers)}, bool(problems),
                "; ".join(problems))


def _popularity(ref, eval_data: Any, setup: Any, fixed) -> dict[str, Any]:
  name = "popularity_from_train_rows"
  counts = ref["item"][0]
  covers, problems = [], []
  if eval_data is not None:
    covers.append("the evaluator's item popularity")
    k = _first_diff(eval_data.item_popularity, counts)
    if k is not None:
      problems.append(f"the evaluator's item popularity differs from training counts at item "
                      f"{k}")
  if fixed is not None and fixed.sampler == "popularity":
    covers.append("the fixed negatives' popularity sampler")
    if fixed.popularity_sha256 != negatives_lib.array_sha256(counts):
      problems.append(f"the stored negatives {fixed.path} were drawn by popularity counts "
                      "that are not this split's training counts")
  s = getattr(setup, "s", None)
  if isinstance(s, dict) and "popularity" in s:
    covers.append("the YouTube model's sampler counts")
    k = _first_diff(s["popularity"], counts)
    if k is not None:
      problems.append(f"the YouTube sampler's popularity differs from training counts at item "
                      f"{k}")
  if not covers:
    return _na(name, "item popularity of the run", "no popularity table was given to audit")
  return _check(name, "; ".join(covers), {"items": int(len(counts)),
                                          "train_ratings": int(counts.sum())},
                bool(problems), "; ".join(problems))


def _negatives(keys: _Keys, fixed) -> dict[str, Any]:
  name = "negatives_exclude_positives"
  users, items = fixed.users, fixed.items.astype(np.int64)
  flat = np.sort((users[:, None] * keys.n_items + items).reshape(-1))
  known = np.zeros(len(flat), bool)
  counts = {"users": int(len(users)), "negatives": int(len(flat))}
  for part in keys.parts:
    hit = _member(keys.sorted(part), flat)
    counts[f"in_{part}"] = int(hit.sum())
    known |= hit
  test_users = np.unique(np.take(keys.store.user, keys.rows["test"]))
  missing = np.setdiff1d(test_users, users)
  counts["test_users_without_negatives"] = int(len(missing))
  msg = ""
  if known.any():
    msg = (f"{int(known.sum())} sampled negatives are known positives of their user, e.g. "
           f"{_pair(keys.store, flat[np.argmax(known)])} ({fixed.path})")
  elif len(missing):
    msg = f"{len(missing)} test users have no stored negatives ({fixed.path})"
  return _check(name, "the fixed negatives vs every row of the user (train, valid, test)",
                counts, bool(known.any() or len(missing)), msg)


def _fold_in(keys: _Keys, split: splits_lib.Split, eval_data: Any) -> list[dict[str, Any]]:
  covers = "fold-in rows vs target rows of the same part; the evaluator's fold-in matrix"
  if split.protocol != splits_lib.STRONG_PROTOCOL:
    why = "not a strong-generalization split (no fold-in)"
    return [_na("fold_in_excludes_targets", covers, why),
            _na("heldout_users_not_in_train", "held-out users vs training users", why)]
  store = keys.store
  counts, problems = {}, []
  for target, fold_in in splits_lib.FOLD_IN_OF.items():
    hit = _member(keys.sorted(fold_in), keys.sorted(target))
    counts[f"{target}_targets_in_fold_in"] = int(hit.sum())
    if hit.any():
      problems.append(f"{int(hit.sum())} {target} targets are also fold-in inputs, e.g. "
                      f"{_pair(store, keys.sorted(target)[np.argmax(hit)])}")
  if eval_data is not None and getattr(eval_data, "fold_in", None) is not None:
    inputs, scored = eval_data.fold_in.tocsr(), eval_data.relevant.tocsr()
    both = inputs.multiply(scored).tocoo()
    counts["evaluator_fold_in_items_scored"] = int(both.nnz)
    if both.nnz:
      problems.append(f"the evaluator folds in {both.nnz} items it scores, e.g. "
                      f"{_pair(store, int(both.row[0]) * keys.n_items + int(both.col[0]))}")
  out = [_check("fold_in_excludes_targets", covers, counts, bool(problems), "; ".join(problems))]
  train_users = np.zeros(store.n_users, bool)
  train_users[np.take(store.user, keys.rows["train"])] = True
  held = np.unique(np.concatenate([np.take(store.user, keys.rows[p]) for p in _PARTS[1:]]))
  leaked = held[train_users[held]]
  msg = ""
  if len(leaked):
    rows = keys.rows["train"][np.take(store.user, keys.rows["train"]) == leaked[0]]
    msg = (f"{len(leaked)} held-out users have training rows, e.g. "
           f"{_pair(store, int(leaked[0]) * keys.n_items + int(store.item[rows[0]]))}")
  out.append(_check("heldout_users_not_in_train", "held-out users vs training users",
                    {"heldout_users": int(len(held)), "with_train_rows": int(len(leaked))},
                    bool(len(leaked)), msg))
  return out


# ----------------------------------------------------------------------------- entry points
def audit(store: RatingStore, split: splits_lib.Split, *, eval_cfg: Any | None = None,
          eval_data: Any | None = None, setup: Any | None = None, features: bool = False,
          negatives: Any | None = None, raise_on_failure: bool = True) -> dict[str, Any]:
  """Every leakage check on `split` (see the module docstring); the record of each.

  eval_cfg: the run's `eval` section (sampled_negatives, negative_sampler): with sampled
  negatives the split's fixed negatives are drawn (first time) or read and audited.
  eval_data: an evaluator.EvalData of the run (its popularity and fold-in are audited).
  setup: the family's Setup (its side features and samplers are audited where exposed).
  features: also audit features.split_features itself (the run's setup does this when it
  uses them). negatives: audit these FixedNegatives instead of the split's stored ones.
  """
  t0 = time.time()
  keys = _Keys(store, split)
  checks = _pairs(keys)
  checks.append(_cutoff(keys, split))
  checks.append(_time_order(keys, split))
  uses_features = features or "user_features" in (getattr(setup, "aux", None) or {})
  state = getattr(setup, "s", None)
  tables = uses_features or (isinstance(state, dict) and "hist" in state)
  ref = _reference_counts(store, split, sums=tables)
  checks.append(_features(store, split, ref, setup, uses_features)
                if tables else _na("features_from_train_rows", "side features of the run",
                                   "the run uses no side features"))
  n_neg = int(getattr(eval_cfg, "sampled_negatives", 0) or 0) if eval_cfg is not None else 0
  fixed, neg_note = negatives, ""
  strong = split.protocol == splits_lib.STRONG_PROTOCOL
  if fixed is None and n_neg > 0 and not strong:
    try:
      fixed = negatives_lib.fixed_negatives(store, split, eval_cfg.negative_sampler, n_neg)
    except negatives_lib.NegativesError as e:  # the evaluator skips the protocol, saying so
      neg_note = str(e)
  checks.append(_popularity(ref, eval_data, setup, fixed))
  neg_covers = "the fixed negatives vs every row of the user (train, valid, test)"
  if fixed is not None:
    checks.append(_negatives(keys, fixed))
  else:
    checks.append(_na("negatives_exclude_positives", neg_covers, neg_note or (
        "the sampled protocol does not apply under strong generalization" if strong and n_neg
        else "the run uses no sampled negatives")))
  checks.extend(_fold_in(keys, split, eval_data))
  failed = [c for c in checks if not c["passed"]]
  record = {"store": store.name, "store_fingerprint": store.fingerprint, "split": split.name,
            "protocol": split.protocol, "split_fingerprint": splits_lib.fingerprint_of(split),
            "passed": not failed, "checks": checks, "seconds": time.time() - t0}
  if fixed is not None:
    record["negatives"] = fixed.describe()
  if failed:
    record["message"] = (f"leakage audit of split {split.name} failed: "
                         + "; ".join(c["message"] for c in failed))
    if raise_on_failure:
      raise LeakageError(record["message"])
  return record


def write(record: dict[str, Any], folder: str | os.PathLike) -> Path:
  """FOLDER/leakage_audit.json, atomically."""
  path = Path(folder) / AUDIT_FILE
  atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=float) + "\n")
  return path


def audit_run(config: Any, workdir: str | os.PathLike, setup: Any | None = None,
              eval_data: Any | None = None) -> dict[str, Any]:
  """The audit of a run before it fits: on setup's store and split (or config's, for a family
  that trains nothing), written to WORKDIR/leakage_audit.json; raises LeakageError on failure.
  """
  if setup is not None:
    store, split = setup.store, setup.split
  else:
    from netrec_jax.data import datasets
    store = datasets.open_or_build(config.data)
    split = datasets.make_split(store, config.split)
  if split is None:
    return {}
  record = audit(store, split, eval_cfg=config.eval, eval_data=eval_data, setup=setup,
                 raise_on_failure=False)
  import jax
  if jax.process_index() == 0:
    write(record, workdir)
  if not record["passed"]:
    raise LeakageError(record["message"])
  return record
