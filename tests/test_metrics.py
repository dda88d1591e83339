"""Metrics against hand-computed values and sklearn, and independence from user batching."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from netrec_jax.eval import metrics

A = 1 / math.log2(3)  # discount at rank 2 (0.6309...); rank 1 is 1, rank 3 is 1/log2(4) = 0.5


def _rel(rows, cols, n_users, n_items, values=None):
  values = np.ones(len(rows)) if values is None else np.asarray(values, dtype=np.float64)
  return sp.csr_matrix((values, (rows, cols)), shape=(n_users, n_items))


# Four users, six items, K_max = 3.
#   user 0: list [3, 1, 4], relevant {1, 4, 5}: hits at ranks 2 and 3
#   user 1: list [0, 2, -], relevant {0}:       hit at rank 1, one empty slot
#   user 2: list [1, 2, 3], relevant {}:        skipped
#   user 3: list [5, 4, 3], relevant {0, 1}:    no hit
HAND_TOPK = np.array([[3, 1, 4], [0, 2, -1], [1, 2, 3], [5, 4, 3]])
HAND_REL = _rel([0, 0, 0, 1, 3, 3], [1, 4, 5, 0, 0, 1], 4, 6)


def _random_case(rng, n_users=57, n_items=40, k_max=12, density=0.08, graded=False):
  """Random top-K lists (some padded) and relevance (some users with none)."""
  scores = rng.normal(size=(n_users, n_items))
  exclude = rng.random((n_users, n_items)) < 0.1
  exclude[:3, :n_items - 5] = True  # three users with only 5 candidates: padded lists
  topk = metrics.topk_from_scores(scores, exclude, k_max)
  rel = sp.random(n_users, n_items, density=density, format="csr", random_state=rng,
                  data_rvs=(lambda size: rng.integers(1, 4, size)) if graded else None)
  if not graded:
    rel.data[:] = 1.0
  rel = rel.tolil()
  rel[5, :] = 0  # a user without relevant items
  return topk, rel.tocsr()


# --------------------------------------------------------------------------- rating metrics
def test_rating_metrics_clip_by_hand():
  # Range [1, 5]: 0.5 -> 1 and 6.0 -> 5 are clipped, errors [0, 0.2, 0]:
  # MAE = 0.2 / 3, RMSE = sqrt(0.04 / 3). Unclipped the errors would be [-0.5, 0.2, 1].
  out = metrics.rating_metrics([0.5, 3.2, 6.0], [1, 3, 5], (1, 5))
  assert out["mae"] == pytest.approx(0.2 / 3)
  assert out["rmse"] == pytest.approx(math.sqrt(0.04 / 3))
  assert out["n"] == 3 and out["n_clipped"] == 2
  assert out["clipped"] is True and out["rating_range"] == (1.0, 5.0)


def test_rating_metrics_rejects_bad_input():
  with pytest.raises(ValueError):
    metrics.rating_metrics([1.0, 2.0], [1.0], (1, 5))
  with pytest.raises(ValueError):
    metrics.rating_metrics([], [], (1, 5))
  with pytest.raises(ValueError):
    metrics.rating_metrics([np.nan], [1.0], (1, 5))
  with pytest.raises(ValueError):
    metrics.rating_metrics([1.0], [1.0], (5, 1))


# --------------------------------------------------------------------------- ranking, by hand
def test_ranking_metrics_by_hand():
  out = metrics.ranking_metrics(HAND_TOPK, HAND_REL, [1, 2, 3])
  assert out["n_users"] == 3 and out["n_users_skipped"] == 1  # user 2 has no relevant item
  # Means over users 0, 1, 3.
  # precision: @1 (0 + 1 + 0)/3; @2 (1/2 + 1/2 + 0)/3; @3 (2/3 + 1/3 + 0)/3 (empty slot counts)
  assert out["precision@1"] == pytest.approx(1 / 3)
  assert out["precision@2"] == pytest.approx(1 / 3)
  assert out["precision@3"] == pytest.approx(1 / 3)
  # recall (n_rel = 3, 1, 2): @1 (0 + 1 + 0)/3; @2 (1/3 + 1 + 0)/3 = 4/9; @3 (2/3 + 1)/3 = 5/9
  assert out["recall@1"] == pytest.approx(1 / 3)
  assert out["recall@2"] == pytest.approx(4 / 9)
  assert out["recall@3"] == pytest.approx(5 / 9)
  # recall_capped (min(K, n_rel)): @2 user 0 is 1/min(2, 3) = 1/2: (1/2 + 1 + 0)/3 = 1/2
  assert out["recall_capped@1"] == pytest.approx(1 / 3)
  assert out["recall_capped@2"] == pytest.approx(1 / 2)
  assert out["recall_capped@3"] == pytest.approx(5 / 9)
  # hit rate: @1 only user 1; @2 and @3 users 0 and 1
  assert out["hit_rate@1"] == pytest.approx(1 / 3)
  assert out["hit_rate@2"] == pytest.approx(2 / 3)
  assert out["hit_rate@3"] == pytest.approx(2 / 3)
  # ndcg: user 1 is 1 at every K, user 3 is 0.
  #   user 0 @2: DCG = A (rank 2), IDCG = 1 + A (3 relevant, truncated at 2)
  #   user 0 @3: DCG = A + 0.5,    IDCG = 1 + A + 0.5
  assert out["ndcg@1"] == pytest.approx(1 / 3)
  assert out["ndcg@2"] == pytest.approx((A / (1 + A) + 1) / 3)
  assert out["ndcg@3"] == pytest.approx(((A + 0.5) / (1.5 + A) + 1) / 3)
  # mrr: first hits at ranks 2, 1, none: (1/2 + 1 + 0)/3 = 1/2
  assert out["mrr"] == pytest.approx(1 / 2)


def test_ranking_metrics_per_user():
  out = metrics.ranking_metrics(HAND_TOPK, HAND_REL, [2], per_user=True)
  np.testing.assert_array_equal(out["evaluated"], [True, True, False, True])
  np.testing.assert_array_equal(out["n_relevant"], [3, 1, 0, 2])
  np.testing.assert_allclose(out["recall@2"], [1 / 3, 1, np.nan, 0])
  np.testing.assert_allclose(out["mrr"], [0.5, 1, np.nan, 0])
  means = metrics.ranking_metrics(HAND_TOPK, HAND_REL, [2])
  for name in ("precision@2", "recall@2", "recall_capped@2", "ndcg@2", "hit_rate@2", "mrr"):
    assert np.nanmean(out[name]) == pytest.approx(means[name])


def test_graded_ndcg_by_hand():
  # Gains {item 1: 3, item 4: 1}, list [4, 1, 0].
  # @1: DCG = 1, IDCG = 3 -> 1/3.  @2: DCG = 1 + 3A, IDCG = 3 + A.
  rel = _rel([0, 0], [1, 4], 1, 6, values=[3, 1])
  out = metrics.ranking_metrics([[4, 1, 0]], rel, [1, 2], graded=True)
  assert out["ndcg@1"] == pytest.approx(1 / 3)
  assert out["ndcg@2"] == pytest.approx((1 + 3 * A) / (3 + A))
  # Binary gains: @1 DCG = 1 = IDCG; precision/recall ignore the grades either way.
  binary = metrics.ranking_metrics([[4, 1, 0]], rel, [1, 2])
  assert binary["ndcg@1"] == 1.0 and binary["ndcg@2"] == 1.0
  assert out["recall@2"] == binary["recall@2"] == 1.0


def test_users_without_relevant_items_are_skipped():
  rel = _rel([1], [2], 3, 4)  # only user 1 has a relevant item (hit at rank 1)
  out = metrics.ranking_metrics([[2, 0], [2, 0], [3, 1]], rel, [2])
  assert out["n_users"] == 1 and out["n_users_skipped"] == 2
  assert out["precision@2"] == 0.5 and out["ndcg@2"] == 1.0 and out["mrr"] == 1.0
  # Explicit zeros are not relevant; with nobody to evaluate the means are NaN.
  zeros = sp.csr_matrix((np.zeros(1), ([0], [2])), shape=(1, 4))
  none = metrics.ranking_metrics([[2, 0]], zeros, [1])
  assert none["n_users"] == 0 and math.isnan(none["ndcg@1"])


def test_ranking_metrics_rejects_bad_input():
  with pytest.raises(ValueError, match="exceeds"):
    metrics.ranking_metrics(HAND_TOPK, HAND_REL, [4])
  with pytest.raises(ValueError, match="more than once"):
    metrics.ranking_metrics([[1, 1, 2]], _rel([0], [1], 1, 6), [2])
  with pytest.raises(ValueError, match="item indices"):
    metrics.ranking_metrics([[6, 1, 2]], _rel([0], [1], 1, 6), [2])
  with pytest.raises(ValueError, match="rows"):
    metrics.ranking_metrics(HAND_TOPK[:2], HAND_REL, [2])
  with pytest.raises(TypeError):
    metrics.ranking_metrics(HAND_TOPK, HAND_REL.toarray(), [2])


# --------------------------------------------------------------------------- against sklearn
@pytest.mark.parametrize("graded", [False, True])
def test_ndcg_matches_sklearn(graded):
  sk_metrics = pytest.importorskip("sklearn.metrics")
  rng = np.random.default_rng(1 if graded else 0)
  n_users, n_items, ks = 40, 30, [1, 3, 5, 10]
  y_score = rng.normal(size=(n_users, n_items))  # continuous: no ties for sklearn to average
  y_true = (rng.random((n_users, n_items)) < 0.15) * (rng.integers(1, 5, (n_users, n_items))
                                                       if graded else 1)
  y_true[:, 0] += y_true.sum(axis=1) == 0  # every user relevant somewhere, as sklearn averages all
  topk = metrics.topk_from_scores(y_score, None, max(ks))
  out = metrics.ranking_metrics(topk, sp.csr_matrix(y_true), ks, graded=graded)
  per_user = metrics.ranking_metrics(topk, sp.csr_matrix(y_true), ks, graded=graded,
                                     per_user=True)
  assert out["n_users"] == n_users
  for k in ks:
    assert out[f"ndcg@{k}"] == pytest.approx(sk_metrics.ndcg_score(y_true, y_score, k=k),
                                             rel=1e-12)
    for u in range(0, n_users, 13):
      assert per_user[f"ndcg@{k}"][u] == pytest.approx(
          sk_metrics.ndcg_score(y_true[u:u + 1], y_score[u:u + 1], k=k), rel=1e-12)


# --------------------------------------------------------------------------- batching
@pytest.mark.parametrize("graded", [False, True])
def test_accumulator_is_batch_independent(graded):
  rng = np.random.default_rng(2)
  topk, rel = _random_case(rng, graded=graded)
  ks = [1, 5, 10]
  pop = rng.integers(0, 50, size=rel.shape[1])
  kwargs = dict(graded=graded, coverage=True, item_popularity=pop)

  whole = metrics.RankingAccumulator(ks, **kwargs)
  whole.update(topk, rel)
  expected = whole.result()
  assert expected["n_users_skipped"] >= 1  # user 5 (and any other empty row) is skipped
  assert expected == metrics.ranking_metrics(topk, rel, ks, graded=graded) | {
      name: expected[name] for name in expected if "coverage" in name or "popularity" in name}

  for sizes in ([1] * topk.shape[0], [7, 1, 20, 29], [30, 27]):
    acc = metrics.RankingAccumulator(ks, **kwargs)
    start = 0
    for size in sizes:
      acc.update(topk[start:start + size], rel[start:start + size])
      start += size
    got = acc.result()
    assert got.keys() == expected.keys()
    for name, value in expected.items():
      assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-15), (sizes, name)

  for k in ks:
    assert expected[f"coverage@{k}"] == pytest.approx(
        metrics.catalog_coverage(topk, rel.shape[1], k))
    bias = metrics.popularity_bias(topk, pop, k)
    assert expected[f"popularity@{k}"] == pytest.approx(bias["mean_popularity"])
    assert expected[f"popularity_percentile@{k}"] == pytest.approx(
        bias["mean_popularity_percentile"])


def test_accumulator_rejects_inconsistent_batches():
  acc = metrics.RankingAccumulator([2])
  with pytest.raises(ValueError, match="before any update"):
    acc.result()
  acc.update(HAND_TOPK, HAND_REL)
  with pytest.raises(ValueError, match="K_max"):
    acc.update(HAND_TOPK[:, :2], HAND_REL)


# --------------------------------------------------------------------------- top-K selection
def _reference_topk(scores, mask, k):
  """Stable sort per row: descending score, ties to the lower index, excluded dropped."""
  out = np.full((scores.shape[0], k), -1)
  for u in range(scores.shape[0]):
    order = [i for i in np.argsort(-scores[u], kind="stable") if not mask[u, i]][:k]
    out[u, :len(order)] = order
  return out


def test_topk_ties_and_exclusions_by_hand():
  scores = np.array([[1.0, 2.0, 2.0, 2.0, 0.0]])
  # Three items tie at 2.0 for two places: the lower indices 1, 2 win.
  np.testing.assert_array_equal(metrics.topk_from_scores(scores, None, 2), [[1, 2]])
  # Excluding item 1 moves 3 up; item 0 (1.0) beats item 4 (0.0).
  mask = np.array([[False, True, False, False, False]])
  np.testing.assert_array_equal(metrics.topk_from_scores(scores, mask, 3), [[2, 3, 0]])
  # k beyond the eligible items pads with -1; -inf scores are eligible, excluded items never.
  scores = np.array([[-np.inf, 5.0, -np.inf, 1.0]])
  excl = sp.csr_matrix(([1.0], ([0], [1])), shape=(1, 4))
  np.testing.assert_array_equal(metrics.topk_from_scores(scores, excl, 6),
                                [[3, 0, 2, -1, -1, -1]])


@pytest.mark.parametrize("k", [1, 4, 9, 25])
def test_topk_matches_stable_sort_reference(k):
  rng = np.random.default_rng(k)
  scores = rng.integers(0, 4, size=(30, 20)).astype(np.float32)  # many ties
  mask = rng.random((30, 20)) < 0.3
  mask[0] = True  # nothing eligible
  mask[1, 3:] = True  # 3 eligible
  got = metrics.topk_from_scores(scores, sp.csr_matrix(mask), k)
  np.testing.assert_array_equal(got, _reference_topk(scores, mask, k))
  np.testing.assert_array_equal(metrics.topk_from_scores(scores, mask, k), got)
  rows, cols = np.nonzero(got >= 0)
  assert not mask[rows, got[rows, cols]].any()  # excluded items never returned
  assert (got[0] == -1).all()


def test_topk_rejects_nan_and_bad_exclude():
  with pytest.raises(ValueError, match="NaN"):
    metrics.topk_from_scores(np.array([[0.0, np.nan]]), None, 1)
  with pytest.raises(TypeError):
    metrics.topk_from_scores(np.zeros((1, 3)), np.zeros((1, 3)), 1)
  with pytest.raises(ValueError):
    metrics.topk_from_scores(np.zeros((1, 3)), np.zeros((2, 3), bool), 1)


# --------------------------------------------------------------------------- sampled protocol
def test_sampled_rank_metrics_by_hand():
  pos = [5.0, 3.0, 2.0]
  neg = [[1.0, 2.0, 3.0],  # none higher:           rank 0
         [3.0, 4.0, 0.0],  # 4 higher, 3 tied:      rank 1 + 1 = 2 (ties count against)
         [2.0, 2.0, 2.0]]  # all tied:               rank 3 (last of 4 candidates)
  out = metrics.sampled_rank_metrics(pos, neg, [1, 3])
  assert out["ties"] == "pessimistic" and out["n"] == 3 and out["n_negatives"] == 3
  assert out["hr@1"] == pytest.approx(1 / 3)  # only rank 0
  assert out["hr@3"] == pytest.approx(2 / 3)  # ranks 0 and 2
  assert out["ndcg@1"] == pytest.approx(1 / 3)
  assert out["ndcg@3"] == pytest.approx((1 + 0.5) / 3)  # 1/log2(2) + 1/log2(4)
  assert out["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 4) / 3)
  per_user = metrics.sampled_rank_metrics(pos, neg, [3], per_user=True)
  np.testing.assert_array_equal(per_user["rank"], [0, 2, 3])
  # A constant scorer gets the worst rank, not a lucky one.
  const = metrics.sampled_rank_metrics(np.zeros(4), np.zeros((4, 99)), [10])
  assert const["hr@10"] == 0.0 and const["ndcg@10"] == 0.0


def test_sampled_rank_metrics_rejects_bad_input():
  with pytest.raises(ValueError):
    metrics.sampled_rank_metrics([1.0, 2.0], [[0.0]], [1])
  with pytest.raises(ValueError):
    metrics.sampled_rank_metrics([np.nan], [[0.0]], [1])


# --------------------------------------------------------------------------- beyond accuracy
def test_catalog_coverage_by_hand():
  topk = [[0, 1], [1, 2], [1, -1]]
  assert metrics.catalog_coverage(topk, 5, 1) == pytest.approx(2 / 5)  # {0, 1}
  assert metrics.catalog_coverage(topk, 5, 2) == pytest.approx(3 / 5)  # {0, 1, 2}
  with pytest.raises(ValueError):
    metrics.catalog_coverage([[5]], 5, 1)


def test_popularity_bias_by_hand():
  pop = [10, 5, 5, 1, 0]
  # Percentiles, 100 * (#less + 0.5 * #equal) / 5: item 0 (4 + .5)/5 = 90; items 1, 2
  # (2 + 1)/5 = 60; item 3 (1 + .5)/5 = 30; item 4 .5/5 = 10.
  # Listed slots (k = 2, padding skipped): items 0, 1, 1, 2, 3 -> popularity 10, 5, 5, 5, 1.
  out = metrics.popularity_bias([[0, 1], [1, 2], [3, -1]], pop, 2)
  assert out["n_recommendations"] == 5
  assert out["mean_popularity"] == pytest.approx(26 / 5)
  assert out["mean_popularity_percentile"] == pytest.approx((90 + 60 + 60 + 60 + 30) / 5)
  # k = 1: items 0, 1, 3 -> (10 + 5 + 1)/3 and (90 + 60 + 30)/3.
  out = metrics.popularity_bias([[0, 1], [1, 2], [3, -1]], pop, 1)
  assert out["mean_popularity"] == pytest.approx(16 / 3)
  assert out["mean_popularity_percentile"] == pytest.approx(60.0)
  _, pct = metrics._popularity_percentiles(pop)
  np.testing.assert_allclose(pct, [stats.percentileofscore(pop, p, kind="mean") for p in pop])
