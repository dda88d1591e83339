"""Time of the leakage audit and of drawing the fixed negatives on a synthetic store.

python benchmarks/leakage_benchmark.py --n_ratings=10000000 --store=/tmp/leak_bench/store10m
"""

from __future__ import annotations

import argparse
import time
import types
from pathlib import Path

from netrec_jax.data import negatives, splits, synthetic
from netrec_jax.data.store import META_FILE, RatingStore
from netrec_jax.eval import evaluator, leakage


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--n_ratings", type=int, default=10_000_000)
  parser.add_argument("--n_users", type=int, default=100_000)
  parser.add_argument("--n_items", type=int, default=17_770)
  parser.add_argument("--store", default="/tmp/leakage_benchmark_store")
  args = parser.parse_args()
  path = Path(args.store)
  if (path / META_FILE).is_file():
    store = RatingStore.open(path)
  else:
    cfg = synthetic.SyntheticConfig(n_users=args.n_users, n_items=args.n_items,
                                    n_ratings=args.n_ratings)
    store = synthetic.build_synthetic_store(cfg, path, overwrite=True)
  print(f"store {path}: {store.n_ratings:,} ratings, {store.n_users:,} users, "
        f"{store.n_items:,} items")
  no_neg = types.SimpleNamespace(sampled_negatives=0, negative_sampler="uniform")
  pop100 = types.SimpleNamespace(sampled_negatives=100, negative_sampler="popularity")
  cases = [("random_90_10 (+ split_features)", splits.random_split(store), no_neg, True),
           ("time_2004 (valid 0.1)", splits.time_split(store, "2004-01-01", 0.1), no_neg, False),
           ("loo, loo_pop100 negatives", splits.leave_last_out(store), pop100, False),
           ("strong generalization", splits.strong_generalization(store, 0.1), no_neg, False)]
  for label, split, eval_cfg, features in cases:
    if eval_cfg.sampled_negatives:
      for p in negatives.paths(store, split, eval_cfg.negative_sampler,
                               eval_cfg.sampled_negatives):
        p.unlink(missing_ok=True)
      t0, c0 = time.time(), time.process_time()
      negatives.fixed_negatives(store, split, eval_cfg.negative_sampler,
                                eval_cfg.sampled_negatives)
      print(f"{label}: negatives drawn and stored in {time.time() - t0:.2f} s "
            f"({time.process_time() - c0:.2f} s CPU)")
    data = None
    if split.protocol == splits.STRONG_PROTOCOL:
      data = evaluator.prepare(store, split)
    t0, c0 = time.time(), time.process_time()
    record = leakage.audit(store, split, eval_cfg=eval_cfg, eval_data=data, features=features)
    applied = [c["name"] for c in record["checks"] if c["applicable"]]
    print(f"{label}: audit {time.time() - t0:.2f} s ({time.process_time() - c0:.2f} s CPU), "
          f"passed {record['passed']}, "
          f"{len(applied)} checks: {', '.join(applied)}")


if __name__ == "__main__":
  main()
