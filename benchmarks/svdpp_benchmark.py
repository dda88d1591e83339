"""SVD++: ours against Surprise's SVDpp on ml100k_u1, one epoch at Netflix-like scale, and
timeSVD++ against SVD++ on synthetic stores with and without a planted time drift.

  python benchmarks/svdpp_benchmark.py                           # ml100k and scale
  python benchmarks/svdpp_benchmark.py --parts=ml100k
  python benchmarks/svdpp_benchmark.py --parts=scale --scale_ratings=100000000
  python benchmarks/svdpp_benchmark.py --parts=scale --scale_cases=timesvdpp
  python benchmarks/svdpp_benchmark.py --parts=drift --drift_ratings=1000000

ml100k: the svdpp_ml100k experiment's rows (u1.base less a seeded 5% validation slice; test
u1.test). Surprise SVDpp with its defaults (20 factors, 20 epochs, lr 0.007, reg 0.02, init
std 0.1), which are also our family's defaults, so the settings are the same; both are scored
by the same evaluator on the same test rows. Ours runs through the loop with one validation
at the end (eval_every = epochs: Surprise does no model selection either). Fit seconds:
Surprise's fit(); ours the loop's trained_seconds (the epochs, first-epoch compile included)
and its steady epochs (median epoch after the first, times the epochs), both printed, with
the speed ratios.

scale: a synthetic store (netrec_jax/data/synthetic.py) of --scale_ratings ratings, 17,770
movies and users in Netflix's proportion (480,189 per 100.48M ratings), split random 90/10;
for svdpp (its defaults) and mf (its defaults: adagrad, dim 64, batch 8,192; and mf with
svdpp's sgd, 20 factors, batch 4,096) one training epoch by the loop's own host epoch
(loop.host_epoch: prefetch, NaN window), after one compiled step. Each case runs in its own
process, so its peak RSS is its own (timesvdpp: the same, with its time tables).

drift: synthetic stores of --drift_ratings ratings (Netflix-like activity, 2,000 movies),
one without drift and one with --drift item and user bias drift (data.synthetic.drift_*_std),
split time_2005 (latest 5% of train for validation); svdpp and timesvdpp with their defaults
through the loop (early stopping on validation), test RMSE (all and warm rows), and for
timesvdpp how well it recovered the planted drift (recommenders/timesvdpp.drift_recovery:
correlation of the learned item-bin slopes with the planted item drift, alpha_u's sign
against the planted user drift, over items and users with >= 50 training ratings).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_PARTS = flags.DEFINE_list("parts", ["ml100k", "scale"], "ml100k, scale, drift.")
_OUT = flags.DEFINE_string("out", "bench_out/svdpp", "Folder for stores, runs and results.")
_SCALE = flags.DEFINE_integer("scale_ratings", 10_000_000, "Ratings in the scale store.")
_CASES = flags.DEFINE_list("scale_cases", ["svdpp", "mf", "mf_sgd20"], "Scale cases.")
_CASE = flags.DEFINE_string("case", "", "Internal: run one scale case, print its JSON.")
_DRIFT_RATINGS = flags.DEFINE_integer("drift_ratings", 1_000_000, "Ratings per drift store.")
_DRIFT = flags.DEFINE_float("drift", 0.3, "drift_item_std and drift_user_std of the drifted store.")

NETFLIX_USERS_PER_RATING = 480_189 / 100_480_507
SCALE_CASES = {
    "svdpp": ("svdpp", {}),
    "timesvdpp": ("timesvdpp", {}),
    "mf": ("mf", {}),
    "mf_sgd20": ("mf", {"optimizer.sparse": "sgd", "optimizer.sparse_lr": 0.007,
                        "optimizer.embed_l2": 0.02, "model.embed_dim": 20,
                        "model.init_std": 0.1, "train.batch_size": 4096}),
}


def peak_rss_gb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# ----------------------------------------------------------------------------- ml100k_u1
def ml100k(out: Path) -> dict:
  import numpy as np
  from netrec_jax import configs
  from netrec_jax.baselines.surprise_models import SurpriseRecommender
  from netrec_jax.data import datasets
  from netrec_jax.eval import evaluator
  from netrec_jax.train import family as family_lib, loop

  config = configs.load_experiment("svdpp_ml100k")
  config.data.store_root = str(out / "stores")
  config = family_lib.resolve(config)
  epochs = config.train.epochs
  config.train.eval_every, config.train.early_stopping_patience = epochs, 0
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  test = evaluator.part_data(store, split, "test", config.eval)

  t0 = time.time()
  surprise = SurpriseRecommender("SVDpp", {"n_factors": config.svdpp.embed_dim,
                                           "n_epochs": epochs, "lr_all": config.optimizer.lr,
                                           "reg_all": config.optimizer.l2,
                                           "init_std_dev": config.svdpp.init_std,
                                           "random_state": 0}, name="surprise_svdpp")
  surprise.fit(store, split.rows("train"))
  surprise_fit = time.time() - t0
  surprise_rmse = evaluator.evaluate(surprise, test, ranking=False)["rating"]["rmse"]

  workdir = out / "svdpp_ml100k"
  if workdir.exists():
    import shutil
    shutil.rmtree(workdir)
  t0 = time.time()
  final = loop.train_and_evaluate(config, workdir)
  wall = time.time() - t0
  log = loop.read_log(workdir)
  steady = float(np.median([r["epoch_seconds"] for r in log[1:]])) * epochs
  ours = {"test_rmse": final["test"]["rmse"], "trained_seconds": final["trained_seconds"],
          "steady_epochs_seconds": steady, "loop_wall_seconds": wall,
          "first_epoch_seconds": log[0]["epoch_seconds"]}
  return {"settings": {"factors": config.svdpp.embed_dim, "epochs": epochs,
                       "lr": config.optimizer.lr, "reg": config.optimizer.l2,
                       "init_std": config.svdpp.init_std,
                       "batch_ratings": config.train.batch_size},
          "split": split.name, "n_train": int(len(split.rows("train"))),
          "surprise": {"test_rmse": surprise_rmse, "fit_seconds": surprise_fit},
          "ours": ours,
          "rmse_difference": ours["test_rmse"] - surprise_rmse,
          "speedup_trained": surprise_fit / ours["trained_seconds"],
          "speedup_steady": surprise_fit / steady,
          "speedup_loop_wall": surprise_fit / wall}


# --------------------------------------------------------------------------------- scale
def scale_config(out: Path, n_ratings: int, model: str, fields: dict):
  from netrec_jax import configs
  config = configs.base_config()
  config.data.store_root = str(out / "stores")
  config.data.synthetic.update(n_users=max(1000, round(n_ratings * NETFLIX_USERS_PER_RATING)),
                               n_items=17_770, n_ratings=n_ratings, rank=16)
  config.split.kind = "random"
  config.model.name = model
  config.train.epochs = 1
  config.eda = False
  for dotted, value in fields.items():
    configs.set_field(config, dotted, value)
  return config


def scale_case(out: Path, n_ratings: int, case: str) -> dict:
  """One epoch of `case` through the loop's host epoch, after one compiled step."""
  import jax
  from netrec_jax import sharding as sharding_lib
  from netrec_jax.train import family as family_lib, loop

  model, fields = SCALE_CASES[case]
  config = family_lib.resolve(scale_config(out, n_ratings, model, fields))
  fam = family_lib.family(model)
  t0 = time.time()
  setup = fam.setup(config)
  setup_seconds = time.time() - t0
  tree = fam.init(setup)
  step = fam.make_step(setup)
  key = jax.random.PRNGKey(0)
  t0 = time.time()
  first = next(iter(fam.batches(setup, 0)))
  tree, metrics = step(tree, sharding_lib.put_batch(first, sharding_lib.batch_sharding(
      setup.mesh)), key)
  jax.block_until_ready(metrics["loss"])
  compile_seconds = time.time() - t0
  t0 = time.time()
  tree, stats = loop.host_epoch(fam, setup, step, tree, 0, key)
  jax.block_until_ready(loop.tree_field(tree, "step"))
  epoch = time.time() - t0
  n_train = setup.n_examples
  return {"case": case, "model": model, "fields": fields, "n_store_ratings": n_ratings,
          "n_train_ratings": int(n_train), "n_users": setup.store.n_users,
          "batch_size": config.train.batch_size, "steps": stats["steps"],
          "train_loss": stats["train_loss"], "setup_seconds": setup_seconds,
          "compile_seconds": compile_seconds, "epoch_seconds": epoch,
          "ratings_per_s": n_train / epoch, "peak_rss_gb": peak_rss_gb(),
          "devices": jax.device_count()}


def scale(out: Path, n_ratings: int, cases: list[str]) -> list[dict]:
  from netrec_jax.data import datasets
  t0 = time.time()
  store = datasets.open_or_build(scale_config(out, n_ratings, "svdpp", {}).data)
  print(f"store {store.name}: {store.n_ratings:,} ratings, {store.n_users:,} users "
        f"({time.time() - t0:.0f} s to open or build)", flush=True)
  del store
  results = []
  for case in cases:
    done = subprocess.run([sys.executable, __file__, f"--case={case}", f"--out={out}",
                           f"--scale_ratings={n_ratings}"], capture_output=True, text=True)
    if done.returncode:
      raise RuntimeError(f"scale case {case} failed:\n{done.stderr[-3000:]}")
    results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    r = results[-1]
    print(f"{case}: {r['ratings_per_s'] / 1e6:.2f}M ratings/s, epoch {r['epoch_seconds']:.1f} s "
          f"({r['n_train_ratings']:,} ratings, batch {r['batch_size']}), compile "
          f"{r['compile_seconds']:.1f} s, peak RSS {r['peak_rss_gb']:.2f} GiB", flush=True)
  return results


# ---------------------------------------------------------------------------------- drift
def drift(out: Path, n_ratings: int, amount: float) -> list[dict]:
  """svdpp and timesvdpp on a store without and one with planted drift (time_2005)."""
  from netrec_jax import configs
  from netrec_jax.data import synthetic
  from netrec_jax.recommenders.timesvdpp import drift_recovery
  from netrec_jax.train import loop

  results = []
  for planted in (0.0, amount):
    for model in ("svdpp", "timesvdpp"):
      config = configs.base_config()
      config.data.store_root = str(out / "stores")
      config.data.synthetic.update(n_users=max(1000, n_ratings // 50), n_items=2_000,
                                   n_ratings=n_ratings, seed=0, drift_item_std=planted,
                                   drift_user_std=planted)
      config.split.kind, config.split.valid_fraction = "time", 0.05
      config.model.name, config.eda, config.eval.ranking = model, False, "never"
      workdir = out / f"drift{planted:g}_{model}"
      if workdir.exists():
        import shutil
        shutil.rmtree(workdir)
      t0 = time.time()
      final = loop.train_and_evaluate(config, workdir)
      r = {"drift": planted, "model": model, "test_rmse": final["test"]["rmse"],
           "test_rmse_warm": final["test"].get("rmse_warm"),
           "valid_rmse": final["valid"]["rmse"], "best_epoch": final["best_epoch"],
           "seconds": time.time() - t0, "ratings_per_s": final.get("ratings_per_s")}
      if model == "timesvdpp" and planted:
        truth = synthetic.generate_truth(synthetic.SyntheticConfig(
            **config.data.synthetic.to_dict()))
        r["recovery"] = drift_recovery(loop.load_recommender(workdir), truth)
      results.append(r)
      print(f"drift {planted:g} {model}: test RMSE {r['test_rmse']:.4f} (warm "
            f"{r['test_rmse_warm']:.4f}), valid {r['valid_rmse']:.4f}, best epoch "
            f"{r['best_epoch']}, {r['seconds']:.0f} s" + (f", recovery {r['recovery']}"
                                                        if "recovery" in r else ""), flush=True)
  return results


def main(argv):
  del argv
  from netrec_jax.progress import quiet_library_logs
  quiet_library_logs()
  out = Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  if _CASE.value:
    print(json.dumps(scale_case(out, _SCALE.value, _CASE.value)))
    return
  results = {}
  if "ml100k" in _PARTS.value:
    r = results["ml100k"] = ml100k(out)
    print(f"ml100k_u1 ({r['split']}, {r['n_train']:,} training ratings), settings "
          f"{r['settings']}:")
    print(f"  Surprise SVDpp: test RMSE {r['surprise']['test_rmse']:.4f}, fit "
          f"{r['surprise']['fit_seconds']:.2f} s")
    o = r["ours"]
    print(f"  ours (svdpp):   test RMSE {o['test_rmse']:.4f} ({r['rmse_difference']:+.4f}), "
          f"epochs {o['trained_seconds']:.2f} s incl. compile ({r['speedup_trained']:.1f}x), "
          f"steady {o['steady_epochs_seconds']:.2f} s ({r['speedup_steady']:.1f}x), loop wall "
          f"{o['loop_wall_seconds']:.2f} s ({r['speedup_loop_wall']:.1f}x)", flush=True)
  if "scale" in _PARTS.value:
    results["scale"] = scale(out, _SCALE.value, _CASES.value)
  if "drift" in _PARTS.value:
    results["drift"] = drift(out, _DRIFT_RATINGS.value, _DRIFT.value)
  path = out / f"svdpp_benchmark_{'_'.join(_PARTS.value)}.json"
  path.write_text(json.dumps(results, indent=2) + "\n")
  print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
