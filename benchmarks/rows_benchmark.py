"""Row-model throughput: rows/s and ratings/s of I-AutoRec, U-AutoRec and the deep AE.

  python benchmarks/rows_benchmark.py --out=bench_out/rows
  python benchmarks/rows_benchmark.py --n_users=480189 --n_items=17770 --n_ratings=10000000

Each case trains through netrec_jax.train.loop.train_and_evaluate (the code path launch.py
runs: SparseRows batches, padded widths bucketed to powers of two, the jitted sharded step),
--epochs epochs on a synthetic Netflix-like store; the first epoch includes compilation, so the
figure reported is the median of the later epochs' `rows_per_s` / `ratings_per_s` from
metrics.jsonl (training time only, validation excluded).

Floor: per epoch a row model must at least read each training rating's (column, star) pair and
its encoder row (hidden x 4 B) and write the gradient of that row back, and the same again for
the decoder at the observed columns: about 4 x hidden x 4 B per rating for the first/last layer.
Divided by the memory bandwidth measured with np.copyto this gives a ratings/s ceiling; the dense
middle layers of the deep AE (512-256-64-256-512) are compute, counted in FLOPs per row.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_OUT = flags.DEFINE_string("out", "bench_out/rows", "Folder for stores and run directories.")
_USERS = flags.DEFINE_integer("n_users", 60_000, "Users in the synthetic store.")
_ITEMS = flags.DEFINE_integer("n_items", 4_499, "Items in the synthetic store.")
_N = flags.DEFINE_integer("n_ratings", 3_000_000, "Ratings in the synthetic store.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Epochs per case (the first includes compiling).")
_CASES = flags.DEFINE_list("cases", ["autorec:item", "autorec:user", "deep_ae:user"],
                           "MODEL:SIDE cases to time.")
_BATCH = flags.DEFINE_integer("row_batch", 256, "Rows per batch.")


def _bandwidth() -> float:
  import numpy as np
  src = np.ones(1 << 27, np.uint8)
  dst = np.empty_like(src)
  np.copyto(dst, src)
  t0 = time.perf_counter()
  for _ in range(5):
    np.copyto(dst, src)
  return 2 * 5 * src.nbytes / (time.perf_counter() - t0)


def main(argv):
  del argv
  import jax
  import numpy as np
  from netrec_jax import configs
  from netrec_jax.train import loop

  out = Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  bandwidth = _bandwidth()
  print(f"devices: {jax.devices()}; memory bandwidth (np.copyto, read+write) "
        f"{bandwidth / 1e9:.1f} GB/s; {os.cpu_count()} CPUs")
  results = []
  for case in _CASES.value:
    name, side = case.split(":")
    config = configs.base_config()
    config.data.store_root = str(out / "stores")
    config.data.synthetic.update(n_users=_USERS.value, n_items=_ITEMS.value,
                                 n_ratings=_N.value, rank=16)
    config.data.min_user_ratings = 0
    config.split.kind = "random"
    config.model.name = name
    config.autoencoder.side = side
    config.train.batch_size = _BATCH.value
    config.train.epochs = _EPOCHS.value
    config.train.early_stopping_patience = 0
    config.eda = False
    workdir = out / f"{name}_{side}"
    for stale in (workdir / "checkpoints", workdir / "metrics.jsonl"):
      if stale.exists():
        import shutil
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    loop.train_and_evaluate(config, workdir)
    log = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    timed = log[1:] or log
    a = config.autoencoder
    hidden = a.autorec_hidden if name == "autorec" else a.layers[0]
    floor = bandwidth / (4 * hidden * 4)
    result = {"case": case, "hidden": hidden,
              "rows_per_s": float(np.median([r["rows_per_s"] for r in timed])),
              "ratings_per_s": float(np.median([r["ratings_per_s"] for r in timed])),
              "floor_ratings_per_s": floor}
    result["achieved_over_floor"] = result["ratings_per_s"] / floor
    results.append(result)
    print(f"{case:14s} {result['rows_per_s']:>10,.0f} rows/s {result['ratings_per_s']:>12,.0f} "
          f"ratings/s  (memory floor {floor:,.0f} ratings/s, "
          f"{result['achieved_over_floor']:.1%} of it)")
  (out / "rows_benchmark.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
  app.run(main)
