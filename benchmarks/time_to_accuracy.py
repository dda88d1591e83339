"""Time to accuracy against Surprise SVD (issue 14): test RMSE against wall-clock seconds.

  python benchmarks/time_to_accuracy.py --out=bench_out/tta                   # 1m, 10m
  python benchmarks/time_to_accuracy.py --sizes=ml100k --out=bench_out/tta    # MovieLens 100K
  python benchmarks/time_to_accuracy.py --sizes=1m --part=valid --mf=batch_size=32768  # tuning

Target: our MF reaches Surprise SVD's final test RMSE (Surprise's defaults, same split, same
evaluator) in at most 1/3 of Surprise's fit time and with at most 1/3 of its peak RSS.

Data: the synthetic stores of benchmarks/baselines_benchmark.py ("1m": 6,000 x 3,700, 1M
ratings; "10m": 70,000 x 10,000, 10M; built into --out/stores once), split random_90_10_seed0,
or "ml100k": MovieLens 100K's official u1 fold (protocol ml100k_u1, $NETREC_DATA_DIR).

Each model runs in its own child process (this script with --child), so each peak RSS
(VmHWM after the fit) is that model's own: interpreter, imports, store pages and fit.
  surprise_svd  Surprise SVD with its defaults (100 factors, 20 epochs, lr 0.005, reg 0.02,
                random_state 0), fed from the store (baselines/surprise_models.py). Surprise
                cannot report per epoch, so the child first times the default 20-epoch fit
                (Trainset build + fit: the fit time and the peak RSS), then refits on the same
                Trainset with n_epochs = each of --svd_epochs. Surprise's SGD is deterministic
                with random_state (same init, same rating order, constant lr), so the model
                after k epochs of the 20-epoch fit is the k-epoch fit; the curve's x for k is
                the Trainset build time plus the k-epoch fit's own time (the time it takes to
                get that model), its y that model's test RMSE.
  mf            our biased MF through the one training loop, loop.train_and_evaluate, on the
                same training rows (no validation rows: the loop validates on nothing and
                checkpoints every epoch), a fixed number of epochs, no early stopping. After
                each epoch the loop builds the epoch's recommender; this script wraps the
                family's recommender() to also score the curve part's rows (test, or valid
                with --part=valid) with evaluator.rating_metrics_on (the evaluator's clipped
                RMSE) and subtracts the seconds of that scoring from the clock. So the curve's
                x is the loop's own wall time to the end of that epoch: setup, jit compile,
                the epochs, the (empty) validations and checkpoints so far. The fit time is the
                whole train_and_evaluate call less the scoring; it is called with parts=(),
                so the loop restores its best checkpoint but runs no final evaluation (a fit
                has none; Surprise's neither). With --unscored (default) MF is fitted once more
                without the scoring: that child's peak RSS is the fit's own and is what the
                memory ratio uses (the scored run's peak is kept beside it).
MF's settings: TUNED below, chosen with --part=valid (never on test), overridable with
--mf=key=value,... (keys of config.train / config.optimizer / config.model by leaf name).

--part=valid (tuning): the split keeps 10% of the training rows as validation rows (as the
tune mode does), both models fit on the rest, and both curves are validation RMSE; the test
rows are not read.

Writes --out/tta_<size>_<part>.json (both curves, fit times, peaks, ratios, load averages) and
--out/tta_<part>.png (one panel per size: RMSE against seconds, Surprise's final RMSE as a
horizontal line, 1/3 of its fit time as a vertical one); prints the ratios.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from absl import app, flags

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

# As benchmarks/baselines_benchmark.py: name: (n_users, n_items, target n_ratings).
SIZES = {"1m": (6_000, 3_700, 1_000_000), "10m": (70_000, 10_000, 10_000_000)}
REAL = ("ml100k",)
MODELS = ("surprise_svd", "mf")
SVD_DEFAULTS = {"random_state": 0}  # compare.BASELINES["surprise_svd"]: Surprise's defaults
SVD_EPOCHS = 20  # Surprise SVD's default n_epochs
# MF settings for this benchmark, chosen on the validation rows (--part=valid); see
# BUILD_NOTES.md "Time to accuracy against Surprise SVD (issue 14)".
TUNED: dict[str, dict[str, Any]] = {
    # The quickstart's (baselines_benchmark's jax_mf): the keys --mf may override.
    "default": {"embed_dim": 32, "sparse": "adagrad", "sparse_lr": 0.05, "embed_l2": 0.3,
                "batch_size": 8192, "epochs": 5, "input_pipeline": "host"},
    # Valid RMSE 0.8673 at epoch 3 (Surprise 0.8689); lr 0.1 / 0.2 overfit after 1 epoch.
    "1m": {"embed_dim": 32, "sparse": "adagrad", "sparse_lr": 0.05, "embed_l2": 0.3,
           "batch_size": 32768, "epochs": 3, "input_pipeline": "host"},
    # Valid RMSE 0.8392 at epoch 3 (Surprise 0.8467; lr 0.05: 0.8441 at epoch 5, 0.1: 0.8409
    # at 3); the device pipeline was not clearly faster on 2 busy cores and held ~0.1 GB more.
    "10m": {"embed_dim": 32, "sparse": "adagrad", "sparse_lr": 0.2, "embed_l2": 0.3,
            "batch_size": 32768, "epochs": 3, "input_pipeline": "host"},
    # experiments/mf_ml100k.py's settings; valid RMSE 0.9120 at epoch 7 (Surprise 0.9409).
    "ml100k": {"embed_dim": 64, "sparse": "adagrad", "sparse_lr": 0.05, "embed_l2": 0.3,
               "batch_size": 1024, "epochs": 7, "input_pipeline": "host"},
}

_SIZES = flags.DEFINE_list("sizes", ["1m", "10m"], f"Sizes, of {list(SIZES) + list(REAL)}.")
_MODELS = flags.DEFINE_list("models", list(MODELS), f"Models, of {list(MODELS)}.")
_OUT = flags.DEFINE_string("out", "bench_out/tta", "Folder for stores, runs and results.")
_PART = flags.DEFINE_enum("part", "test", ["test", "valid"],
                          "Rows the curves score: test (the benchmark) or valid (tuning).")
_MF = flags.DEFINE_list("mf", [], "MF overrides key=value (leaf names, e.g. batch_size=32768).")
_SVD_EPOCHS = flags.DEFINE_list("svd_epochs", ["1", "2", "3", "5", "10", "15"],
                                "Surprise refits (n_epochs) for its curve; 20 is the timed fit.")
_TIMEOUT = flags.DEFINE_integer("timeout", 1200, "Seconds before a child is killed.")
_UNSCORED = flags.DEFINE_bool(
    "unscored", True, "Also run MF once more without the curve's per-epoch scoring: its peak RSS "
    "(and fit time) are the fit's own, what the memory ratio uses.")
_TAG = flags.DEFINE_string("tag", "", "Suffix of the result files (e.g. a tuning trial).")
_CHILD = flags.DEFINE_string("child", "", "Internal: JSON spec file of one child run.")
_MMAP_THRESHOLD = flags.DEFINE_integer(
    "malloc_mmap_threshold", 0, "> 0: run every child (both models alike) with glibc's "
    "MALLOC_MMAP_THRESHOLD_ at this many bytes: buffers at least that large are mmapped and "
    "given back when freed, instead of glibc's dynamic threshold keeping freed numpy buffers "
    "in the heap. 0: glibc's default.")


_VALID_FRACTION = 0.1  # --part=valid: of the training rows, as the tune mode's splits


def _status_gb(field: str) -> float:
  """VmHWM (peak RSS) or VmRSS of this process, in GiB."""
  with open("/proc/self/status") as f:
    line = next(x for x in f if x.startswith(field + ":"))
  return int(line.split()[1]) / 2**20


def mf_settings(size: str, overrides: list[str]) -> dict[str, Any]:
  settings = dict(TUNED.get(size, TUNED["default"]))
  for item in overrides:
    key, _, value = item.partition("=")
    if key not in TUNED["default"]:
      raise app.UsageError(f"--mf key {key!r}; expected one of {sorted(TUNED['default'])}")
    old = TUNED["default"][key]
    settings[key] = type(old)(value) if not isinstance(old, str) else value
  return settings


def make_config(size: str, out: Path, part: str, settings: dict[str, Any]):
  """The data, split and MF run of one size; both children read their data from it."""
  if size in REAL:
    from experiments import mf_ml100k
    config = mf_ml100k.get_config()
  else:
    from experiments import quickstart
    n_users, n_items, n_ratings = SIZES[size]
    config = quickstart.get_config()
    config.data.source = "synthetic"
    config.data.synthetic = dict(n_users=n_users, n_items=n_items, n_ratings=n_ratings, rank=8,
                                 seed=0)
    config.data.min_user_ratings = 0  # as baselines_benchmark: the size is the size
    config.data.store_root = str(out / "stores")
    config.split.kind = "random"
    config.split.test_fraction = 0.1
    config.split.seed = 0
  config.name = f"time_to_accuracy_{size}"
  config.eda = False
  config.compare.after_train = False
  config.split.valid_fraction = _VALID_FRACTION if part == "valid" else 0.0
  for key in ("embed_dim",):
    config.model[key] = settings[key]
  for key in ("sparse", "sparse_lr", "embed_l2"):
    config.optimizer[key] = settings[key]
  for key in ("batch_size", "epochs", "input_pipeline"):
    config.train[key] = settings[key]
  config.train.early_stopping_patience = 0
  config.train.eval_every = 1
  config.train.resume = False
  config.train.log_every_s = 600.0
  return config


# -------------------------------------------------------------------------------- curves
def first_reaching(curve: list[dict[str, float]], target: float) -> float | None:
  """Seconds of the first curve point whose RMSE is at or below target (None if none)."""
  hits = [p["seconds"] for p in sorted(curve, key=lambda p: p["seconds"])
          if p["rmse"] <= target]
  return hits[0] if hits else None


def summarize(svd: dict[str, Any], mf: dict[str, Any], unscored: dict[str, Any] | None = None
              ) -> dict[str, Any]:
  """The target's figures from both children's results; MF's peak RSS from `unscored` (the same
  fit without the per-epoch scoring of the curve) where given."""
  target, svd_fit = svd["final_rmse"], svd["fit_seconds"]
  reach = first_reaching(mf["curve"], target)
  peak = (unscored or mf)["peak_rss_gb"]
  return {"surprise_rmse": target, "surprise_fit_seconds": svd_fit,
          "mf_final_rmse": mf["final_rmse"], "mf_fit_seconds": mf["fit_seconds"],
          "mf_seconds_to_surprise_rmse": reach,
          "time_ratio": None if reach is None else reach / svd_fit,
          "fit_time_ratio": mf["fit_seconds"] / svd_fit,
          "mf_peak_rss_gb": peak, "mf_peak_rss_gb_scored_run": mf["peak_rss_gb"],
          "mf_unscored_fit_seconds": unscored["fit_seconds"] if unscored else None,
          "peak_rss_ratio": peak / svd["peak_rss_gb"],
          "time_target_met": reach is not None and reach <= svd_fit / 3,
          "memory_target_met": peak <= svd["peak_rss_gb"] / 3}


def child_env() -> dict[str, str]:
  """What every child's environment adds (--malloc_mmap_threshold)."""
  n = _MMAP_THRESHOLD.value
  return {"MALLOC_MMAP_THRESHOLD_": str(n)} if n > 0 else {}


# --------------------------------------------------------------------------------- child
def _surprise_child(spec, store, split, rows, result, write) -> None:
  import surprise
  from netrec_jax.baselines import surprise_models
  from netrec_jax.eval import evaluator
  train_rows = split.rows("train")
  rec = surprise_models.SurpriseRecommender("SVD", dict(SVD_DEFAULTS), name="surprise_svd")
  surprise_models.check_size(len(train_rows), "SVD")
  t0 = time.time()
  rec.trainset, rec.user_inner, rec.item_inner = surprise_models.build_trainset(store,
                                                                                train_rows)
  build = time.time() - t0
  rec.algo = surprise.SVD(**SVD_DEFAULTS)
  rec.algo.fit(rec.trainset)
  rec.n_items = store.n_items
  result.update(fit_seconds=time.time() - t0, trainset_seconds=build,
                peak_rss_gb=_status_gb("VmHWM"), n_epochs=SVD_EPOCHS)
  rmse = evaluator.rating_metrics_on(rec, store, rows)["rmse"]
  result.update(final_rmse=rmse, curve=[{"epoch": SVD_EPOCHS, "seconds": result["fit_seconds"],
                                         "rmse": rmse}])
  write(status="fitted")
  for k in sorted(int(e) for e in spec["svd_epochs"] if int(e) < SVD_EPOCHS):
    t0 = time.time()
    rec.algo = surprise.SVD(n_epochs=k, **SVD_DEFAULTS)
    rec.algo.fit(rec.trainset)
    seconds = build + time.time() - t0
    result["curve"].append({"epoch": k, "seconds": seconds,
                            "rmse": evaluator.rating_metrics_on(rec, store, rows)["rmse"]})
    write(status=f"refitted {k} epochs")
  result["curve"].sort(key=lambda p: p["epoch"])


def _mf_child(spec, config, result, write) -> None:
  from netrec_jax.data import datasets
  from netrec_jax.eval import evaluator
  from netrec_jax.train import family as family_lib
  from netrec_jax.train import loop
  fam = family_lib.family(config.model.name)
  build = fam.recommender
  clock = {"start": 0.0, "excluded": 0.0}
  curve: list[dict[str, float]] = []

  def recommender(setup, tree, which, meta):  # the loop's per-epoch recommender, also scored
    rec = build(setup, tree, which, meta)
    if which == "training":
      t0 = time.time()  # the loop's own store and split: this child opens no other before
      rmse = evaluator.rating_metrics_on(rec, setup.store, setup.split.rows(spec["part"]))["rmse"]
      curve.append({"epoch": meta["epoch"] + 1, "rmse": rmse,
                    "seconds": t0 - clock["start"] - clock["excluded"]})
      clock["excluded"] += time.time() - t0
    return rec

  if spec.get("score", True):
    fam.recommender = recommender  # an instance attribute of this child's FAMILY only
  workdir = Path(spec["workdir"])
  shutil.rmtree(workdir, ignore_errors=True)
  clock["start"] = time.time()
  # parts=(): the loop restores its best checkpoint but evaluates no part (its final ranking
  # evaluation is no part of a fit; Surprise's fit has none either).
  final = loop.train_and_evaluate(config, workdir, parts=())
  result.update(fit_seconds=time.time() - clock["start"] - clock["excluded"],
                peak_rss_gb=_status_gb("VmHWM"), curve=curve,
                scoring_seconds_excluded=clock["excluded"],
                trained_seconds=final.get("trained_seconds"))
  write(status="fitted")
  vars(fam).pop("recommender", None)
  # Cross-check: the run's best checkpoint (the last: no validation rows), as --mode=eval opens it.
  store = datasets.open_or_build(config.data)
  rows = datasets.make_split(store, config.split).rows(spec["part"])
  result["restored_rmse"] = evaluator.rating_metrics_on(loop.load_recommender(workdir), store,
                                                        rows)["rmse"]
  result["final_rmse"] = curve[-1]["rmse"] if curve else result["restored_rmse"]


def child_main(spec_path: str) -> None:
  import ml_collections
  from netrec_jax.data import datasets
  spec = json.loads(Path(spec_path).read_text())
  result_path = Path(spec["result"])
  result: dict[str, Any] = {}

  def write(**status):
    result.update(status)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=float))
    os.replace(tmp, result_path)

  config = ml_collections.ConfigDict(spec["config"])
  if spec["model"] == "surprise_svd":
    store = datasets.open_or_build(config.data)
    split = datasets.make_split(store, config.split)
    result["rss_before_fit_gb"] = _status_gb("VmRSS")
    write(status="fitting")
    _surprise_child(spec, store, split, split.rows(spec["part"]), result, write)
  else:  # the loop opens the store and split itself: a second copy here would count twice
    from netrec_jax.train import loop  # noqa: F401  (imports before the clock, as Surprise's)
    result["rss_before_fit_gb"] = _status_gb("VmRSS")
    write(status="fitting")
    _mf_child(spec, config, result, write)
  write(status="done")


# -------------------------------------------------------------------------------- parent
def run_child(spec: dict[str, Any], out: Path, timeout: int) -> dict[str, Any]:
  tag = f"{spec['size']}_{spec['part']}_{spec['model']}{spec.get('variant', '')}{_TAG.value}"
  spec["result"] = str(out / "children" / f"{tag}.json")
  spec_path = out / "children" / f"{tag}.spec.json"
  spec_path.write_text(json.dumps(spec, indent=2))
  Path(spec["result"]).unlink(missing_ok=True)
  log_path = out / "logs" / f"{tag}.log"
  load = os.getloadavg()
  t0 = time.time()
  with open(log_path, "w") as log:
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), f"--child={spec_path}"],
                            stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONPATH=str(_ROOT),
                                     **child_env()),
                            cwd=str(_ROOT),
                            start_new_session=True)
    try:
      returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      returncode = proc.wait()
  result = {"model": spec["model"], "child_wall_seconds": time.time() - t0,
            "load_average_before": load, "load_average_after": os.getloadavg(),
            "returncode": returncode, "log": str(log_path)}
  if Path(spec["result"]).is_file():
    result.update(json.loads(Path(spec["result"]).read_text()))
  if result.get("status") != "done":
    tail = log_path.read_text().strip().splitlines()[-1:] or ["?"]
    raise RuntimeError(f"{tag}: exit {returncode}, status {result.get('status')}: {tail[0]}")
  return result


def plot(results: dict[str, dict[str, Any]], part: str, path: Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  sizes = list(results)
  fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.2), squeeze=False)
  for ax, size in zip(axes[0], sizes):
    r = results[size]
    for model, style in (("surprise_svd", "o-"), ("mf", "s-")):
      if model in r:
        c = r[model]["curve"]
        peak = r.get(f"{model}_unscored", r[model])["peak_rss_gb"]
        ax.plot([p["seconds"] for p in c], [p["rmse"] for p in c], style, ms=3,
                label=f"{'Surprise SVD (defaults)' if model == 'surprise_svd' else 'our MF'}"
                      f": fit {r[model]['fit_seconds']:.1f}s, "
                      f"peak {peak:.2f} GB")
    if "surprise_svd" in r:
      s = r["surprise_svd"]
      ax.axhline(s["final_rmse"], color="gray", ls="--", lw=1,
                 label=f"Surprise final RMSE {s['final_rmse']:.4f}")
      ax.axvline(s["fit_seconds"] / 3, color="red", ls=":", lw=1,
                 label=f"1/3 of Surprise's fit ({s['fit_seconds'] / 3:.1f}s)")
    lo = min(p["rmse"] for m in MODELS if m in r for p in r[m]["curve"])
    hi = max(p["rmse"] for m in MODELS if m in r for p in r[m]["curve"][1:] or r[m]["curve"])
    ax.set_ylim(lo - 0.01, hi + 0.01)
    ax.set_xlabel("wall-clock seconds (load avg %.1f)" % r["load_average_1m"])
    ax.set_ylabel(f"{part} RMSE")
    ax.set_title(f"{size}: {r['split']['name']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  del argv
  if _CHILD.value:
    child_main(_CHILD.value)
    return
  from netrec_jax.data import datasets
  unknown = [s for s in _SIZES.value if s not in SIZES and s not in REAL] + [
      m for m in _MODELS.value if m not in MODELS]
  if unknown:
    raise app.UsageError(f"unknown sizes/models {unknown}")
  out = Path(_OUT.value).resolve()
  for sub in ("children", "logs", "runs"):
    (out / sub).mkdir(parents=True, exist_ok=True)
  part = _PART.value
  results: dict[str, dict[str, Any]] = {}
  for size in _SIZES.value:
    settings = mf_settings(size, _MF.value)
    config = make_config(size, out, part, settings)
    store = datasets.open_or_build(config.data)
    split = datasets.make_split(store, config.split)  # saved with the store: children load it
    r: dict[str, Any] = {"size": size, "part": part, "mf_settings": settings,
                         "split": {"name": split.name, "protocol": split.protocol,
                                   "n_train": len(split.rows("train")),
                                   "n_curve_rows": len(split.rows(part))},
                         "machine": {"cores": os.cpu_count()},
                         "child_env": child_env(),
                         "load_average_1m": os.getloadavg()[0]}
    del store, split
    for model in _MODELS.value:
      spec = {"size": size, "model": model, "part": part, "config": config.to_dict(),
              "svd_epochs": _SVD_EPOCHS.value,
              "workdir": str(out / "runs" / f"{size}_{part}_{model}{_TAG.value}")}
      runs = [(model, spec)]
      if model == "mf" and _UNSCORED.value:
        runs.append(("mf_unscored", dict(spec, score=False, variant="_unscored",
                                         workdir=spec["workdir"] + "_unscored")))
      for key, child_spec in runs:
        r[key] = run_child(child_spec, out, _TIMEOUT.value)
        m = r[key]
        print(f"{size} {key}: fit {m['fit_seconds']:.1f}s, peak {m['peak_rss_gb']:.3f} GB, "
              f"final {part} RMSE {m['final_rmse']:.4f}, load {m['load_average_before'][0]:.1f}",
              flush=True)
    if all(m in r for m in MODELS):
      r["summary"] = summarize(r["surprise_svd"], r["mf"], r.get("mf_unscored"))
      s = r["summary"]
      print(f"{size}: MF reaches Surprise's {s['surprise_rmse']:.4f} at "
            f"{s['mf_seconds_to_surprise_rmse']} s -> time ratio {s['time_ratio']} "
            f"(target <= 0.333: {s['time_target_met']}); peak RSS ratio "
            f"{s['peak_rss_ratio']:.3f} (target <= 0.333: {s['memory_target_met']})", flush=True)
    results[size] = r
    (out / f"tta_{size}_{part}{_TAG.value}.json").write_text(
        json.dumps(r, indent=2, default=float))
  plot(results, part, out / f"tta_{part}{_TAG.value}.png")
  print(f"wrote {out / f'tta_{part}{_TAG.value}.png'}")


if __name__ == "__main__":
  app.run(main)
