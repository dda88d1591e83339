"""Per-user metric values and the statistics on them: intervals, paired tests, Holm, seeds."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from netrec_jax.eval import metrics, statistics


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


# --------------------------------------------------------------------------- bootstrap
def test_bootstrap_interval_covers_the_true_mean_at_the_nominal_rate():
  rng = np.random.default_rng(6)
  covered = 0
  for rep in range(200):
    values = rng.normal(0.3, 0.2, 200)
    ci = statistics.paired_bootstrap({"m": values}, seed=rep)["m"]
    assert ci["estimate"] == pytest.approx(values.mean())
    assert ci["ci_low"] < ci["estimate"] < ci["ci_high"]
    covered += ci["ci_low"] <= 0.3 <= ci["ci_high"]
  assert 0.9 <= covered / 200 <= 0.99


def test_bootstrap_replicates_are_resamples_of_users():
  # Same seed, same draws: each replicate is the metric of users idx[r] (one block: small n).
  rng = np.random.default_rng(7)
  n, n_resamples = 50, 30
  values = rng.random((n, 2))
  sse, count = rng.random(n) * 10, rng.integers(1, 9, n).astype(np.float64)
  idx = statistics._draw_rng(11, "bootstrap").integers(0, n, size=(n_resamples, n))
  sums = statistics._resampled_sums(values, n_resamples, 11, "bootstrap")
  np.testing.assert_allclose(sums / n, values[idx].mean(axis=1), rtol=1e-12)
  met = statistics._metric({"m": statistics.ratio_values(sse, count)}, "rmse", None)
  reps = met.replicates(statistics._resampled_sums(met.bootstrap_columns(), n_resamples, 11,
                                                   "bootstrap"))
  np.testing.assert_allclose(reps[:, 0], np.sqrt(sse[idx].sum(1) / count[idx].sum(1)), rtol=1e-12)


def test_rmse_bootstrap_point_estimate_is_the_direct_rmse():
  rng = np.random.default_rng(8)
  users = rng.integers(0, 300, 6000)
  truth = rng.integers(1, 6, 6000).astype(np.float64)
  pred = truth + rng.normal(0, 1.0, 6000)
  e = metrics.rating_errors_per_user(users, pred, truth, (1, 5))
  direct = metrics.rating_metrics(pred, truth, (1, 5))
  out = statistics.paired_bootstrap({"rmse": statistics.ratio_values(e["sse"], e["n"])}, "rmse")
  mae = statistics.paired_bootstrap({"mae": statistics.ratio_values(e["sae"], e["n"])}, "mae")
  assert out["rmse"]["estimate"] == pytest.approx(direct["rmse"], rel=1e-12)
  assert mae["mae"]["estimate"] == pytest.approx(direct["mae"], rel=1e-12)
  assert out["rmse"]["ci_low"] < direct["rmse"] < out["rmse"]["ci_high"]
  assert out["rmse"]["ci_high"] - out["rmse"]["ci_low"] < 0.05


def test_users_must_be_aligned():
  rng = np.random.default_rng(9)
  a, b = rng.random(100), rng.random(100)
  with pytest.raises(ValueError, match="'good'.*'short'"):
    statistics.paired_bootstrap({"good": a, "short": b[:99]})
  ids = np.arange(100)
  with pytest.raises(ValueError, match="models 'good' and 'other' are not on the same users"):
    statistics.compare_models({"good": a, "other": b}, higher_is_better=True,
                              users={"good": ids, "other": ids + 1})
  # The same users in another order are aligned by id.
  perm = rng.permutation(100)
  shuffled = statistics.paired_bootstrap({"x": a, "y": b[perm]},
                                         users={"x": ids, "y": ids[perm]})
  plain = statistics.paired_bootstrap({"x": a, "y": b})
  assert shuffled == plain
  with pytest.raises(ValueError, match="NaN"):
    statistics.paired_bootstrap({"x": np.where(a > 0.5, a, np.nan)})


# --------------------------------------------------------------------------- tests, Holm
def test_holm_by_hand():
  # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max
  # 0.02, 0.03, 0.06, 0.06; back in input order:
  np.testing.assert_allclose(statistics.holm([0.01, 0.04, 0.03, 0.005]),
                             [0.03, 0.06, 0.06, 0.02])
  np.testing.assert_allclose(statistics.holm([0.5, 0.6]), [1.0, 1.0])  # 2 x 0.5, capped at 1
  out = statistics.holm({"a": 0.02, "best": np.nan, "b": 0.04})  # NaN not counted: m = 2
  assert out["a"] == pytest.approx(0.04) and out["b"] == pytest.approx(0.04)
  assert math.isnan(out["best"])


def _planted(rng, n=2000, shift=0.03):
  a = rng.beta(2, 5, n)
  return a, a + shift + rng.normal(0, 0.1, n), rng.beta(2, 5, n)


def test_tests_find_a_planted_difference_and_not_a_null_one():
  rng = np.random.default_rng(10)
  a, better, same = _planted(rng)
  assert statistics.permutation_test(a, better) < 0.01
  assert statistics.wilcoxon_test(a, better) < 1e-6
  assert statistics.permutation_test(a, same) > 0.05
  assert statistics.wilcoxon_test(a, same) > 0.05
  # RMSE: model b's squared errors are 10% larger on every user.
  sse, n = rng.gamma(2.0, 1.0, 2000), rng.integers(1, 30, 2000).astype(np.float64)
  worse = sse * 1.1 * rng.uniform(0.8, 1.2, 2000)
  ra, rb = statistics.ratio_values(sse, n), statistics.ratio_values(worse, n)
  assert statistics.permutation_test(ra, rb, "rmse") < 0.01
  assert statistics.wilcoxon_test(ra, rb, "rmse") < 0.01
  twin = statistics.ratio_values(sse * rng.uniform(0.8, 1.2, 2000), n)
  assert statistics.permutation_test(ra, twin, "rmse") > 0.05


def test_identical_models_are_tied():
  rng = np.random.default_rng(12)
  a, better, _ = _planted(rng)
  assert statistics.wilcoxon_test(a, a.copy()) == 1.0  # all-zero differences: no crash
  assert statistics.permutation_test(a, a.copy()) == 1.0
  out = statistics.compare_models({"a": a, "a_again": a.copy(), "better": better},
                                  higher_is_better=True, baseline="a")
  assert out["better"]["is_best"] and out["better"]["tied_with_best"]
  assert not out["a"]["tied_with_best"] and not out["a_again"]["tied_with_best"]
  assert out["a_again"]["p_vs_baseline"] == 1.0 and out["a_again"]["tied_with_baseline"]
  assert out["better"]["better_than_baseline"] and not out["a_again"]["better_than_baseline"]
  assert out["a"]["estimate"] == out["a_again"]["estimate"]
  assert out["a"]["ci_low"] == out["a_again"]["ci_low"]  # same resampled users
  twins = statistics.compare_models({"x": a, "y": a.copy()}, higher_is_better=True,
                                    test="wilcoxon")
  assert twins["x"]["is_best"] and twins["y"]["tied_with_best"] and twins["y"]["p_vs_best"] == 1


def test_compare_models_rows():
  rng = np.random.default_rng(13)
  a, better, same = _planted(rng)
  table = {"a": a, "better": better, "same": same}
  out = statistics.compare_models(table, higher_is_better=False)  # lower is better: "a"/"same"
  best = [m for m, row in out.items() if row["is_best"]]
  assert best in (["a"], ["same"]) and not out["better"]["tied_with_best"]
  other = "same" if best == ["a"] else "a"
  assert out[other]["tied_with_best"]
  # One shared draw of sign flips: each p equals the single-pair test's, and Holm is over m - 1.
  p = statistics.permutation_test(a if best == ["a"] else same, better)
  assert out["better"]["p_vs_best"] == p
  raw = {m: out[m]["p_vs_best"] for m in table}
  assert {m: out[m]["p_vs_best_holm"] for m in table if m != best[0]} == pytest.approx(
      {m: v for m, v in statistics.holm(raw).items() if m != best[0]})
  row = out["better"]
  assert row["diff_vs_best"] > 0 and 0 < row["diff_vs_best_ci_low"] < row["diff_vs_best_ci_high"]
  assert row["ci_low"] < row["estimate"] < row["ci_high"] and row["n_users"] == a.size
  assert math.isnan(out[best[0]]["p_vs_best"]) and out[best[0]]["diff_vs_best"] == 0
  with pytest.raises(ValueError, match="baseline"):
    statistics.compare_models(table, higher_is_better=True, baseline="nope")


def _assert_rows_equal(got, want):
  assert got.keys() == want.keys()
  for model in want:
    assert got[model] == pytest.approx(want[model], rel=1e-12, nan_ok=True), model


def test_compare_metrics_shares_draws_and_equals_compare_models(monkeypatch):
  rng = np.random.default_rng(14)
  a, better, same = _planted(rng, n=500)
  sse, n = rng.gamma(2.0, 1.0, 400), rng.integers(1, 30, 400).astype(np.float64)
  rmse = {"a": statistics.ratio_values(sse, n),
          "better": statistics.ratio_values(sse * 0.9 * rng.uniform(0.8, 1.2, 400), n),
          "same": statistics.ratio_values(sse * rng.uniform(0.8, 1.2, 400), n)}
  table = {"ndcg@10": {"a": a, "better": better, "same": same},
           "recall@10": {"a": same, "better": a, "same": better}, "rmse": rmse}
  out = statistics.compare_metrics(table, baseline="a")
  for metric, statistic in (("ndcg@10", "mean"), ("recall@10", "mean"), ("rmse", "rmse")):
    one = statistics.compare_models(table[metric], higher_is_better=metric != "rmse",
                                    statistic=statistic, baseline="a")
    _assert_rows_equal(out[metric], one)
  assert out["rmse"]["better"]["is_best"] and out["rmse"]["better"]["better_than_baseline"]
  # Neither passes of few columns nor small blocks of draws change a number.
  monkeypatch.setattr(statistics, "_COLUMN_CELLS", 1000)  # 2 columns a pass
  monkeypatch.setattr(statistics, "_BLOCK_CELLS", 1000)
  again = statistics.compare_metrics(table, baseline="a")
  for metric in table:
    _assert_rows_equal(again[metric], out[metric])


def test_metric_direction():
  assert statistics.metric_higher_is_better("ndcg@10")
  assert statistics.metric_higher_is_better("hit_rate@5")
  assert statistics.metric_higher_is_better("mrr")
  assert not statistics.metric_higher_is_better("rmse_warm")
  with pytest.raises(ValueError):
    statistics.metric_higher_is_better("popularity@10")


# --------------------------------------------------------------------------- seeds
def test_summarise_seeds():
  runs = [{"model": "mf", "rmse": rmse, "n_users": 10} for rmse in (0.90, 0.92, 0.94)]
  out = statistics.summarise_seeds(runs)
  assert set(out) == {"rmse", "n_users"}
  assert out["rmse"]["mean"] == pytest.approx(0.92) and out["rmse"]["std"] == pytest.approx(0.02)
  assert out["rmse"]["min"] == 0.90 and out["rmse"]["max"] == 0.94 and out["rmse"]["n_runs"] == 3
  assert math.isnan(statistics.summarise_seeds(runs[:1])["rmse"]["std"])
  with pytest.raises(ValueError, match="'ndcg@10'.*\\[0\\]"):
    statistics.summarise_seeds([{"rmse": 0.9}, {"rmse": 0.9, "ndcg@10": 0.1}])


def test_fold_summary_averages_numbers_and_leaves_p_values_alone():
  """Folds where different models are best: p-values are 'best' in one fold and numbers in
  another (this crashed the 5-fold comparison); they are not averaged, the metrics are."""
  from netrec_jax.compare import fold_summary
  per_fold = {
      "u1": [{"model": "a", "rmse": 0.90, "rmse_p_vs_best": "best", "rmse_ci95": "[0.8, 1.0]",
              "mae": "n/a", "fit_s": 1.0},
             {"model": "b", "rmse": 0.95, "rmse_p_vs_best": 0.01, "rmse_ci95": "[0.9, 1.0]",
              "mae": "n/a", "fit_s": 2.0}],
      "u2": [{"model": "a", "rmse": 0.96, "rmse_p_vs_best": 0.03, "rmse_ci95": "[0.9, 1.0]",
              "mae": "n/a", "fit_s": 3.0},
             {"model": "b", "rmse": 0.93, "rmse_p_vs_best": "best", "rmse_ci95": "[0.9, 1.0]",
              "mae": "n/a", "fit_s": 4.0}],
  }
  rows = fold_summary(per_fold, ["u1", "u2"], "ml100k_u1_u2")
  assert [r["model"] for r in rows] == ["a", "b"]
  assert rows[0]["rmse_mean"] == pytest.approx(0.93)
  assert rows[0]["rmse_std"] == pytest.approx(np.std([0.90, 0.96], ddof=1))
  assert rows[1]["fit_s_mean"] == pytest.approx(3.0)
  assert not any(k.startswith(("rmse_p", "rmse_ci", "mae")) for r in rows for k in r)
