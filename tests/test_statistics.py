"""Per-user metric values and the statistics on them: intervals, paired tests, Holm, seeds."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from netrec_jax.eval import metrics


def _ranking_case(rng, n_users=300, n_items=60, k_max=20):
  """Random top-K lists (a few padded) and relevance with some users without relevant items."""
  scores = rng.normal(size=(n_users, n_items))
  exclude = rng.random((n_users, n_items)) < 0.1
  exclude[:3, :n_items - 5] = True  # only 5 candidates: padded lists
  topk = metrics.topk_from_scores(scores, exclude, k_max)
  rel = sp.random(n_users, n_items, density=0.06, format="csr", random_state=rng)
  rel.data[:] = 1.0
  return topk, rel


# --------------------------------------------------------------------------- per-user values
def test_per_user_means_equal_the_aggregate():
  rng = np.random.default_rng(3)
  topk, rel = _ranking_case(rng)
  ids = rng.permutation(10_000)[:topk.shape[0]]  # arbitrary ids, fed in unsorted batches
  acc = metrics.RankingAccumulator([1, 5, 10, 20], per_user=True)
  for lo in range(0, topk.shape[0], 37):
    acc.update(topk[lo:lo + 37], rel[lo:lo + 37], users=ids[lo:lo + 37])
  agg, per = acc.result(), acc.per_user_values()
  evaluated = np.diff(rel.indptr) > 0
  assert 0 < agg["n_users"] == evaluated.sum() < topk.shape[0]
  np.testing.assert_array_equal(per["users"], np.sort(ids[evaluated]))
  reference = metrics.ranking_metrics(topk, rel, [1, 5, 10, 20], per_user=True)
  order = np.argsort(ids[evaluated])
  names = [k for k in per if k != "users"]
  assert {"recall@10", "ndcg@10", "precision@10", "hit_rate@10", "mrr"} <= set(names)
  for name in names:
    assert per[name].shape == (agg["n_users"],)
    assert np.mean(per[name]) == pytest.approx(agg[name], rel=1e-12, abs=1e-15), name
    np.testing.assert_array_equal(per[name], reference[name][evaluated][order])


def test_per_user_default_ids_and_errors():
  rng = np.random.default_rng(4)
  topk, rel = _ranking_case(rng, n_users=50)
  acc = metrics.RankingAccumulator([5], per_user=True)
  acc.update(topk[:20], rel[:20])
  acc.update(topk[20:], rel[20:])
  np.testing.assert_array_equal(acc.per_user_values()["users"],
                                np.flatnonzero(np.diff(rel.indptr) > 0))
  with pytest.raises(ValueError, match="per_user=True"):
    plain = metrics.RankingAccumulator([5])
    plain.update(topk, rel)
    plain.per_user_values()
  twice = metrics.RankingAccumulator([5], per_user=True)
  twice.update(topk, rel, users=np.arange(50))
  twice.update(topk, rel, users=np.arange(50))
  with pytest.raises(ValueError, match="more than once"):
    twice.per_user_values()
  with pytest.raises(ValueError, match="one id per row"):
    metrics.RankingAccumulator([5], per_user=True).update(topk, rel, users=np.arange(3))


def test_rating_errors_per_user_sum_to_rating_metrics():
  rng = np.random.default_rng(5)
  users = rng.integers(0, 400, 5000) * 3  # sparse ids: unused ids must not appear
  truth = rng.integers(1, 6, 5000).astype(np.float64)
  pred = truth + rng.normal(0, 1.2, 5000)  # some predictions outside [1, 5]: clipped
  errors = metrics.rating_errors_per_user(users, pred, truth, (1, 5))
  direct = metrics.rating_metrics(pred, truth, (1, 5))
  np.testing.assert_array_equal(errors["users"], np.unique(users))
  assert errors["n"].sum() == 5000 and errors["n"].min() >= 1
  assert math.sqrt(errors["sse"].sum() / errors["n"].sum()) == pytest.approx(direct["rmse"])
  assert errors["sae"].sum() / errors["n"].sum() == pytest.approx(direct["mae"])
  one = errors["users"][7]
  err = np.clip(pred[users == one], 1, 5) - truth[users == one]
  assert errors["sse"][7] == pytest.approx(np.sum(err * err))
  with pytest.raises(ValueError, match="non-negative"):
    metrics.rating_errors_per_user(-users, pred, truth, (1, 5))
  with pytest.raises(ValueError, match="entries"):
    metrics.rating_errors_per_user(users[:10], pred, truth, (1, 5))
