"""Statistics every comparison table carries: paired bootstrap intervals, paired tests, Holm.

Inputs are per-user values on the same users for every model, from
`RankingAccumulator(per_user=True).per_user_values()` or `metrics.rating_errors_per_user`.
Users are the unit that is resampled: a metric averaged over users varies with which users were
sampled, and ratings or list slots of one user are not independent. Everything is paired: every
model sees the same resampled users and the same sign flips, so the between-user variance that
all models share cancels in their differences.

Two kinds of statistic:

* `"mean"`: values [n_users]; the metric is their mean (precision, recall, NDCG, HR@K, MRR...).
* `"ratio"`, `"mae"`, `"rmse"`: values [n_users, 2] of (numerator, denominator) per user; the
  metric is sum(num) / sum(den), its square root for `"rmse"`. RMSE is (sse, n), MAE (sae, n)
  (`ratio_values(e["sse"], e["n"])`), so a resample weighs ratings as the metric does:
  RMSE of a resample = sqrt(sum sse / sum n) over its users.

Intervals are percentile intervals of `n_resamples` bootstrap replicates. Tests are two-sided:

* `permutation_test` (default in `compare_models`): the paired sign-flip (randomisation) test.
  Under H0 a user's two values are exchangeable, so each user's pair is swapped with
  probability 1/2 and the difference of the metric itself is recomputed; p = (1 + #{|T*| >=
  |T|}) / (1 + n_resamples), never 0. For ratio metrics the swap moves the user's (num, den)
  pair, so this tests the RMSE difference itself, weighted by ratings like RMSE. It makes no
  distributional assumption, tests the difference of the statistic that the table reports,
  and is what Smucker, Allan and Carterette (CIKM 2007) recommend for IR metrics.
* `wilcoxon_test`: scipy's Wilcoxon signed-rank test on per-user differences (zeros dropped,
  Wilcoxon's rule; all zero gives p = 1). It tests the median of differences, not the mean, and
  for ratio metrics it is run on per-user means num / den (per-user MSE for RMSE), which weighs
  users equally rather than ratings: a second opinion, not the table's test.

`holm` adjusts a family of p-values (Holm 1979: step-down Bonferroni, controls the
family-wise error rate under any dependence). `compare_models` ties these together per metric.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

STATISTICS = ("mean", "ratio", "mae", "rmse")
TESTS = ("permutation", "wilcoxon")
_CHUNK_CELLS = 1 << 22  # resamples x users per block: ~100 MB of temporaries at most


def _transform(statistic: str) -> Callable[[np.ndarray], np.ndarray]:
  if statistic not in STATISTICS:
    raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
  if statistic == "rmse":
    return lambda x: np.sqrt(np.maximum(x, 0.0))  # rounding can leave -1e-18
  return lambda x: x


def ratio_values(numerator: npt.ArrayLike, denominator: npt.ArrayLike) -> np.ndarray:
  """[n_users, 2] (num, den) per user, the input of the ratio statistics (RMSE: sse, n)."""
  num = np.asarray(numerator, dtype=np.float64)
  den = np.asarray(denominator, dtype=np.float64)
  if num.ndim != 1 or num.shape != den.shape:
    raise ValueError(f"numerator and denominator must be 1-D of one length, got {num.shape}, "
                     f"{den.shape}")
  return np.column_stack([num, den])


# --------------------------------------------------------------------------- input checks
def _check_values(name: str, values: npt.ArrayLike, statistic: str) -> np.ndarray:
  v = np.asarray(values, dtype=np.float64)
  if statistic == "mean" and v.ndim != 1:
    raise ValueError(f"model {name!r}: statistic 'mean' needs values [n_users], got {v.shape}")
  if statistic != "mean" and (v.ndim != 2 or v.shape[1] != 2):
    raise ValueError(f"model {name!r}: statistic {statistic!r} needs (numerator, denominator) "
                     f"[n_users, 2] (see ratio_values), got {v.shape}")
  if v.shape[0] == 0:
    raise ValueError(f"model {name!r} has no users")
  if not np.isfinite(v).all():
    raise ValueError(f"model {name!r} has NaN or infinite per-user values: drop users without "
                     "a value (e.g. not `evaluated`) from every model alike")
  if statistic != "mean" and (v[:, 1] <= 0).any():
    raise ValueError(f"model {name!r}: ratio denominators must be > 0 for every user")
  return v


def _align(values: dict[str, np.ndarray],
           users: Mapping[str, npt.ArrayLike]) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """Every model's rows reordered to ascending user id; ValueError unless the users agree."""
  names = list(values)
  missing = [n for n in names if n not in users]
  if missing:
    raise ValueError(f"users were given, but not for models {missing}")
  ids = {}
  for name in names:
    u = np.asarray(users[name])
    if u.shape != (values[name].shape[0],):
      raise ValueError(f"model {name!r}: {u.shape} user ids for {values[name].shape[0]} values")
    order = np.argsort(u, kind="stable")
    s = u[order]
    if s.size > 1 and (s[1:] == s[:-1]).any():
      raise ValueError(f"model {name!r} lists a user more than once")
    ids[name] = s
    values[name] = values[name][order]
  ref = names[0]
  for name in names[1:]:
    if not np.array_equal(ids[name], ids[ref]):
      only_here = np.setdiff1d(ids[name], ids[ref])
      only_ref = np.setdiff1d(ids[ref], ids[name])
      raise ValueError(
          f"per-user values of models {ref!r} and {name!r} are not on the same users: "
          f"{only_here.size} only in {name!r} (e.g. {only_here[:5].tolist()}), "
          f"{only_ref.size} only in {ref!r} (e.g. {only_ref[:5].tolist()})")
  return values, ids[ref]


def _prepare(per_user: Mapping[str, npt.ArrayLike], statistic: str,
             users: Mapping[str, npt.ArrayLike] | None
             ) -> tuple[list[str], np.ndarray, np.ndarray | None]:
  """Model names, numerators [n_users, n_models], denominators (None for "mean")."""
  _transform(statistic)
  if not per_user:
    raise ValueError("no models given")
  values = {name: _check_values(name, v, statistic) for name, v in per_user.items()}
  if users is not None:
    values, _ = _align(values, users)
  else:
    lengths = {name: v.shape[0] for name, v in values.items()}
    if len(set(lengths.values())) > 1:
      raise ValueError(f"per-user values of models differ in number of users: {lengths}; they "
                       "must be on the same users (pass `users` to align them by id)")
  names = list(values)
  if statistic == "mean":
    return names, np.column_stack([values[n] for n in names]), None
  return (names, np.column_stack([values[n][:, 0] for n in names]),
          np.column_stack([values[n][:, 1] for n in names]))


def _point(num: np.ndarray, den: np.ndarray | None, statistic: str) -> np.ndarray:
  """The metric of each column on all users."""
  f = _transform(statistic)
  if den is None:
    return num.mean(axis=0)
  return f(num.sum(axis=0) / den.sum(axis=0))


# --------------------------------------------------------------------------- bootstrap
def _bootstrap_replicates(num: np.ndarray, den: np.ndarray | None, statistic: str,
                          n_resamples: int, seed: int) -> np.ndarray:
  """[n_resamples, n_models] metric of each resample of users (one draw shared by all models).

  Each resample is a row of multinomial counts (bincount of n uniform user indices), and its
  sums for every column are one matrix product counts @ values. The draws depend only on the
  seed and n_users, so adding a model leaves the others' intervals unchanged.
  """
  if int(n_resamples) != n_resamples or n_resamples < 1:
    raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
  n_resamples = int(n_resamples)
  rng = np.random.default_rng(seed)
  n, m = num.shape
  columns = num if den is None else np.hstack([num, den])
  sums = np.empty((n_resamples, columns.shape[1]), dtype=np.float64)
  rows = max(1, _CHUNK_CELLS // n)
  offsets = np.arange(rows, dtype=np.int64)[:, None] * n
  for lo in range(0, n_resamples, rows):
    r = min(rows, n_resamples - lo)
    idx = rng.integers(0, n, size=(r, n))
    idx += offsets[:r]
    counts = np.bincount(idx.ravel(), minlength=r * n).reshape(r, n)
    sums[lo:lo + r] = counts.astype(np.float64) @ columns
  if den is None:
    return sums / n
  return _transform(statistic)(sums[:, :m] / sums[:, m:])


def _interval(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
  if not 0 < confidence < 1:
    raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
  lo, hi = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
  return lo, hi


def paired_bootstrap(per_user: Mapping[str, npt.ArrayLike], statistic: str = "mean",
                     n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95, *,
                     users: Mapping[str, npt.ArrayLike] | None = None
                     ) -> dict[str, dict[str, float]]:
  """Per model: `estimate` (on all users), percentile `ci_low`/`ci_high`, bootstrap `std_error`.

  Users are resampled with replacement, the same users for every model (one seeded numpy
  Generator). `users` (model -> ids) aligns models by id and raises if their users differ;
  without it the rows must already be the same users in the same order.
  """
  names, num, den = _prepare(per_user, statistic, users)
  reps = _bootstrap_replicates(num, den, statistic, n_resamples, seed)
  lo, hi = _interval(reps, confidence)
  est = _point(num, den, statistic)
  se = reps.std(axis=0, ddof=1) if reps.shape[0] > 1 else np.full(len(names), np.nan)
  return {name: {"estimate": float(est[j]), "ci_low": float(lo[j]), "ci_high": float(hi[j]),
                 "std_error": float(se[j])} for j, name in enumerate(names)}


# --------------------------------------------------------------------------- paired tests
def _sign_flip_pvalues(num: np.ndarray, den: np.ndarray | None, statistic: str,
                       pairs: Sequence[tuple[int, int]], n_resamples: int,
                       seed: int) -> np.ndarray:
  """Two-sided sign-flip p-value of metric(a) - metric(b) for each column pair (a, b).

  A flip gives user u's value of b to a and a's to b: with bits [R, n], the flipped sums are
  sum_a + bits @ (b - a) and sum_b - bits @ (b - a), for numerators and denominators alike.
  All pairs share one draw of bits (seeded), so each p equals a single-pair call's.
  """
  if int(n_resamples) != n_resamples or n_resamples < 1:
    raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
  n_resamples = int(n_resamples)
  f = _transform(statistic)
  a = np.array([p[0] for p in pairs], dtype=np.int64)
  b = np.array([p[1] for p in pairs], dtype=np.int64)
  n, k = num.shape[0], a.size
  dens = np.ones_like(num) if den is None else den
  na, nb = num[:, a].sum(axis=0), num[:, b].sum(axis=0)
  da, db = dens[:, a].sum(axis=0), dens[:, b].sum(axis=0)
  columns = num[:, b] - num[:, a]
  if den is not None:
    columns = np.hstack([columns, den[:, b] - den[:, a]])
  fa, fb = f(na / da), f(nb / db)
  observed = np.abs(fa - fb)
  # Flips that give the observed |T| in exact arithmetic must count; rounding must not hide them.
  tol = 1e-9 * (np.abs(fa) + np.abs(fb)) + 1e-300
  extreme = np.zeros(k, dtype=np.int64)
  rng = np.random.default_rng(seed)
  n_bytes = (n + 7) // 8
  rows = max(1, _CHUNK_CELLS // n)
  for lo in range(0, n_resamples, rows):
    r = min(rows, n_resamples - lo)
    raw = np.frombuffer(rng.bytes(r * n_bytes), dtype=np.uint8).reshape(r, n_bytes)
    bits = np.unpackbits(raw, axis=1, count=n).astype(np.float64)
    s = bits @ columns
    if den is None:
      t = f((na + s) / da) - f((nb - s) / db)
    else:
      t = f((na + s[:, :k]) / (da + s[:, k:])) - f((nb - s[:, :k]) / (db - s[:, k:]))
    extreme += np.count_nonzero(np.abs(t) >= observed - tol, axis=0)
  return (1.0 + extreme) / (1.0 + n_resamples)


def _pair(a: npt.ArrayLike, b: npt.ArrayLike, statistic: str
          ) -> tuple[np.ndarray, np.ndarray | None]:
  _, num, den = _prepare({"a": a, "b": b}, statistic, None)
  return num, den


def permutation_test(a: npt.ArrayLike, b: npt.ArrayLike, statistic: str = "mean",
                     n_resamples: int = 1000, seed: int = 0) -> float:
  """Two-sided paired sign-flip test of metric(a) = metric(b); a, b aligned per user.

  The p-value's resolution is 1 / (n_resamples + 1); it is never 0.
  """
  num, den = _pair(a, b, statistic)
  return float(_sign_flip_pvalues(num, den, statistic, [(0, 1)], n_resamples, seed)[0])


def wilcoxon_test(a: npt.ArrayLike, b: npt.ArrayLike, statistic: str = "mean") -> float:
  """Two-sided Wilcoxon signed-rank p-value on per-user differences (1.0 if all are zero).

  For ratio statistics the per-user values are num / den (per-user MSE or MAE).
  """
  num, den = _pair(a, b, statistic)
  per_user = num if den is None else num / den
  d = per_user[:, 0] - per_user[:, 1]
  if not np.any(d):
    return 1.0  # scipy raises on all-zero differences; identical values are no evidence
  return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def holm(p_values: Mapping[str, float] | Sequence[float] | np.ndarray
         ) -> dict[str, float] | np.ndarray:
  """Holm-Bonferroni adjusted p-values, in the input's shape (a dict stays a dict).

  With the m p-values sorted ascending, adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
  NaN entries (a model against itself) are left NaN and not counted in m.
  """
  if isinstance(p_values, Mapping):
    keys = list(p_values)
    adjusted = holm(np.array([p_values[k] for k in keys], dtype=np.float64))
    return {k: float(adjusted[i]) for i, k in enumerate(keys)}
  p = np.asarray(p_values, dtype=np.float64)
  if p.ndim != 1:
    raise ValueError(f"p_values must be 1-D, got shape {p.shape}")
  if ((p < 0) | (p > 1)).any():
    raise ValueError("p-values must lie in [0, 1]")
  out = np.full(p.shape, np.nan)
  where = np.flatnonzero(~np.isnan(p))
  order = where[np.argsort(p[where], kind="stable")]
  m = order.size
  out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
  return out


# --------------------------------------------------------------------------- comparison table
_LOWER_IS_BETTER = ("rmse", "mae", "mse")
_HIGHER_IS_BETTER = ("precision", "recall", "ndcg", "hit_rate", "hr", "mrr", "coverage", "map",
                     "auc")


def metric_higher_is_better(metric: str) -> bool:
  """Direction of a metric by its name ("ndcg@10" -> True, "rmse_warm" -> False)."""
  base = metric.split("@")[0].lower()
  if base.startswith(_LOWER_IS_BETTER):
    return False
  if base.startswith(_HIGHER_IS_BETTER):
    return True
  raise ValueError(f"no known direction for metric {metric!r}: pass it explicitly")


def compare_models(per_user: Mapping[str, npt.ArrayLike], *, higher_is_better: bool,
                   statistic: str = "mean", users: Mapping[str, npt.ArrayLike] | None = None,
                   baseline: str | None = None, test: str = "permutation", alpha: float = 0.05,
                   n_resamples: int = 1000, n_permutations: int = 1000,
                   confidence: float = 0.95, seed: int = 0) -> dict[str, dict[str, Any]]:
  """One metric's comparison: intervals, and every model tested against the best (and baseline).

  The best model has the best estimate on all users (the first listed among equals). Every
  other model is tested against it (`test`: "permutation" or "wilcoxon"), and the m - 1
  p-values are Holm-adjusted as one family; `tied_with_best` means not significantly different
  at `alpha` after Holm. It screens, it is not a confidence set for the best model: the best is
  picked on the same data. With `baseline`, the m - 1 tests against it are a second family.

  Per model: estimate, ci_low, ci_high (paired bootstrap), n_users, is_best, diff_vs_best
  (estimate - best's) with diff_vs_best_ci_low/high (the same bootstrap replicates),
  p_vs_best, p_vs_best_holm, tied_with_best; with a baseline also diff_vs_baseline,
  p_vs_baseline, p_vs_baseline_holm, tied_with_baseline and better_than_baseline (significant
  after Holm and better). A model's p against itself is NaN, and it is tied with itself.
  """
  if test not in TESTS:
    raise ValueError(f"test must be one of {TESTS}, got {test!r}")
  if not 0 < alpha < 1:
    raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
  names, num, den = _prepare(per_user, statistic, users)
  if baseline is not None and baseline not in names:
    raise ValueError(f"baseline {baseline!r} is not among the models {names}")
  est = _point(num, den, statistic)
  reps = _bootstrap_replicates(num, den, statistic, n_resamples, seed)
  lo, hi = _interval(reps, confidence)
  best = int(np.argmax(est) if higher_is_better else np.argmin(est))
  diff_lo, diff_hi = _interval(reps - reps[:, [best]], confidence)

  def p_against(ref: int) -> np.ndarray:
    """Raw and Holm p-values of every model against column `ref` (NaN at ref)."""
    others = [j for j in range(len(names)) if j != ref]
    raw = np.full(len(names), np.nan)
    if not others:
      return raw
    if test == "permutation":
      raw[others] = _sign_flip_pvalues(num, den, statistic, [(ref, j) for j in others],
                                       n_permutations, seed)
    else:
      for j in others:
        cols = [ref, j]
        pair = num[:, cols] if den is None else np.stack([num[:, cols], den[:, cols]], axis=-1)
        raw[j] = wilcoxon_test(pair[:, 0], pair[:, 1], statistic)
    return raw

  p_best = p_against(best)
  p_best_holm = holm(p_best)
  if baseline is not None:
    base = names.index(baseline)
    p_base = p_against(base)
    p_base_holm = holm(p_base)
  rows: dict[str, dict[str, Any]] = {}
  for j, name in enumerate(names):
    row: dict[str, Any] = {
        "estimate": float(est[j]), "ci_low": float(lo[j]), "ci_high": float(hi[j]),
        "n_users": int(num.shape[0]), "is_best": j == best,
        "diff_vs_best": float(est[j] - est[best]),
        "diff_vs_best_ci_low": float(diff_lo[j]), "diff_vs_best_ci_high": float(diff_hi[j]),
        "p_vs_best": float(p_best[j]), "p_vs_best_holm": float(p_best_holm[j]),
        "tied_with_best": bool(j == best or p_best_holm[j] >= alpha),
    }
    if baseline is not None:
      diff = float(est[j] - est[base])
      significant = j != base and p_base_holm[j] < alpha
      row.update({
          "diff_vs_baseline": diff, "p_vs_baseline": float(p_base[j]),
          "p_vs_baseline_holm": float(p_base_holm[j]),
          "tied_with_baseline": not significant,
          "better_than_baseline": bool(significant and (diff > 0) == higher_is_better
                                       and diff != 0),
      })
    rows[name] = row
  return rows


# --------------------------------------------------------------------------- seeds
def summarise_seeds(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
  """Per numeric metric across runs (one per seed): mean, std (ddof=1; NaN for one run), min,
  max and n_runs; the spread a single run's bootstrap interval does not show.

  Non-numeric entries (names, flags) are skipped; a metric missing from some run is an error,
  so that no mean silently covers fewer seeds.
  """
  if not runs:
    raise ValueError("summarise_seeds needs at least one run")

  def numeric(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)

  names = [k for k in runs[0] if numeric(runs[0][k])]
  for run in runs[1:]:
    names += [k for k in run if numeric(run[k]) and k not in names]
  out: dict[str, dict[str, float]] = {}
  for name in names:
    lacking = [i for i, run in enumerate(runs) if not numeric(run.get(name))]
    if lacking:
      raise ValueError(f"metric {name!r} is missing (or not a number) in runs {lacking}")
    v = np.array([float(run[name]) for run in runs])
    out[name] = {"mean": float(v.mean()),
                 "std": float(v.std(ddof=1)) if v.size > 1 else math.nan,
                 "min": float(v.min()), "max": float(v.max()), "n_runs": int(v.size)}
  return out
