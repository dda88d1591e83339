"""Full-catalog ranking at Netflix scale through the evaluator: device top-K against the host path.

  python benchmarks/ranking_benchmark.py --out=bench_out/ranking
  python benchmarks/ranking_benchmark.py --n_users=50000 --n_ratings=2000000   # quick
  python benchmarks/ranking_benchmark.py --cpu_devices=2   # one JAX device per core

A synthetic store of --n_users x --n_items (Netflix: 480,189 x 17,770) with --n_ratings
ratings, split random 90/10; a 64-factor JaxALS fitted for one iteration (the scores' values do
not matter, only their shape: every test user is ranked over the whole catalog, training items
excluded, top-100). Timed: the device ranker over every user of the store (the issue's
target: all 480k users in at most 60 s on CPU), `evaluator.evaluate(..., ranker="device")`
(metrics included) for every test user, and
the host path (`score_items` + `metrics.topk_from_scores`) on --host_users users, extrapolated.
On those users the two top-100 lists are compared (identical rows, same sets): XLA's float32
products round differently from numpy's, so near-ties can swap. The floor: the [users, items]
float32 score matrix written and read once at the memory bandwidth measured here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_OUT = flags.DEFINE_string("out", "bench_out/ranking", "Folder for the store and the JSON.")
_USERS = flags.DEFINE_integer("n_users", 480_189, "Users of the synthetic store (Netflix).")
_ITEMS = flags.DEFINE_integer("n_items", 17_770, "Items of the synthetic store (Netflix).")
_N = flags.DEFINE_integer("n_ratings", 10_000_000, "Ratings of the synthetic store.")
_K = flags.DEFINE_integer("k", 100, "Top-K cut-off (the largest K of the metrics).")
_BATCH = flags.DEFINE_integer("user_batch", 1024, "Users per ranked batch (eval.user_batch).")
_HOST_USERS = flags.DEFINE_integer("host_users", 2048, "Users the host path is timed on.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "Split the CPU into this many JAX devices, as mesh.cpu_devices does (-1: "
    "one per core, 0: JAX's default): the device ranker spreads each batch over them.")


def copy_bandwidth(size_mb: int = 1024, repeats: int = 3) -> float:
  """GB/s of a large np.copyto, read + write bytes (one thread: numpy copies on one)."""
  import numpy as np
  a = np.ones(size_mb << 18, np.float32)
  b = np.empty_like(a)
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    np.copyto(b, a)
    best = min(best, time.perf_counter() - t)
  return 2 * a.nbytes / best / 1e9


def main(argv):
  del argv
  import jax
  from netrec_jax import sharding
  sharding.set_cpu_devices(_CPU_DEVICES.value)  # before the backend starts, as launch.py does
  import numpy as np
  from netrec_jax.baselines.jax_als import JaxALS
  from netrec_jax.data import splits
  from netrec_jax.data.synthetic import SyntheticConfig, build_synthetic_store
  from netrec_jax.data.store import RatingStore
  from netrec_jax.eval import device_topk, evaluator, metrics as metrics_lib

  out = Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  path = out / f"store_{_USERS.value}x{_ITEMS.value}_{_N.value}"
  if (path / "meta.json").is_file():
    store = RatingStore.open(path)
  else:
    t0 = time.time()
    store = build_synthetic_store(SyntheticConfig(n_users=_USERS.value, n_items=_ITEMS.value,
                                                  n_ratings=_N.value), path)
    print(f"built {store.n_ratings:,} ratings in {time.time() - t0:.0f} s", flush=True)
  split = splits.random_split(store, 0.1, 0.0, seed=0)
  data = evaluator.prepare(store, split)
  model = JaxALS(factors=64, reg=0.1, iterations=1).fit(store, data.train_rows)
  users = np.flatnonzero(np.diff(data.relevant.indptr) > 0)
  ks = (10, 20, 50, _K.value)
  print(f"{len(users):,} test users x {store.n_items:,} items = "
        f"{len(users) * store.n_items / 1e9:.2f}G scores", flush=True)

  t0 = time.time()
  result = evaluator.evaluate(model, data, ks=ks, user_batch=_BATCH.value, rating=False,
                              ranker="device")
  device_s = time.time() - t0

  # Every user of the store (the target), straight through the evaluator's ranker:
  # top-K of the full catalog minus each user's training items, one user batch at a time.
  ranker = device_topk.ranker_for(model, _K.value, _BATCH.value, "device", store.n_users,
                                  store.n_items)
  t0 = time.time()
  for _ in ranker.stream((np.arange(lo, min(lo + _BATCH.value, store.n_users)),
                          data.train_matrix[lo:lo + _BATCH.value])
                         for lo in range(0, store.n_users, _BATCH.value)):
    pass
  all_users_s = time.time() - t0

  sample = users[:_HOST_USERS.value]
  t0 = time.time()
  host = np.concatenate([metrics_lib.topk_from_scores(
      np.asarray(model.score_items(sample[lo:lo + _BATCH.value]), np.float64),
      data.train_matrix[sample[lo:lo + _BATCH.value]], _K.value)
      for lo in range(0, len(sample), _BATCH.value)])
  host_s = (time.time() - t0) * len(users) / len(sample)
  device_top = ranker(sample, data.train_matrix[sample])
  same_rows = float((device_top == host).all(1).mean())  # float32 rounding swaps near-ties
  same_sets = float(np.mean([set(a) == set(b) for a, b in zip(device_top, host)]))

  bandwidth = copy_bandwidth()
  floor_s = 2 * 4 * len(users) * store.n_items / (bandwidth * 1e9)
  row = {"n_users": store.n_users, "n_items": store.n_items, "n_ratings": store.n_ratings,
         "test_users": int(len(users)), "k": _K.value, "user_batch": _BATCH.value,
         "device_seconds": device_s, "device_users_per_s": len(users) / device_s,
         "all_users_seconds": all_users_s, "all_users_per_s": store.n_users / all_users_s,
         "host_seconds_extrapolated": host_s, "device_over_host": host_s / device_s,
         "sample_rows_identical": same_rows, "sample_rows_same_set": same_sets,
         "bandwidth_gb_s": bandwidth, "floor_seconds": floor_s,
         "achieved_over_floor": floor_s / device_s, "cpus": os.cpu_count(),
         "jax_devices": jax.device_count(),
         f"ndcg@{_K.value}": result["ranking"][f"ndcg@{_K.value}"]}
  (out / "ranking_result.json").write_text(json.dumps(row, indent=2) + "\n")
  print(json.dumps(row, indent=2))
  print(f"\nevery user ({store.n_users:,}), top-{_K.value} of the full catalog minus training "
        f"items: {all_users_s:.1f} s ({store.n_users / all_users_s:,.0f} users/s)")
  print(f"evaluator, full-catalog top-{_K.value} of {len(users):,} users: device {device_s:.1f} s "
        f"({len(users) / device_s:,.0f} users/s), host {host_s:.0f} s extrapolated "
        f"({host_s / device_s:.1f}x slower); floor {floor_s:.1f} s at {bandwidth:.1f} GB/s; "
        f"identical top-{_K.value} for {same_rows:.2%} of {len(sample):,} sampled users (same "
        f"set: {same_sets:.2%}; the rest swap float32 near-ties)")


if __name__ == "__main__":
  app.run(main)
