"""Baselines benchmark: fit time and peak memory of the baselines against our JAX MF.

  python benchmarks/baselines_benchmark.py --out=bench_out/baselines
  python benchmarks/baselines_benchmark.py --sizes=100k --rank_sizes=100k  # quick, ~2 min

In one run on this machine, for each size of --sizes and each model of --models:
  surprise_svd   Surprise SVD with its defaults (100 factors, 20 epochs), fed from the store
                 (baselines/surprise_models.py; its memory guard may refuse a size);
  implicit_als   implicit's ALS, 64 factors, 15 iterations (baselines/implicit_models.py);
  jax_als        our explicit WR-ALS in JAX, 64 factors, 15 iterations (baselines/jax_als.py);
  jax_mf         our biased MF through loop.train_and_evaluate: the quickstart config
                 (embed_dim 32, row-sparse Adagrad) with batch 8192, --epochs epochs, early
                 stopping off; its fit time is the whole call (setup, jit compilation, epochs,
                 checkpoints, the loop's final evaluation).
The settings of the three baselines are compare.BASELINES, so this times what compare runs.

Every (size, model) runs in its own child process (this script with --child), which opens the
store, loads the split, fits, then reads its peak RSS (VmHWM) before evaluating: the peak covers
the interpreter, the imports, the store pages touched and the fit, and nothing of the other
models. The parent kills a child after --timeout seconds ("timeout") and reports a child killed
by SIGKILL, naming the OOM killer when the memory cgroup counted a kill. Test RMSE comes from
evaluator.evaluate (predictions clipped to 1..5) on the same split for every model: a seeded
random 90/10 split of the synthetic store (no validation part; protocol random_90_10_seed0).

For --rank_models on the --rank_sizes sets, the child also times evaluator.evaluate's ranking
over the full catalog for every test user with a relevant (>= 4 stars) test rating, with the
compare defaults (ks 5, 10, 20; 128 users a batch); its peak RSS is measured after resetting
VmHWM (/proc/self/clear_refs), so it is the evaluation's own.

The synthetic stores (netrec_jax.data.synthetic, Netflix-like skew, no user filter) are built
into --out/stores once and reused; their shapes follow MovieLens 100K / 1M / 10M:
  100k: 1,000 users x 1,700 items   1m: 6,000 x 3,700   10m: 70,000 x 10,000.
Writes --out/baselines_result.json and baselines_result.md; each child's log is in
--out/logs. The machine may be shared: the load average before each child is recorded.
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

MODELS = ("jax_mf", "surprise_svd", "implicit_als", "jax_als")
# name: (n_users, n_items, target n_ratings); density like MovieLens 100K, 1M and 10M.
SIZES = {"100k": (1_000, 1_700, 100_000), "1m": (6_000, 3_700, 1_000_000),
         "10m": (70_000, 10_000, 10_000_000)}

_SIZES = flags.DEFINE_list("sizes", ["100k", "1m", "10m"], f"Sizes to run, of {list(SIZES)}.")
_MODELS = flags.DEFINE_list("models", list(MODELS), f"Models to run, of {list(MODELS)}.")
_OUT = flags.DEFINE_string("out", "bench_out/baselines", "Folder for stores, runs and results.")
_TIMEOUT = flags.DEFINE_integer("timeout", 900, "Seconds before a child (one fit) is killed.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "jax_mf: training epochs (fixed, no early stop).")
_RANK_SIZES = flags.DEFINE_list("rank_sizes", ["1m"], "Sizes whose fits also time the "
                                "full-catalog ranking evaluation (empty: none).")
_RANK_MODELS = flags.DEFINE_list("rank_models", ["jax_mf", "implicit_als"],
                                 "Models whose full-catalog ranking evaluation is timed.")
_CHILD = flags.DEFINE_string("child", "", "Internal: JSON spec file of one child run.")

_RELEVANCE = 4.0  # compare defaults (configs.base_config().compare)
_KS = (5, 10, 20)
_USER_BATCH = 128


# ------------------------------------------------------------------------------ helpers
def _status_gb(field: str) -> float:
  """VmHWM (peak RSS) or VmRSS of this process, in GiB. ru_maxrss would survive exec."""
  with open("/proc/self/status") as f:
    line = next(x for x in f if x.startswith(field + ":"))
  return int(line.split()[1]) / 2**20


def _reset_peak() -> bool:
  """Resets VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _oom_kills() -> int | None:
  """OOM kills counted by this container's memory cgroup (v2 or v1), None if unreadable."""
  for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
    try:
      with open(path) as f:
        for line in f:
          if line.startswith("oom_kill "):
            return int(line.split()[1])
    except OSError:
      continue
  return None


def mf_config(size: str, out: Path, epochs: int):
  """The quickstart config at `size`: the data and split every child uses, and jax_mf's run."""
  from experiments import quickstart
  n_users, n_items, n_ratings = SIZES[size]
  config = quickstart.get_config()
  config.name = f"baselines_benchmark_{size}"
  config.eda = False
  config.data.source = "synthetic"
  config.data.synthetic = dict(n_users=n_users, n_items=n_items, n_ratings=n_ratings, rank=8,
                               seed=0)
  config.data.min_user_ratings = 0  # keep every generated rating: the size is the size
  config.data.store_root = str(out / "stores")
  config.split.kind = "random"
  config.split.test_fraction = 0.1
  config.split.valid_fraction = 0.0  # 90/10: every model fits the same 90%
  config.split.seed = 0
  config.train.batch_size = 8192
  config.train.epochs = epochs
  config.train.early_stopping_patience = 0
  config.train.resume = False
  config.train.log_every_s = 60.0
  return config


# -------------------------------------------------------------------------------- child
def _fit(spec: dict[str, Any], store, split, result: dict[str, Any]):
  """Fits spec's model on the training rows; returns the fitted Recommender."""
  import ml_collections
  model, params = spec["model"], spec["params"]
  train_rows = split.rows("train")
  if model == "jax_mf":
    from netrec_jax.train import loop
    config = ml_collections.ConfigDict(spec["config"])
    workdir = Path(spec["workdir"])
    shutil.rmtree(workdir, ignore_errors=True)
    t0 = time.time()
    final = loop.train_and_evaluate(config, workdir)
    result["fit_seconds"] = time.time() - t0
    result["train_loop_seconds"] = final["train_seconds"]
    result["trainer_test_rmse"] = final["test"].get("rmse")
    result["peak_rss_gb"] = _status_gb("VmHWM")
    return loop.load_recommender(workdir, config)
  t0 = time.time()
  if model == "surprise_svd":
    from netrec_jax.baselines import surprise_models
    fitted = surprise_models.SurpriseRecommender("SVD", params, name=model)
    fitted.fit(store, train_rows)
  elif model == "implicit_als":
    from netrec_jax.baselines.implicit_models import ImplicitRecommender
    fitted = ImplicitRecommender("als", name=model, **params).fit(store, train_rows)
  elif model == "jax_als":
    from netrec_jax.baselines.jax_als import JaxALS
    fitted = JaxALS(name=model, **params).fit(store, train_rows)
  else:
    raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
  result["fit_seconds"] = time.time() - t0
  result["peak_rss_gb"] = _status_gb("VmHWM")
  return fitted


def child_main(spec_path: str) -> None:
  """One (size, model): fit, peak RSS, then test RMSE and optionally the ranking time."""
  import ml_collections
  from netrec_jax.data import datasets
  spec = json.loads(Path(spec_path).read_text())
  result_path = Path(spec["result"])

  def write(**status):
    result.update(status)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=float))
    os.replace(tmp, result_path)

  config = ml_collections.ConfigDict(spec["config"])
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  result: dict[str, Any] = {"rss_before_fit_gb": _status_gb("VmRSS")}
  write(status="fitting")
  try:
    model = _fit(spec, store, split, result)
  except MemoryError as e:
    if type(e).__name__ == "TooLargeError":  # Surprise's guard refused before building anything
      write(status="refused", reason=str(e), peak_rss_gb=_status_gb("VmHWM"))
    else:
      write(status=f"out of memory (MemoryError: {e})", peak_rss_gb=_status_gb("VmHWM"))
    return
  write(status="fitted")  # a timeout during evaluation keeps the fit's numbers

  from netrec_jax.eval import evaluator
  data = evaluator.prepare(store, split, relevance_threshold=_RELEVANCE)
  rated = evaluator.evaluate(model, data, ranking=False)
  result["test_rmse"] = rated["rating"].get("rmse")
  result["rating_note"] = rated["rating"].get("reason", "")
  write(status="evaluated")
  if spec["rank"]:
    result["rank_peak_reset"] = _reset_peak()
    ranked = evaluator.evaluate(model, data, ks=_KS, user_batch=_USER_BATCH)
    result["ranking_seconds"] = ranked["ranking_seconds"]
    result["ranking_peak_rss_gb"] = _status_gb("VmHWM")
    result["ranking"] = {k: ranked["ranking"][k] for k in
                         ("n_users", "ndcg@10", "recall@10", "protocol", "relevance")}
    result["ranking"]["n_items"] = store.n_items
    write(status="ranked")


# ------------------------------------------------------------------------------- parent
def run_child(spec: dict[str, Any], out: Path, timeout: int) -> dict[str, Any]:
  """Runs one child, returns its result or what happened to it."""
  tag = f"{spec['size']}_{spec['model']}"
  spec["result"] = str(out / "children" / f"{tag}.json")
  spec_path = out / "children" / f"{tag}.spec.json"
  spec_path.write_text(json.dumps(spec, indent=2))
  Path(spec["result"]).unlink(missing_ok=True)
  log_path = out / "logs" / f"{tag}.log"
  env = dict(os.environ, PYTHONPATH=str(_ROOT))
  oom_before = _oom_kills()
  load = os.getloadavg()[0]
  t0 = time.time()
  with open(log_path, "w") as log:
    # A session of its own, so a timeout kills the child and anything it started.
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), f"--child={spec_path}"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(_ROOT),
                            start_new_session=True)
    try:
      returncode, timed_out = proc.wait(timeout=timeout), False
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      returncode, timed_out = proc.wait(), True
  wall = time.time() - t0
  result = {"size": spec["size"], "model": spec["model"], "child_wall_seconds": wall,
            "load_average_before": load, "returncode": returncode, "log": str(log_path)}
  if Path(spec["result"]).is_file():
    result.update(json.loads(Path(spec["result"]).read_text()))
  if timed_out:
    result["status"] = (f"timeout after {timeout}s (fit not finished)"
                        if result.get("status") in (None, "fitting")
                        else f"{result['status']}, then timeout after {timeout}s")
  elif returncode == -signal.SIGKILL:
    oom_after = _oom_kills()
    killer = ("the OOM killer" if oom_before is not None and oom_after is not None and
              oom_after > oom_before else "SIGKILL (OOM killer?)")
    result["status"] = f"killed by {killer}"
  elif returncode != 0:
    tail = log_path.read_text().strip().splitlines()[-1:] or ["?"]
    result["status"] = f"failed (exit {returncode}): {tail[0][:200]}"
  return result


def _fmt(x, spec: str = ".2f") -> str:
  return "n/a" if x is None else format(x, spec)


def markdown(results: list[dict[str, Any]], sizes: dict[str, dict[str, Any]]) -> str:
  mf_fit = {r["size"]: r.get("fit_seconds") for r in results if r["model"] == "jax_mf"}
  lines = ["| size | ratings (train / test) | model | fit s | fit / jax_mf | peak RSS GB "
           "| RSS before fit GB | test RMSE | note |",
           "|---|---|---|---:|---:|---:|---:|---:|---|"]
  for r in results:
    info = sizes[r["size"]]
    fit = r.get("fit_seconds")
    ratio = fit / mf_fit[r["size"]] if fit and mf_fit.get(r["size"]) else None
    status = r.get("status", "")
    note = ""
    if status == "refused":
      note = f"refused: {r['reason']}"
    elif status not in ("evaluated", "ranked"):
      note = status
    elif r["model"] == "jax_mf":
      note = (f"{_EPOCHS.value} epochs; train loop {r['train_loop_seconds']:.1f}s of the fit, "
              "the rest setup, compile, checkpoints, final eval")
    elif r.get("rating_note"):
      note = "RMSE not applicable (scores are preferences)"
    rmse = r.get("test_rmse")
    lines.append(
        f"| {r['size']} | {info['n_ratings']:,} ({info['n_train']:,} / {info['n_test']:,}) "
        f"| {r['model']} | {_fmt(fit, '.1f')} | {_fmt(ratio, '.2f')}"
        f"{'x' if ratio is not None else ''} | {_fmt(r.get('peak_rss_gb'), '.3f')} "
        f"| {_fmt(r.get('rss_before_fit_gb'), '.3f')} | {_fmt(rmse, '.4f')} | {note} |")
  ranked = [r for r in results if "ranking_seconds" in r]
  if ranked:
    lines += ["", "Full-catalog ranking evaluation (evaluator.evaluate, ks 5/10/20, "
              f"{_USER_BATCH} users a batch, relevant = test rating >= {_RELEVANCE:g}):", "",
              "| size | model | users ranked x items | ranking s | peak RSS GB (evaluation) "
              "| ndcg@10 | recall@10 |", "|---|---|---|---:|---:|---:|---:|"]
    for r in ranked:
      k = r["ranking"]
      peak = r["ranking_peak_rss_gb"] if r.get("rank_peak_reset") else None
      lines.append(f"| {r['size']} | {r['model']} | {k['n_users']:,} x {k['n_items']:,} "
                   f"| {r['ranking_seconds']:.1f} | {_fmt(peak, '.3f')} | {k['ndcg@10']:.4f} "
                   f"| {k['recall@10']:.4f} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  if _CHILD.value:
    child_main(_CHILD.value)
    return
  from netrec_jax.data import datasets
  from netrec_jax.compare import BASELINES

  unknown = [s for s in _SIZES.value if s not in SIZES] + [
      m for m in _MODELS.value if m not in MODELS]
  if unknown:
    raise app.UsageError(f"unknown sizes/models {unknown}; sizes {list(SIZES)}, models "
                         f"{list(MODELS)}")
  out = Path(_OUT.value).resolve()
  for sub in ("children", "logs", "runs"):
    (out / sub).mkdir(parents=True, exist_ok=True)
  machine = {"cores": os.cpu_count(),
             "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
             "load_average_at_start": os.getloadavg()[0]}
  results, sizes = [], {}
  for size in _SIZES.value:
    config = mf_config(size, out, _EPOCHS.value)
    t0 = time.time()
    store = datasets.open_or_build(config.data)
    split = datasets.make_split(store, config.split)  # saved with the store: children load it
    sizes[size] = {"n_users": store.n_users, "n_items": store.n_items,
                   "n_ratings": store.n_ratings, "n_train": len(split.rows("train")),
                   "n_test": len(split.rows("test")), "store": str(store.path),
                   "store_fingerprint": store.fingerprint, "split": split.name,
                   "store_seconds": time.time() - t0}
    print(f"{size}: {store.n_ratings:,} ratings, {store.n_users:,} users x {store.n_items:,} "
          f"items, split {split.name} ({time.time() - t0:.1f}s)", flush=True)
    del store, split
    for model in _MODELS.value:
      spec = {"size": size, "model": model, "config": config.to_dict(),
              "params": {} if model == "jax_mf" else BASELINES[model][2],
              "workdir": str(out / "runs" / f"{size}_{model}"),
              "rank": size in _RANK_SIZES.value and model in _RANK_MODELS.value}
      r = run_child(spec, out, _TIMEOUT.value)
      results.append(r)
      print(f"  {model}: {r.get('status')}, fit s {_fmt(r.get('fit_seconds'), '.1f')}, peak GB "
            f"{_fmt(r.get('peak_rss_gb'), '.3f')}, RMSE {_fmt(r.get('test_rmse'), '.4f')}"
            + (f", ranking {r['ranking_seconds']:.1f}s" if "ranking_seconds" in r else ""),
            flush=True)
      (out / "baselines_result.json").write_text(json.dumps(
          {"machine": machine, "sizes": sizes, "results": results}, indent=2, default=float))

  table = markdown(results, sizes)
  header = (f"# Baselines benchmark ({machine['cores']} cores, {machine['memory_gib']:.0f} GiB; "
            f"load average {machine['load_average_at_start']:.1f} at start)\n\n"
            f"Peak RSS is each child's VmHWM after its fit (interpreter, imports, store pages "
            "and fit); fit / jax_mf is fit time over jax_mf's at the same size.\n\n")
  (out / "baselines_result.md").write_text(header + table)
  print()
  print(table)


if __name__ == "__main__":
  app.run(main)
