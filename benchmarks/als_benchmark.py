"""ALS benchmark (issue 14): our JAX ALS against implicit's CPU ALS, per iteration and accuracy.

  python benchmarks/als_benchmark.py --out=bench_out/als                 # 1m and 10m
  python benchmarks/als_benchmark.py --sizes=1m --repeats=1              # quick, ~2 min
  python benchmarks/als_benchmark.py --cpu_devices=2                    # both cores

On the synthetic stores of benchmarks/baselines_benchmark.py (same shapes, same 90/10 random
split; built into --out/stores once), at equal factors / iterations / regularization / alpha:
  implicit_als  implicit 0.7's ALS (CG, 3 steps), BLAS limited to 1 thread as in our baseline
  jax_ials      our JaxIALS with confidence="linear" (implicit's c = alpha r): the same model
  jax_als       our explicit WR-ALS (CG, 3 steps; lambda --explicit_reg), scored by RMSE
  jax_als_exact the explicit WR-ALS with exact solves (sizes --exact_sizes), its accuracy bar
Seconds per iteration are the fit's own per-iteration wall and process CPU times (implicit's
callback; ours from iteration_seconds), jit compile excluded and reported separately.
implicit and jax_ials fits alternate --repeats times (the machine may be shared); the load
average before each fit and the process CPU seconds per wall second of each fit (cores used)
are recorded. Accuracy: recall@20 / ndcg@20 of evaluator.evaluate (relevant = test rating
>= 4), RMSE for jax_als.
Writes --out/als_result_<N>dev.json and .md (N: JAX devices).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

# As benchmarks/baselines_benchmark.py (its module defines flags of the same names, so the
# shapes are repeated here): name: (n_users, n_items, target n_ratings).
SIZES = {"100k": (1_000, 1_700, 100_000), "1m": (6_000, 3_700, 1_000_000),
         "10m": (70_000, 10_000, 10_000_000)}

_SIZES = flags.DEFINE_list("sizes", ["1m", "10m"], f"Sizes, of {list(SIZES)}.")
_OUT = flags.DEFINE_string("out", "bench_out/als", "Folder for stores and results.")
_FACTORS = flags.DEFINE_integer("factors", 64, "Factors (compare's implicit_als: 64).")
_ITERATIONS = flags.DEFINE_integer("iterations", 15, "ALS iterations (compare's: 15).")
_REG = flags.DEFINE_float("regularization", 0.05, "iALS regularization (compare's: 0.05).")
_ALPHA = flags.DEFINE_float("alpha", 2.0, "iALS alpha (compare's: 2.0).")
_EXPLICIT_REG = flags.DEFINE_float("explicit_reg", 0.1, "WR-ALS lambda (compare's jax_als).")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Alternating implicit / jax_ials fits per size.")
_EXACT_SIZES = flags.DEFINE_list("exact_sizes", ["1m"], "Sizes that also fit jax_als_exact.")
_RANK_SIZES = flags.DEFINE_list("rank_sizes", ["1m", "10m"], "Sizes with ranking metrics.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "> 0: run JAX on this many CPU devices (XLA_FLAGS, set before jax is "
    "imported); our ALS spreads its chunks over them, one core each. 0: as the environment.")

_CHUNK = flags.DEFINE_integer(
    "chunk", 0, "> 0: entries per chunk of our half-sweep (JaxALS / JaxIALS chunk); 0: their "
    "default.")

_KS = (10, 20)


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _model(name: str):
  from netrec_jax.baselines.implicit_models import ImplicitRecommender
  from netrec_jax.baselines.jax_als import JaxALS, JaxIALS
  common = dict(factors=_FACTORS.value, iterations=_ITERATIONS.value)
  if name == "implicit_als":
    return ImplicitRecommender("als", regularization=_REG.value, alpha=_ALPHA.value, seed=0,
                               name=name, **common)
  if _CHUNK.value > 0:
    common["chunk"] = _CHUNK.value
  if name == "jax_ials":
    return JaxIALS(regularization=_REG.value, alpha=_ALPHA.value, confidence="linear", seed=0,
                   name=name, **common)
  return JaxALS(reg=_EXPLICIT_REG.value, cg_steps=0 if name == "jax_als_exact" else 3, name=name,
                **common)


def fit_one(name: str, store, train_rows) -> tuple[Any, dict[str, Any]]:
  """Fits `name`; returns the model and its timings."""
  model = _model(name)
  load = os.getloadavg()[0]
  cpu, t0 = _cpu_seconds(), time.perf_counter()
  model.fit(store, train_rows)
  wall = time.perf_counter() - t0
  seconds, cpu_seconds = list(model.iteration_seconds), list(model.iteration_cpu_seconds)
  row = {"model": name, "load_average_before": load, "fit_seconds": wall,
         "cores_used": (_cpu_seconds() - cpu) / wall, "iteration_seconds": seconds,
         "iteration_cpu_seconds": cpu_seconds,
         "median_iteration_seconds": float(np.median(seconds)),
         "median_iteration_cpu_seconds": float(np.median(cpu_seconds)),
         "compile_seconds": getattr(model, "compile_seconds", None),
         "setup_seconds": getattr(model, "setup_seconds", None)}
  print(f"  {name}: {row['median_iteration_seconds']:.3f} s/iteration (median of {len(seconds)}; "
        f"CPU {row['median_iteration_cpu_seconds']:.3f} s), fit {wall:.1f} s, compile "
        f"{row['compile_seconds'] or 0:.1f} s, load {load:.1f}, cores {row['cores_used']:.2f}",
        flush=True)
  return model, row


def data_config(size: str, out: Path):
  """baselines_benchmark's data and split at `size` (the same store key, so the same store)."""
  from experiments import quickstart
  n_users, n_items, n_ratings = SIZES[size]
  config = quickstart.get_config()
  config.data.source = "synthetic"
  config.data.synthetic = dict(n_users=n_users, n_items=n_items, n_ratings=n_ratings, rank=8,
                               seed=0)
  config.data.min_user_ratings = 0
  config.data.store_root = str(out / "stores")
  config.split.kind = "random"
  config.split.test_fraction = 0.1
  config.split.valid_fraction = 0.0
  config.split.seed = 0
  return config


def run_size(size: str, out: Path) -> dict[str, Any]:
  from netrec_jax.data import datasets
  from netrec_jax.eval import evaluator
  config = data_config(size, out)
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  data = evaluator.prepare(store, split, relevance_threshold=4.0)
  print(f"{size}: {store.n_ratings:,} ratings ({len(data.train_rows):,} train), "
        f"{store.n_users:,} users x {store.n_items:,} items", flush=True)
  fits, models = [], {}
  order = ["implicit_als", "jax_ials"]
  for repeat in range(_REPEATS.value):
    for name in order if repeat % 2 == 0 else order[::-1]:
      model, row = fit_one(name, store, data.train_rows)
      row["repeat"] = repeat
      fits.append(row)
      models.setdefault(name, model)
  for name in ["jax_als"] + (["jax_als_exact"] if size in _EXACT_SIZES.value else []):
    model, row = fit_one(name, store, data.train_rows)
    fits.append(row)
    models[name] = model
  accuracy = {}
  for name, model in models.items():
    t0 = time.perf_counter()
    result = evaluator.evaluate(model, data, ks=_KS, ranking=size in _RANK_SIZES.value)
    accuracy[name] = {"rmse": result["rating"].get("rmse"),
                      **{k: v for k, v in result.get("ranking", {}).items()
                         if k in ("recall@20", "ndcg@20", "recall@10", "ndcg@10")},
                      "evaluate_seconds": time.perf_counter() - t0}
    print(f"  {name}: {accuracy[name]}", flush=True)
  summary = {}
  for name in models:
    mine = [f for f in fits if f["model"] == name]
    seconds = [s for f in mine for s in f["iteration_seconds"]]
    cpu = [s for f in mine for s in f["iteration_cpu_seconds"]]
    summary[name] = {"median_iteration_seconds": float(np.median(seconds)),
                     "min_iteration_seconds": float(np.min(seconds)),
                     "median_iteration_cpu_seconds": float(np.median(cpu)),
                     "compile_seconds": mine[0]["compile_seconds"],
                     "setup_seconds": mine[0]["setup_seconds"],
                     "load_average_before": [f["load_average_before"] for f in mine]}
  base = summary["implicit_als"]
  for s in summary.values():
    s["ratio_to_implicit"] = s["median_iteration_seconds"] / base["median_iteration_seconds"]
    s["cpu_ratio_to_implicit"] = (s["median_iteration_cpu_seconds"] /
                                  base["median_iteration_cpu_seconds"])
  return {"size": size, "n_ratings": store.n_ratings, "n_train": len(data.train_rows),
          "n_users": store.n_users, "n_items": store.n_items, "split": split.name,
          "fits": fits, "summary": summary, "accuracy": accuracy}


def markdown(results: list[dict[str, Any]]) -> str:
  lines = ["| size | model | wall s / iteration (median) | / implicit | CPU s / iteration "
           "| / implicit | compile s | recall@20 | ndcg@20 | RMSE | load before fits |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
  for r in results:
    for name, s in r["summary"].items():
      acc = r["accuracy"][name]

      def fmt(x, spec=".4f"):
        return "n/a" if x is None else format(x, spec)

      load = ", ".join(f"{x:.1f}" for x in s["load_average_before"])
      lines.append(f"| {r['size']} | {name} | {s['median_iteration_seconds']:.3f} "
                   f"| {s['ratio_to_implicit']:.2f}x | {s['median_iteration_cpu_seconds']:.3f} "
                   f"| {s['cpu_ratio_to_implicit']:.2f}x | {fmt(s['compile_seconds'], '.1f')} "
                   f"| {fmt(acc.get('recall@20'))} | {fmt(acc.get('ndcg@20'))} "
                   f"| {fmt(acc.get('rmse'))} | {load} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  unknown = [s for s in _SIZES.value if s not in SIZES]
  if unknown:
    raise app.UsageError(f"unknown sizes {unknown}; expected {list(SIZES)}")
  if _CPU_DEVICES.value > 0:
    if "jax" in sys.modules:
      raise app.UsageError("--cpu_devices must be set before jax is imported")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                               f"device_count={_CPU_DEVICES.value}").strip()
  import jax
  out = Path(_OUT.value).resolve()
  out.mkdir(parents=True, exist_ok=True)
  machine = {"cores": os.cpu_count(), "load_average_at_start": os.getloadavg()[0],
             "command": " ".join(sys.argv), "jax_devices": [str(d) for d in jax.devices()]}
  print(f"JAX devices: {machine['jax_devices']}", flush=True)
  results = []
  stem = f"als_result_{len(jax.devices())}dev"
  for size in _SIZES.value:
    results.append(run_size(size, out))
    (out / f"{stem}.json").write_text(json.dumps({"machine": machine, "results": results},
                                                 indent=2, default=float))
  table = markdown(results)
  (out / f"{stem}.md").write_text(
      f"# ALS vs implicit ({machine['cores']} cores, {len(machine['jax_devices'])} JAX devices, "
      f"load {machine['load_average_at_start']:.1f} at start)\n\n`{machine['command']}`\n\n"
      + table)
  print()
  print(table)


if __name__ == "__main__":
  app.run(main)
