"""Time of the comparison statistics at ML-scale and Netflix-scale user counts.

  python benchmarks/statistics_benchmark.py
  python benchmarks/statistics_benchmark.py --n_users=100000,480189 --n_models=1,5 --repeats=3

For each user count: `paired_bootstrap` of a mean metric and of RMSE ((sse, n) per user), the
sign-flip `permutation_test` of one pair, `compare_models` of --n_models models (one
bootstrap and one shared draw of sign flips for all m - 1 pairs), and `compare_metrics` of a
table of --n_metrics mean metrics plus RMSE, vs best and a baseline (draws shared by all
metrics). Each figure is the median of --repeats wall-clock runs; random per-user values, since
the cost depends only on the sizes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netrec_jax.eval import statistics

_USERS = flags.DEFINE_list("n_users", ["100000", "480189"], "User counts to time.")
_MODELS = flags.DEFINE_list("n_models", ["1", "5"], "Models per table.")
_RESAMPLES = flags.DEFINE_integer("n_resamples", 1000, "Bootstrap resamples and sign flips.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Runs per figure (median reported).")
_METRICS = flags.DEFINE_integer("n_metrics", 16, "Mean metrics in the compare_metrics table.")


def _median_s(fn, *args, **kwargs) -> float:
  times = []
  for _ in range(_REPEATS.value):
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def main(argv):
  del argv
  r = _RESAMPLES.value
  print(f"{r} resamples, median of {_REPEATS.value} runs (seconds); load average "
        f"{os.getloadavg()[0]:.1f} at the start")
  print("| users | models | bootstrap mean | bootstrap RMSE | permutation (1 pair) "
        "| compare_models mean | compare_models RMSE "
        f"| compare_metrics ({_METRICS.value} + RMSE) |")
  print("|---|---|---|---|---|---|---|---|")
  for n in (int(v) for v in _USERS.value):
    rng = np.random.default_rng(0)
    for m in (int(v) for v in _MODELS.value):
      means = {f"m{j}": rng.random(n) for j in range(m)}
      count = rng.integers(1, 200, n).astype(np.float64)
      rmse = {f"m{j}": statistics.ratio_values(rng.gamma(2.0, 1.0, n) * count, count)
              for j in range(m)}
      boot_mean = _median_s(statistics.paired_bootstrap, means, "mean", r)
      boot_rmse = _median_s(statistics.paired_bootstrap, rmse, "rmse", r)
      pair = list(rmse.values())[:2]
      perm = (_median_s(statistics.permutation_test, pair[0], pair[1], "rmse", r)
              if m > 1 else float("nan"))
      cmp_mean = _median_s(statistics.compare_models, means, higher_is_better=True,
                           n_resamples=r, n_permutations=r)
      cmp_rmse = _median_s(statistics.compare_models, rmse, higher_is_better=False,
                           statistic="rmse", n_resamples=r, n_permutations=r)
      table = {f"metric{i}@10": means for i in range(_METRICS.value)}
      table["rmse"] = rmse
      baseline = "m0" if m > 1 else None
      cmp_table = _median_s(statistics.compare_metrics, table, baseline=baseline,
                            n_resamples=r, n_permutations=r,
                            higher_is_better={name: name != "rmse" for name in table})
      print(f"| {n:,} | {m} | {boot_mean:.2f} | {boot_rmse:.2f} | {perm:.2f} | {cmp_mean:.2f} "
            f"| {cmp_rmse:.2f} | {cmp_table:.2f} |", flush=True)


if __name__ == "__main__":
  app.run(main)
