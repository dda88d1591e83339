"""Rating and top-K ranking metrics in numpy, accumulated in float64.

Every function is vectorised over users (no Python loop per user) and every result says what
it was computed on, so that numbers from different runs can be compared honestly:

* `rating_metrics`: RMSE and MAE of predictions clipped to the rating range (`"clipped": True`);
  `rating_errors_per_user`: the same errors summed per user, to resample users (statistics.py).
* `ranking_metrics` / `RankingAccumulator`: precision, recall (two denominators), NDCG, hit
  rate and MRR of top-K lists against held-out relevant items, averaged over the users that
  have at least one relevant item. `recall="min_k"` names Liang et al.'s min(K, n_rel)
  denominator `recall@K` (the strong-generalization protocol's Recall@K). The accumulator
  takes users in batches and gives the same means as one call on all users. With
  `per_user=True` it also keeps each user's values, whose mean is the aggregate, for paired
  bootstrap intervals and tests (`statistics.py`).
* `catalog_coverage`, `popularity_bias`: what gets recommended, regardless of relevance.
* `sampled_rank_metrics`: HR@K and NDCG@K of the leave-one-out protocol with sampled negatives
  (NCF's `loo_99neg`), ties counted against the positive.
* `topk_from_scores`: deterministic top-K (ties to the lower item index) that never returns
  excluded items, e.g. the user's training items.

Top-K lists are int arrays [n_users, K_max] of item indices, best first; -1 (`PAD`) marks an
empty slot, for users with fewer than K_max candidates. Relevant items are a
`scipy.sparse` CSR [n_users, n_items]: an item is relevant when its stored value is > 0, and
that value is its gain when NDCG is graded.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

PAD = -1  # an empty slot in a top-K list


# --------------------------------------------------------------------------- rating metrics
def _clipped_errors(pred: npt.ArrayLike, truth: npt.ArrayLike, rating_range: tuple[float, float],
                    caller: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
  """Flat float64 predictions, clipped errors and the range, after the shared input checks."""
  p = np.asarray(pred, dtype=np.float64)
  t = np.asarray(truth, dtype=np.float64)
  if p.shape != t.shape:
    raise ValueError(f"pred and truth shapes differ: {p.shape} vs {t.shape}")
  if p.size == 0:
    raise ValueError(f"{caller} needs at least one rating")
  lo, hi = (float(v) for v in rating_range)
  if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
    raise ValueError(f"rating_range must be finite (low, high) with low < high, got {rating_range}")
  if np.isnan(p).any() or np.isnan(t).any():
    raise ValueError("pred and truth must not contain NaN")
  p, t = p.ravel(), t.ravel()
  return p, np.clip(p, lo, hi) - t, (lo, hi)


def rating_metrics(pred: npt.ArrayLike, truth: npt.ArrayLike,
                   rating_range: tuple[float, float]) -> dict[str, Any]:
  """RMSE and MAE with predictions clipped to `rating_range` (the usual Netflix Prize rule).

  Clipping can only lower the error of a prediction outside the range, so it is always done
  and the result says so (`clipped`, `n_clipped`), to keep clipped and raw numbers apart.
  """
  p, err, (lo, hi) = _clipped_errors(pred, truth, rating_range, "rating_metrics")
  return {
      "rmse": float(np.sqrt(np.mean(err * err))),
      "mae": float(np.mean(np.abs(err))),
      "n": int(p.size),
      "clipped": True,
      "rating_range": (lo, hi),
      "n_clipped": int(np.count_nonzero((p < lo) | (p > hi))),
  }


def rating_errors_per_user(users: npt.ArrayLike, pred: npt.ArrayLike, truth: npt.ArrayLike,
                           rating_range: tuple[float, float]) -> dict[str, np.ndarray]:
  """Per-user sums of squared and absolute clipped error and rating counts.

  RMSE and MAE weigh ratings, not users, so a bootstrap over users must resample these sums:
  the RMSE of a resample is sqrt(sum sse / sum n) over its users. Same clipping and checks as
  `rating_metrics`; sqrt(sse.sum() / n.sum()) equals its RMSE. `users` are non-negative int ids,
  one per rating; the result holds the users with at least one rating, in ascending id order:
  `users` int64, `sse`, `sae` float64, `n` int64.
  """
  _, err, _ = _clipped_errors(pred, truth, rating_range, "rating_errors_per_user")
  u = np.asarray(users)
  if u.size != err.size:
    raise ValueError(f"users has {u.size} entries but pred has {err.size}")
  if not np.issubdtype(u.dtype, np.integer):
    raise TypeError(f"users must hold integer ids, got dtype {u.dtype}")
  u = u.ravel().astype(np.int64, copy=False)
  if u.min() < 0:
    raise ValueError("users must be non-negative ids")
  # bincount over dense ids is O(n_ratings), unlike np.unique's sort (100M ratings at Netflix).
  n = np.bincount(u)
  ids = np.flatnonzero(n)
  return {
      "users": ids.astype(np.int64),
      "sse": np.bincount(u, weights=err * err)[ids],
      "sae": np.bincount(u, weights=np.abs(err))[ids],
      "n": n[ids].astype(np.int64),
  }


# --------------------------------------------------------------------------- validation
def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
  """Sorted distinct cut-offs, each a positive int."""
  if isinstance(ks, (int, np.integer)):
    ks = (ks,)
  out = sorted({int(k) for k in ks})
  if not out or out[0] < 1 or any(int(k) != k for k in ks):
    raise ValueError(f"ks must be positive integers, got {ks!r}")
  return tuple(out)


def _as_topk(topk: npt.ArrayLike, n_items: int) -> np.ndarray:
  """int64 [n_users, K_max] with entries in [-1, n_items) and no item twice in a row."""
  t = np.asarray(topk)
  if t.ndim != 2:
    raise ValueError(f"topk must be 2-D [n_users, K_max], got shape {t.shape}")
  if t.size and not np.issubdtype(t.dtype, np.integer):
    raise TypeError(f"topk must hold integer item indices, got dtype {t.dtype}")
  t = t.astype(np.int64, copy=False)
  if t.size and (t.min() < PAD or t.max() >= n_items):
    raise ValueError(f"topk entries must be item indices in [0, {n_items}) or {PAD} (padding)")
  if t.shape[1] > 1:
    s = np.sort(t, axis=1)
    if np.any((s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)):
      raise ValueError("topk lists an item more than once for some user")
  return t


def _as_relevance(relevant: Any) -> sp.csr_matrix:
  """A canonical float64 CSR copy holding only the positive (relevant) entries."""
  if not sp.issparse(relevant):
    raise TypeError(f"relevant must be a scipy.sparse matrix, got {type(relevant).__name__}")
  rel = sp.csr_matrix(relevant, dtype=np.float64, copy=True)
  rel.sum_duplicates()  # also sorts indices, which the lookup below relies on
  if rel.nnz and (np.isnan(rel.data).any() or rel.data.min() < 0):
    raise ValueError("relevant must hold non-negative gains (0 means not relevant)")
  rel.eliminate_zeros()
  return rel


def _discounts(k: int) -> np.ndarray:
  """1 / log2(rank + 1) for ranks 1..k."""
  return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


RECALL_DENOMINATORS = ("n_relevant", "min_k")


def _metric_names(ks: Sequence[int], recall: str = "n_relevant") -> list[str]:
  names = []
  for k in ks:
    pair = ([f"recall@{k}", f"recall_capped@{k}"] if recall == "n_relevant"
            else [f"recall@{k}", f"recall_uncapped@{k}"])
    names += [f"precision@{k}", *pair, f"ndcg@{k}", f"hit_rate@{k}"]
  return names + ["mrr"]


def _min_k_recall(values: dict[str, np.ndarray], ks: Sequence[int]) -> dict[str, np.ndarray]:
  """recall@K := hits / min(K, n_rel) (Liang et al. 2018); hits / n_rel is recall_uncapped@K."""
  out = dict(values)
  for k in ks:
    out[f"recall_uncapped@{k}"] = out.pop(f"recall@{k}")
    out[f"recall@{k}"] = out.pop(f"recall_capped@{k}")
  return out


# --------------------------------------------------------------------------- ranking metrics
def _top_gains(rel: sp.csr_matrix, k_max: int) -> np.ndarray:
  """[n_users, k_max]: each user's relevant gains, largest first, zero-padded (ideal list)."""
  n_users = rel.shape[0]
  rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(rel.indptr))
  order = np.lexsort((-rel.data, rows))  # rows stay grouped; gains descending within a row
  pos = np.arange(rel.nnz, dtype=np.int64) - rel.indptr[rows]
  keep = pos < k_max
  top = np.zeros((n_users, k_max), dtype=np.float64)
  top[rows[keep], pos[keep]] = rel.data[order][keep]
  return top


def _per_user(topk: np.ndarray, rel: sp.csr_matrix, ks: tuple[int, ...],
              graded: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """Per-user metric arrays for every row, and n_relevant; skipping is left to the caller."""
  n_users, k_max = topk.shape
  n_items = rel.shape[1]
  if ks[-1] > k_max:
    raise ValueError(f"cut-off K={ks[-1]} exceeds the top-K lists' length K_max={k_max}")
  n_rel = np.diff(rel.indptr).astype(np.int64)

  # Gain of each listed item: binary search of (user, item) keys, sorted in a canonical CSR.
  keys = np.repeat(np.arange(n_users, dtype=np.int64), n_rel) * n_items + rel.indices
  listed = topk >= 0
  query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + np.where(listed, topk, 0)
  if keys.size:
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    hit = listed & (keys[pos] == query)
    gain = np.where(hit, rel.data[pos], 0.0)
  else:
    hit = np.zeros(topk.shape, dtype=bool)
    gain = np.zeros(topk.shape, dtype=np.float64)

  disc = _discounts(k_max)
  cum_hits = np.cumsum(hit, axis=1, dtype=np.int64).astype(np.float64)
  cum_dcg = np.cumsum((gain if graded else hit) * disc, axis=1)
  if graded:
    cum_idcg = np.cumsum(_top_gains(rel, k_max) * disc, axis=1)
  else:
    ideal = np.concatenate([[0.0], np.cumsum(disc)])  # ideal[j]: DCG of j hits at the top

  out: dict[str, np.ndarray] = {}
  n_rel_f = n_rel.astype(np.float64)
  for k in ks:
    hits_k = cum_hits[:, k - 1]
    out[f"precision@{k}"] = hits_k / k
    out[f"recall@{k}"] = hits_k / np.maximum(n_rel_f, 1.0)
    out[f"recall_capped@{k}"] = hits_k / np.maximum(np.minimum(n_rel_f, k), 1.0)
    idcg = cum_idcg[:, k - 1] if graded else ideal[np.minimum(n_rel, k)]
    out[f"ndcg@{k}"] = np.divide(cum_dcg[:, k - 1], idcg, out=np.zeros(n_users),
                                 where=idcg > 0)
    out[f"hit_rate@{k}"] = (hits_k > 0).astype(np.float64)
  first = np.argmax(hit, axis=1)
  out["mrr"] = np.where(hit.any(axis=1), 1.0 / (first + 1.0), 0.0)
  return out, n_rel


def _popularity_percentiles(item_popularity: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  """float64 popularity and its percentile rank in [0, 100] per item (mid-rank for ties).

  percentile(i) = 100 * (#items less popular than i + 0.5 * #items as popular as i) / n_items,
  scipy.stats.percentileofscore's kind="mean": tied items share one value, and the catalog's
  average percentile is exactly 50.
  """
  pop = np.asarray(item_popularity, dtype=np.float64)
  if pop.ndim != 1 or pop.size == 0:
    raise ValueError(f"item_popularity must be a non-empty 1-D array, got shape {pop.shape}")
  if np.isnan(pop).any():
    raise ValueError("item_popularity must not contain NaN")
  s = np.sort(pop)
  below = np.searchsorted(s, pop, side="left")
  equal = np.searchsorted(s, pop, side="right") - below
  return pop, 100.0 * (below + 0.5 * equal) / pop.size


class RankingAccumulator:
  """Ranking metrics over users fed in batches, finalised once by `result()`.

  Each metric is kept as a float64 sum over evaluated users plus a count, coverage as the best
  rank at which each item was listed, popularity as sums over listed slots; so one batch or many
  give the same result, up to float64 summation order (~1e-15 relative).

  Per-user definitions, for the users with at least one relevant item (n_rel > 0); users
  without are skipped and counted in `n_users_skipped`. hits@K counts relevant items among
  the first K slots; an empty slot (-1) is never a hit.

  * precision@K = hits@K / K (a short list is not rewarded for its empty slots).
  * recall@K = hits@K / n_rel, the standard definition: below 1 whenever n_rel > K.
  * recall_capped@K = hits@K / min(K, n_rel): 1 for a perfect list (as in Mult-VAE papers).
    With `recall="min_k"` (the strong-generalization protocol) this one is named recall@K,
    as those papers name it, and hits@K / n_rel is recall_uncapped@K.
  * ndcg@K = DCG@K / IDCG@K with DCG@K = sum_{r<=K} gain_r / log2(r + 1): gain 1 for a relevant
    item by default, the stored value (linear, like sklearn.metrics.ndcg_score) when `graded`;
    IDCG@K is the DCG of the user's own relevant gains sorted descending, truncated at K.
  * hit_rate@K = 1 if hits@K > 0 else 0.
  * mrr = 1 / rank of the first relevant item within K_max (all of the list), 0 if none;
    every batch must therefore have the same K_max.

  With `coverage=True`, coverage@K is the share of the catalog listed in any row's first K
  slots; with `item_popularity`, popularity@K and popularity_percentile@K are means over all
  listed slots (see `popularity_bias`). Both count every row, users without relevant items too.

  With `per_user=True` the accumulator also keeps every evaluated user's value of each metric
  above (not coverage or popularity, which are not means over users), with the user's id, so
  that intervals and paired tests can resample users; `per_user_values()` returns them, and
  their mean is what `result()` reports.
  """

  def __init__(self, ks: Sequence[int], *, graded: bool = False, coverage: bool = False,
               item_popularity: npt.ArrayLike | None = None, per_user: bool = False,
               recall: str = "n_relevant"):
    self.ks = _check_ks(ks)
    self.graded = bool(graded)
    if recall not in RECALL_DENOMINATORS:
      raise ValueError(f"recall must be one of {RECALL_DENOMINATORS}, got {recall!r}")
    self.recall = recall
    self._coverage = bool(coverage)
    self._pop = self._pct = None
    if item_popularity is not None:
      self._pop, self._pct = _popularity_percentiles(item_popularity)
    self._sums = {name: 0.0 for name in _metric_names(self.ks, recall)}
    self._n_evaluated = 0
    self._n_skipped = 0
    self._k_max: int | None = None
    self._n_items: int | None = None
    self._best_rank: np.ndarray | None = None  # [n_items]: lowest 0-based slot listed
    self._pop_sums = np.zeros((3, len(self.ks)), dtype=np.float64)  # popularity, pct, slots
    self._keep_per_user = bool(per_user)
    self._user_chunks: list[np.ndarray] = []
    self._value_chunks: dict[str, list[np.ndarray]] = {name: [] for name in self._sums}
    self._n_rows = 0  # rows fed so far: the default user ids

  def update(self, topk: npt.ArrayLike, relevant: Any, users: npt.ArrayLike | None = None) -> None:
    """Adds one batch of users: their top-K rows and their rows of relevant items.

    `users` are the rows' user ids, kept with the per-user values; by default each row's
    position among all rows fed so far (0, 1, ... across batches).
    """
    rel = _as_relevance(relevant)
    n_items = rel.shape[1]
    t = _as_topk(topk, n_items)
    if t.shape[0] != rel.shape[0]:
      raise ValueError(f"topk has {t.shape[0]} rows but relevant has {rel.shape[0]}")
    if users is None:
      ids = np.arange(self._n_rows, self._n_rows + t.shape[0], dtype=np.int64)
    else:
      ids = np.asarray(users)
      if ids.shape != (t.shape[0],):
        raise ValueError(f"users must be 1-D with one id per row ({t.shape[0]}), got {ids.shape}")
      if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"users must hold integer ids, got dtype {ids.dtype}")
      ids = ids.astype(np.int64)
    if self._n_items is None:
      self._n_items, self._k_max = n_items, t.shape[1]
      if self._pop is not None and self._pop.size != n_items:
        raise ValueError(f"item_popularity has {self._pop.size} items, relevant {n_items}")
      if self._coverage:
        self._best_rank = np.full(n_items, np.iinfo(np.int64).max, dtype=np.int64)
    elif n_items != self._n_items or t.shape[1] != self._k_max:
      raise ValueError(f"batch has n_items={n_items}, K_max={t.shape[1]}; earlier batches had "
                       f"n_items={self._n_items}, K_max={self._k_max}")

    per_user, n_rel = _per_user(t, rel, self.ks, self.graded)
    if self.recall == "min_k":
      per_user = _min_k_recall(per_user, self.ks)
    evaluated = n_rel > 0
    for name, values in per_user.items():
      self._sums[name] += float(np.sum(values[evaluated], dtype=np.float64))
      if self._keep_per_user:
        self._value_chunks[name].append(values[evaluated])
    if self._keep_per_user:
      self._user_chunks.append(ids[evaluated])
    n_eval = int(np.count_nonzero(evaluated))
    self._n_evaluated += n_eval
    self._n_skipped += t.shape[0] - n_eval
    self._n_rows += t.shape[0]

    top = t[:, :self.ks[-1]]
    if self._best_rank is not None:
      for j in range(top.shape[1]):  # a loop over slots, not users
        items = top[:, j][top[:, j] >= 0]
        self._best_rank[items] = np.minimum(self._best_rank[items], j)
    if self._pop is not None:
      listed = top >= 0
      safe = np.where(listed, top, 0)
      per_slot = np.stack([np.where(listed, self._pop[safe], 0.0).sum(axis=0),
                           np.where(listed, self._pct[safe], 0.0).sum(axis=0),
                           listed.sum(axis=0).astype(np.float64)])
      self._pop_sums += np.cumsum(per_slot, axis=1)[:, np.array(self.ks) - 1]

  def result(self) -> dict[str, float | int]:
    """Means over evaluated users (NaN if none), n_users, n_users_skipped, catalog metrics."""
    if self._n_items is None:
      raise ValueError("RankingAccumulator.result() called before any update()")
    n = self._n_evaluated
    out: dict[str, float | int] = {
        name: (s / n if n else float("nan")) for name, s in self._sums.items()}
    out["n_users"] = n
    out["n_users_skipped"] = self._n_skipped
    for i, k in enumerate(self.ks):
      if self._best_rank is not None:
        out[f"coverage@{k}"] = float(np.mean(self._best_rank < k))
      if self._pop is not None:
        slots = self._pop_sums[2, i]
        out[f"popularity@{k}"] = self._pop_sums[0, i] / slots if slots else float("nan")
        out[f"popularity_percentile@{k}"] = (
            self._pop_sums[1, i] / slots if slots else float("nan"))
    return out

  def per_user_values(self) -> dict[str, np.ndarray]:
    """Each evaluated user's metric values, in ascending user id order, and `users` (int64).

    Only users with a relevant item, as in `result()`, whose means are these arrays' means (up
    to float64 summation order). A user id fed twice is an error: the values could not be
    paired with another model's by user.
    """
    if not self._keep_per_user:
      raise ValueError("per_user_values() needs RankingAccumulator(..., per_user=True)")
    if self._n_items is None:
      raise ValueError("RankingAccumulator.per_user_values() called before any update()")
    users = np.concatenate(self._user_chunks)
    order = np.argsort(users, kind="stable")
    users = users[order]
    repeated = users[1:][users[1:] == users[:-1]]
    if repeated.size:
      raise ValueError(f"{np.unique(repeated).size} user ids were fed more than once, e.g. "
                       f"{np.unique(repeated)[:5].tolist()}")
    out = {"users": users}
    for name, chunks in self._value_chunks.items():
      out[name] = np.concatenate(chunks)[order]
    return out


def ranking_metrics(topk: npt.ArrayLike, relevant: Any, ks: Sequence[int], *,
                    graded: bool = False, per_user: bool = False,
                    recall: str = "n_relevant") -> dict[str, Any]:
  """Precision, recall, recall_capped, NDCG, hit rate @K and MRR (see `RankingAccumulator`).

  Returns means over users with at least one relevant item, plus n_users and n_users_skipped.
  With `per_user=True` returns instead float64 arrays [n_users] per metric (NaN for users
  without relevant items), `n_relevant` and the `evaluated` mask, to bucket users by activity.
  """
  if not per_user:
    acc = RankingAccumulator(ks, graded=graded, recall=recall)
    acc.update(topk, relevant)
    return acc.result()
  rel = _as_relevance(relevant)
  t = _as_topk(topk, rel.shape[1])
  if t.shape[0] != rel.shape[0]:
    raise ValueError(f"topk has {t.shape[0]} rows but relevant has {rel.shape[0]}")
  values, n_rel = _per_user(t, rel, _check_ks(ks), graded)
  if recall == "min_k":
    values = _min_k_recall(values, _check_ks(ks))
  elif recall != "n_relevant":
    raise ValueError(f"recall must be one of {RECALL_DENOMINATORS}, got {recall!r}")
  evaluated = n_rel > 0
  out: dict[str, Any] = {name: np.where(evaluated, v, np.nan) for name, v in values.items()}
  out["n_relevant"] = n_rel
  out["evaluated"] = evaluated
  return out


# --------------------------------------------------------------------------- beyond accuracy
def catalog_coverage(topk: npt.ArrayLike, n_items: int, k: int) -> float:
  """Share of the catalog's n_items that appear in at least one row's first k slots."""
  (k,) = _check_ks([k])
  t = _as_topk(topk, n_items)[:, :k]
  seen = np.zeros(n_items, dtype=bool)
  seen[t[t >= 0]] = True
  return float(np.mean(seen))


def popularity_bias(topk: npt.ArrayLike, item_popularity: npt.ArrayLike,
                    k: int) -> dict[str, float | int]:
  """Mean popularity and popularity percentile of the items in the first k slots of each row.

  `item_popularity` is per item, e.g. its training rating count. Means are over listed slots
  (empty slots skipped), so an item recommended to many users weighs many times; percentiles
  are mid-rank percentiles over the catalog in [0, 100], where 50 is the catalog average.
  """
  (k,) = _check_ks([k])
  pop, pct = _popularity_percentiles(item_popularity)
  t = _as_topk(topk, pop.size)[:, :k]
  items = t[t >= 0]
  if items.size == 0:
    raise ValueError("popularity_bias: the top-k lists are empty")
  return {
      "mean_popularity": float(np.mean(pop[items])),
      "mean_popularity_percentile": float(np.mean(pct[items])),
      "n_recommendations": int(items.size),
  }


# --------------------------------------------------------------------------- sampled protocol
def sampled_rank_metrics(pos_scores: npt.ArrayLike, neg_scores: npt.ArrayLike,
                         ks: Sequence[int], *, per_user: bool = False) -> dict[str, Any]:
  """HR@K and NDCG@K for one held-out positive per user ranked against m sampled negatives.

  rank (0-based) = #negatives scoring strictly higher + #negatives scoring equal: ties count
  against the positive (pessimistic). Optimistic or random tie-breaking rewards models that
  output constant scores, a known pitfall of sampled metrics; this rule never does.
  HR@K = [rank < K], NDCG@K = [rank < K] / log2(rank + 2), MRR = 1 / (rank + 1) over the
  m + 1 candidates. Returns means with n, n_negatives and `ties: "pessimistic"`, or with
  `per_user=True` arrays [n] per metric and the integer `rank`.
  """
  pos = np.asarray(pos_scores, dtype=np.float64)
  neg = np.asarray(neg_scores, dtype=np.float64)
  if pos.ndim != 1 or neg.ndim != 2 or neg.shape[0] != pos.shape[0]:
    raise ValueError(f"need pos_scores [n] and neg_scores [n, m], got {pos.shape}, {neg.shape}")
  if pos.size == 0:
    raise ValueError("sampled_rank_metrics needs at least one user")
  if np.isnan(pos).any() or np.isnan(neg).any():
    raise ValueError("scores must not contain NaN")
  ks = _check_ks(ks)
  rank = np.count_nonzero(neg >= pos[:, None], axis=1).astype(np.int64)
  gain = 1.0 / np.log2(rank + 2.0)
  values: dict[str, np.ndarray] = {}
  for k in ks:
    inside = rank < k
    values[f"hr@{k}"] = inside.astype(np.float64)
    values[f"ndcg@{k}"] = np.where(inside, gain, 0.0)
  values["mrr"] = 1.0 / (rank + 1.0)
  if per_user:
    return {**values, "rank": rank}
  out: dict[str, Any] = {name: float(np.mean(v)) for name, v in values.items()}
  out.update(n=int(pos.size), n_negatives=int(neg.shape[1]), ties="pessimistic")
  return out


# --------------------------------------------------------------------------- top-K selection
def _exclusion_mask(exclude: Any, shape: tuple[int, int]) -> np.ndarray | None:
  """bool [B, n_items] from a sparse matrix (stored entries excluded) or a bool mask."""
  if exclude is None:
    return None
  if sp.issparse(exclude):
    m = sp.csr_matrix(exclude)
    if m.shape != shape:
      raise ValueError(f"exclude has shape {m.shape}, scores {shape}")
    mask = np.zeros(shape, dtype=bool)
    mask[np.repeat(np.arange(shape[0]), np.diff(m.indptr)), m.indices] = True
    return mask
  mask = np.asarray(exclude)
  if mask.dtype != np.bool_:
    raise TypeError(f"exclude must be a scipy.sparse matrix or a bool mask, got {mask.dtype}")
  if mask.shape != shape:
    raise ValueError(f"exclude has shape {mask.shape}, scores {shape}")
  return mask


def topk_from_scores(scores: npt.ArrayLike, exclude: Any, k: int) -> np.ndarray:
  """int64 [B, k]: each row's k best items, best first, ties to the lower item index.

  `exclude` (None, a bool mask or a sparse matrix whose stored entries, e.g. the training
  items, are excluded) is never returned; rows with fewer than k eligible items are padded
  with -1. A partition finds each row's k-th best score, items strictly better are kept and
  the ties at that score are taken by index, then only the k kept per row are sorted; so the
  result is exact, deterministic, and costs O(n_items) per row plus O(k log k). Memory is a few
  [B, n_items] arrays: pass rows in batches.
  """
  s = np.asarray(scores)
  if s.ndim != 2:
    raise ValueError(f"scores must be 2-D [B, n_items], got shape {s.shape}")
  if int(k) != k or k < 1:
    raise ValueError(f"k must be a positive integer, got {k!r}")
  k = int(k)
  b, n = s.shape
  mask = _exclusion_mask(exclude, (b, n))
  if not np.issubdtype(s.dtype, np.floating):
    s = s.astype(np.float64)
  if np.isnan(s).any():
    raise ValueError("scores must not contain NaN")
  out = np.full((b, k), PAD, dtype=np.int64)
  kk = min(k, n)
  if b == 0 or kk == 0:
    return out

  key = np.negative(s, dtype=np.float64)  # smaller is better; -inf scores become +inf keys
  if mask is not None:
    key[mask] = np.nan  # numpy orders NaN after +inf, so excluded items come last
  kth = np.partition(key, kk - 1, axis=1)[:, kk - 1:kk]  # [B, 1]
  better = key < kth  # False for NaN
  tied = key == kth
  need = kk - np.count_nonzero(better, axis=1)
  keep = better | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= need[:, None]))
  short = np.isnan(kth[:, 0])  # fewer than kk eligible items: keep all of them
  if short.any():
    keep[short] = ~mask[short]

  counts = np.count_nonzero(keep, axis=1)
  rows, cols = np.nonzero(keep)  # row-major, so item indices ascend within a row
  slot = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
  cand = np.full((b, kk), PAD, dtype=np.int64)
  cand[rows, slot] = cols
  cand_key = np.zeros((b, kk), dtype=np.float64)
  cand_key[rows, slot] = key[rows, cols]
  order = np.lexsort((cand, cand_key, cand < 0), axis=1)  # padding last, key, then index
  out[:, :kk] = np.take_along_axis(cand, order, axis=1)
  return out
