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
family-wise error rate under any dependence). `compare_models` ties these together for one
metric, `compare_metrics` for a whole table, sharing the resamples across metrics.

Random draws: one seed gives two independent numpy streams, bootstrap counts and sign flips;
resample r depends only on (seed, n_users, r), so adding a model or a metric changes no other
number.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

STATISTICS = ("mean", "ratio", "mae", "rmse")
TESTS = ("permutation", "wilcoxon")
# Memory-bound products [rows, n] @ [n, c]: the bigger both blocks, the fewer passes over memory.
_BLOCK_CELLS = 1 << 24  # resamples x users drawn at once: a 128 MB float64 block
_COLUMN_CELLS = 1 << 25  # users x value columns per pass (256 MB); beyond, draws are repeated


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


# --------------------------------------------------------------------------- resampling
@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
  """One BLAS thread for the block products [rows, n] @ [n, c], which are memory-bound.

  On the shared 2-core box, OpenBLAS threads spinning against other processes made such a
  product 10-50x slower than one thread (BUILD_NOTES). threadpoolctl comes with scikit-learn.
  """
  try:
    from threadpoolctl import threadpool_limits
  except ImportError:  # pragma: no cover
    yield
    return
  with threadpool_limits(1, user_api="blas"):
    yield


_STREAMS = {"bootstrap": 0, "flip": 1}


def _draw_rng(seed: int, kind: str) -> np.random.Generator:
  """The numpy Generator of one kind of draw (independent streams of one seed)."""
  return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAMS[kind],)))


def _resampled_sums(columns: np.ndarray, n_resamples: int, seed: int, kind: str) -> np.ndarray:
  """[n_resamples, c] = draws @ columns, a block of draws at a time.

  kind "bootstrap": a draw is multinomial counts per user (bincount of n uniform user indices);
  kind "flip": a 0/1 swap indicator per user (bits of random bytes). Draws are made one row at
  a time from `_draw_rng(seed, kind)`, so row r depends only on (seed, n, r).
  """
  if int(n_resamples) != n_resamples or n_resamples < 1:
    raise ValueError(f"the number of resamples must be a positive integer, got {n_resamples!r}")
  n_resamples = int(n_resamples)
  n, c = columns.shape
  rng = _draw_rng(seed, kind)
  rows = max(1, min(n_resamples, _BLOCK_CELLS // n))
  block = np.empty((rows, n), dtype=np.float64)
  out = np.empty((n_resamples, c), dtype=np.float64)
  n_bytes = (n + 7) // 8
  with _one_blas_thread():
    for lo in range(0, n_resamples, rows):
      r = min(rows, n_resamples - lo)
      for i in range(r):
        # Named temporaries, alive until the next row's replace them: written as one nested
        # expression, the same loop ran 3x slower at 480k users (allocator behaviour).
        if kind == "bootstrap":
          draws = rng.integers(0, n, size=n)
          row = np.bincount(draws, minlength=n)
        else:
          draws = rng.bytes(n_bytes)
          row = np.unpackbits(np.frombuffer(draws, dtype=np.uint8), count=n)
        block[i] = row
      out[lo:lo + r] = block[:r] @ columns
  return out


def _batched_sums(parts: Sequence[tuple[int, Callable[[], np.ndarray]]], n_users: int,
                  n_resamples: int, seed: int, kind: str) -> list[np.ndarray]:
  """`_resampled_sums` of several column sets on the same users, in passes of bounded memory.

  Each part is (its column count, a function building its [n, c] columns), built only when its
  pass runs, so memory holds one pass's columns; every pass draws the same resamples.
  """
  out: list[np.ndarray] = []
  limit = max(1, _COLUMN_CELLS // n_users)
  start = 0
  while start < len(parts):
    stop, width = start + 1, parts[start][0]
    while stop < len(parts) and width + parts[stop][0] <= limit:
      width += parts[stop][0]
      stop += 1
    sums = _resampled_sums(np.hstack([build() for _, build in parts[start:stop]]), n_resamples,
                           seed, kind)
    at = 0
    for c, _ in parts[start:stop]:
      out.append(sums[:, at:at + c])
      at += c
    start = stop
  return out


# --------------------------------------------------------------------------- one metric
@dataclass
class _Metric:
  """One metric's aligned per-user values and point estimates."""
  models: list[str]
  num: np.ndarray  # [n_users, n_models]
  den: np.ndarray | None  # [n_users, n_models]; None for "mean"
  statistic: str

  @property
  def n_users(self) -> int:
    return self.num.shape[0]

  def estimates(self) -> np.ndarray:
    f = _transform(self.statistic)
    if self.den is None:
      return self.num.mean(axis=0)
    return f(self.num.sum(axis=0) / self.den.sum(axis=0))

  @property
  def width(self) -> int:
    """Columns per model (or pair): 1 for "mean", numerator and denominator for ratios."""
    return 1 if self.den is None else 2

  def bootstrap_columns(self) -> np.ndarray:
    return self.num if self.den is None else np.hstack([self.num, self.den])

  def replicates(self, sums: np.ndarray) -> np.ndarray:
    """[n_resamples, n_models] metric of each resample, from its `bootstrap_columns` sums."""
    m = self.num.shape[1]
    if self.den is None:
      return sums / self.n_users
    return _transform(self.statistic)(sums[:, :m] / sums[:, m:])

  def flip_columns(self, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Per pair (a, b): b - a per user, numerators then (ratio statistics) denominators."""
    a, b = _pair_index(pairs)
    cols = self.num[:, b] - self.num[:, a]
    return cols if self.den is None else np.hstack([cols, self.den[:, b] - self.den[:, a]])

  def flip_pvalues(self, pairs: Sequence[tuple[int, int]], sums: np.ndarray) -> np.ndarray:
    """Two-sided sign-flip p-value of metric(a) - metric(b) per pair, from `flip_columns` sums.

    Swapping user u's values of a and b gives sum_a + (b - a)_u to a and sum_b - (b - a)_u to
    b, for numerators and denominators alike: a flip of a set of users adds draws @ (b - a).
    """
    f = _transform(self.statistic)
    a, b = _pair_index(pairs)
    k = a.size
    dens = np.ones_like(self.num) if self.den is None else self.den
    na, nb = self.num[:, a].sum(axis=0), self.num[:, b].sum(axis=0)
    da, db = dens[:, a].sum(axis=0), dens[:, b].sum(axis=0)
    s_num = sums[:, :k]
    s_den = 0.0 if self.den is None else sums[:, k:]
    t = f((na + s_num) / (da + s_den)) - f((nb - s_num) / (db - s_den))
    fa, fb = f(na / da), f(nb / db)
    # Flips giving the observed |T| in exact arithmetic must count; rounding must not hide them.
    tol = 1e-9 * (np.abs(fa) + np.abs(fb)) + 1e-300
    extreme = np.count_nonzero(np.abs(t) >= np.abs(fa - fb) - tol, axis=0)
    return (1.0 + extreme) / (1.0 + sums.shape[0])

  def wilcoxon_pvalues(self, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    per_user = self.num if self.den is None else self.num / self.den
    return np.array([_wilcoxon(per_user[:, i] - per_user[:, j]) for i, j in pairs])


def _pair_index(pairs: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
  return (np.array([p[0] for p in pairs], dtype=np.int64),
          np.array([p[1] for p in pairs], dtype=np.int64))


def _wilcoxon(d: np.ndarray) -> float:
  if not np.any(d):
    return 1.0  # scipy raises on all-zero differences; identical values are no evidence
  return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def _metric(per_user: Mapping[str, npt.ArrayLike], statistic: str,
            users: Mapping[str, npt.ArrayLike] | None) -> _Metric:
  names, num, den = _prepare(per_user, statistic, users)
  return _Metric(names, num, den, statistic)


def _interval(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
  if not 0 < confidence < 1:
    raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
  lo, hi = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
  return lo, hi


# --------------------------------------------------------------------------- public tests
def paired_bootstrap(per_user: Mapping[str, npt.ArrayLike], statistic: str = "mean",
                     n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95, *,
                     users: Mapping[str, npt.ArrayLike] | None = None
                     ) -> dict[str, dict[str, float]]:
  """Per model: `estimate` (on all users), percentile `ci_low`/`ci_high`, bootstrap `std_error`.

  Users are resampled with replacement, the same users for every model. `users` (model -> ids)
  aligns models by id and raises if their users differ; without it the rows must already be
  the same users in the same order.
  """
  _interval(np.zeros((1, 1)), confidence)  # check before the work
  met = _metric(per_user, statistic, users)
  reps = met.replicates(_resampled_sums(met.bootstrap_columns(), n_resamples, seed, "bootstrap"))
  lo, hi = _interval(reps, confidence)
  est = met.estimates()
  se = reps.std(axis=0, ddof=1) if reps.shape[0] > 1 else np.full(len(met.models), np.nan)
  return {name: {"estimate": float(est[j]), "ci_low": float(lo[j]), "ci_high": float(hi[j]),
                 "std_error": float(se[j])} for j, name in enumerate(met.models)}


def permutation_test(a: npt.ArrayLike, b: npt.ArrayLike, statistic: str = "mean",
                     n_resamples: int = 1000, seed: int = 0) -> float:
  """Two-sided paired sign-flip test of metric(a) = metric(b); a, b aligned per user.

  The p-value's resolution is 1 / (n_resamples + 1); it is never 0.
  """
  met = _metric({"a": a, "b": b}, statistic, None)
  sums = _resampled_sums(met.flip_columns([(0, 1)]), n_resamples, seed, "flip")
  return float(met.flip_pvalues([(0, 1)], sums)[0])


def wilcoxon_test(a: npt.ArrayLike, b: npt.ArrayLike, statistic: str = "mean") -> float:
  """Two-sided Wilcoxon signed-rank p-value on per-user differences (1.0 if all are zero).

  For ratio statistics the per-user values are num / den (per-user MSE or MAE).
  """
  return float(_metric({"a": a, "b": b}, statistic, None).wilcoxon_pvalues([(0, 1)])[0])


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


# --------------------------------------------------------------------------- comparison tables
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


def _default_statistic(metric: str) -> str:
  base = metric.lower()
  return "rmse" if base.startswith("rmse") else "mae" if base.startswith("mae") else "mean"


def compare_metrics(per_user: Mapping[str, Mapping[str, npt.ArrayLike]], *,
                    higher_is_better: Mapping[str, bool] | None = None,
                    statistic: Mapping[str, str] | None = None,
                    users: Mapping[str, Mapping[str, npt.ArrayLike]] | None = None,
                    baseline: str | None = None, test: str = "permutation",
                    alpha: float = 0.05, n_resamples: int = 1000, n_permutations: int = 1000,
                    confidence: float = 0.95, seed: int = 0
                    ) -> dict[str, dict[str, dict[str, Any]]]:
  """`compare_models` for every metric of a table: {metric: {model: row}}.

  `per_user` is {metric: {model: values}}; `higher_is_better`, `statistic` and `users` are
  per metric, defaulting to `metric_higher_is_better(name)`, "rmse"/"mae" for names starting
  so and "mean" otherwise, and no alignment. Metrics on the same number of users share their
  bootstrap and sign-flip draws (drawing dominates the cost); each metric's rows equal a
  `compare_models` call with the same seed.
  """
  if test not in TESTS:
    raise ValueError(f"test must be one of {TESTS}, got {test!r}")
  if not 0 < alpha < 1:
    raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
  _interval(np.zeros((1, 1)), confidence)
  if not per_user:
    raise ValueError("no metrics given")
  higher_is_better = dict(higher_is_better or {})
  statistic = dict(statistic or {})
  users = dict(users or {})

  prepared: dict[str, dict[str, Any]] = {}
  for name, table in per_user.items():
    met = _metric(table, statistic.get(name) or _default_statistic(name), users.get(name))
    higher = (higher_is_better[name] if name in higher_is_better
              else metric_higher_is_better(name))
    if baseline is not None and baseline not in met.models:
      raise ValueError(f"baseline {baseline!r} is not among the models {met.models} of {name!r}")
    est = met.estimates()
    best = int(np.argmax(est) if higher else np.argmin(est))
    refs = [best] if baseline is None else [best, met.models.index(baseline)]
    pairs = [(ref, j) for ref in refs for j in range(len(met.models)) if j != ref]
    prepared[name] = {"met": met, "higher": higher, "est": est, "best": best, "refs": refs,
                      "pairs": pairs}

  # Draws: one pass (or a few, by column count) per distinct number of users.
  for n in sorted({p["met"].n_users for p in prepared.values()}):
    group = [p for p in prepared.values() if p["met"].n_users == n]
    boot = _batched_sums([(p["met"].width * len(p["met"].models), p["met"].bootstrap_columns)
                          for p in group], n, n_resamples, seed, "bootstrap")
    for p, sums in zip(group, boot):
      p["reps"] = p["met"].replicates(sums)
    if test == "permutation":
      with_pairs = [p for p in group if p["pairs"]]
      flips = _batched_sums([(p["met"].width * len(p["pairs"]),
                              lambda p=p: p["met"].flip_columns(p["pairs"])) for p in with_pairs],
                            n, n_permutations, seed, "flip")
      for p, sums in zip(with_pairs, flips):
        p["p"] = p["met"].flip_pvalues(p["pairs"], sums)
    for p in group:
      if test == "wilcoxon" and p["pairs"]:
        p["p"] = p["met"].wilcoxon_pvalues(p["pairs"])

  return {name: _rows(p, baseline, alpha, confidence) for name, p in prepared.items()}


def _rows(p: dict[str, Any], baseline: str | None, alpha: float,
          confidence: float) -> dict[str, dict[str, Any]]:
  """The per-model rows of one prepared and resampled metric."""
  met, est, reps, best, higher = p["met"], p["est"], p["reps"], p["best"], p["higher"]
  m = len(met.models)
  lo, hi = _interval(reps, confidence)
  diff_lo, diff_hi = _interval(reps - reps[:, [best]], confidence)
  raw = {ref: np.full(m, np.nan) for ref in p["refs"]}
  for (ref, j), value in zip(p["pairs"], p.get("p", [])):
    raw[ref][j] = value
  adjusted = {ref: holm(values) for ref, values in raw.items()}  # one family per reference
  rows: dict[str, dict[str, Any]] = {}
  for j, name in enumerate(met.models):
    row: dict[str, Any] = {
        "estimate": float(est[j]), "ci_low": float(lo[j]), "ci_high": float(hi[j]),
        "n_users": met.n_users, "is_best": j == best,
        "diff_vs_best": float(est[j] - est[best]),
        "diff_vs_best_ci_low": float(diff_lo[j]), "diff_vs_best_ci_high": float(diff_hi[j]),
        "p_vs_best": float(raw[best][j]), "p_vs_best_holm": float(adjusted[best][j]),
        "tied_with_best": bool(j == best or adjusted[best][j] >= alpha),
    }
    if baseline is not None:
      base = met.models.index(baseline)
      diff = float(est[j] - est[base])
      significant = bool(j != base and adjusted[base][j] < alpha)
      row.update({
          "diff_vs_baseline": diff, "p_vs_baseline": float(raw[base][j]),
          "p_vs_baseline_holm": float(adjusted[base][j]),
          "tied_with_baseline": not significant,
          "better_than_baseline": significant and diff != 0 and (diff > 0) == higher,
      })
    rows[name] = row
  return rows


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
  key = "metric"
  return compare_metrics({key: per_user}, higher_is_better={key: higher_is_better},
                         statistic={key: statistic},
                         users=None if users is None else {key: users}, baseline=baseline,
                         test=test, alpha=alpha, n_resamples=n_resamples,
                         n_permutations=n_permutations, confidence=confidence, seed=seed)[key]


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
