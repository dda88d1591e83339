"""EASE and iALS fitted at Netflix size on this machine: fit time and peak memory (issue 16).

  python benchmarks/netflix_scale_topn.py --out=bench_out/netflix_topn
  python benchmarks/netflix_scale_topn.py --n_users=50000 --n_ratings=5000000   # quick

A synthetic store of --n_users x --n_items with --n_ratings ratings (Netflix: 480,189 x 17,770,
100,480,507; built once into --out), split `random_90_10_seed0`; the training ratings are the
interactions (binary, as the closed-form family's default min_stars=0). Each model is fitted in
a child process of its own so that its peak RSS (VmHWM) is its own:
  ease          item Gram X^T X from the CSC, a block of 2,048 item columns at a time
                (models/ease.gram), then the Cholesky solve (models/ease.fit), l2 --ease_l2
  jax_ials      our JaxIALS, --factors, --ials_iterations, CG 3 steps, alpha / reg as compare
  implicit_als  implicit's ALS at the same settings (--with_implicit), for the ratio
Times: building the interaction matrix, the Gram, the solve (EASE); the whole fit from the
store's rows (each ALS builds its own matrix, as in a comparison) and the median seconds per
iteration after the first (iALS; compile is in the first). The memory floor printed beside
EASE's peak is models/ease.bytes_needed (five dense n_items^2 matrices).
Writes --out/netflix_topn_<models>_<N>dev.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

_OUT = flags.DEFINE_string("out", "bench_out/netflix_topn", "Folder for the store and results.")
_USERS = flags.DEFINE_integer("n_users", 480_189, "Users of the synthetic store (Netflix).")
_ITEMS = flags.DEFINE_integer("n_items", 17_770, "Items of the synthetic store (Netflix).")
_N = flags.DEFINE_integer("n_ratings", 100_480_507, "Ratings of the synthetic store (Netflix).")
_MODELS = flags.DEFINE_list("models", ["ease", "jax_ials"], "Models, of ease, jax_ials, "
                            "implicit_als; each fitted in its own child process.")
_WITH_IMPLICIT = flags.DEFINE_bool("with_implicit", True, "Also fit implicit's ALS at the same "
                                   "settings, for the per-iteration ratio.")
_EASE_L2 = flags.DEFINE_float("ease_l2", 1000.0, "EASE lambda (Steck: Netflix 1000).")
_FACTORS = flags.DEFINE_integer("factors", 64, "iALS factors (compare's implicit_als: 64).")
_ITERATIONS = flags.DEFINE_integer("ials_iterations", 5, "iALS iterations.")
_REG = flags.DEFINE_float("regularization", 0.05, "iALS regularization (compare's: 0.05).")
_ALPHA = flags.DEFINE_float("alpha", 2.0, "iALS alpha (compare's: 2.0).")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "> 0: the children run JAX on this many CPU devices (XLA_FLAGS, set "
    "before jax is imported); our ALS deals its chunks to them, one core each. 0: as the "
    "environment (one CPU device by default).")
_CHILD = flags.DEFINE_string("child", "", "Internal: fit this one model and print its JSON.")


def _status_gb(field: str) -> float:
  """VmHWM (peak RSS) or VmRSS of this process, GiB."""
  for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith(field + ":"):
      return int(line.split()[1]) / 2**20
  return float("nan")


def _store():
  """The synthetic store, built once into --out."""
  from netrec_jax.data.store import RatingStore
  from netrec_jax.data.synthetic import SyntheticConfig, build_synthetic_store
  path = Path(_OUT.value) / f"store_{_USERS.value}x{_ITEMS.value}_{_N.value}"
  if not (path / "meta.json").is_file():
    t0 = time.time()
    build_synthetic_store(SyntheticConfig(n_users=_USERS.value, n_items=_ITEMS.value,
                                          n_ratings=_N.value), path)
    print(f"built the store in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
  return RatingStore.open(path)


def _store_and_rows():
  from netrec_jax.data import splits
  store = _store()
  split = splits.random_split(store, 0.1, 0.0, seed=0)
  return store, split.rows("train")


def _fit(name: str) -> dict:
  import numpy as np
  from netrec_jax.data.row_batches import interaction_matrix
  store, rows = _store_and_rows()
  import jax
  row = {"model": name, "jax_devices": jax.device_count(), "n_users": store.n_users,
         "n_items": store.n_items,
         "train_ratings": int(len(rows)), "rss_after_split_gb": _status_gb("VmRSS")}
  t0 = time.time()
  if name == "ease":
    from netrec_jax.models import ease
    x = interaction_matrix(store, rows)
    row["matrix_s"] = time.time() - t0
    t1 = time.time()
    g = ease.gram(x)
    row["gram_s"] = time.time() - t1
    del x
    t1 = time.time()
    b = ease.fit(g, _EASE_L2.value)
    row["solve_s"] = time.time() - t1
    row["finite"] = bool(np.isfinite(b).all())
    row["floor_gb"] = ease.bytes_needed(store.n_items) / 2**30
  else:
    from netrec_jax.baselines.implicit_models import ImplicitRecommender
    from netrec_jax.baselines.jax_als import JaxIALS
    common = dict(factors=_FACTORS.value, iterations=_ITERATIONS.value,
                  regularization=_REG.value, alpha=_ALPHA.value, seed=0)
    model = (JaxIALS(confidence="linear", **common) if name == "jax_ials"
             else ImplicitRecommender("als", name=name, **common))
    t1 = time.time()
    model.fit(store, rows)
    per_iter = list(model.iteration_seconds)
    row["fit_s"] = time.time() - t1
    row["iterations"] = _ITERATIONS.value
    if per_iter:
      steady = per_iter[1:] or per_iter
      row["iteration_s"] = [round(s, 2) for s in per_iter]
      row["steady_s_per_iteration"] = float(np.median(steady))
  row["fit_total_s"] = time.time() - t0
  row["peak_rss_gb"] = _status_gb("VmHWM")
  return row


def main(argv):
  del argv
  if _CHILD.value:
    print("RESULT " + json.dumps(_fit(_CHILD.value)), flush=True)
    return
  out = Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  _store()  # build once, before the children (each child splits it itself)
  models = list(_MODELS.value) + (["implicit_als"] if _WITH_IMPLICIT.value
                                  and "implicit_als" not in _MODELS.value else [])
  rows = []
  for name in models:
    args = [sys.executable, __file__, f"--child={name}"] + [
        a for a in sys.argv[1:] if not a.startswith(("--child", "--models"))]
    env = dict(os.environ)
    if _CPU_DEVICES.value > 0:
      env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count="
                          f"{_CPU_DEVICES.value}").strip()
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    result = [line[7:] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not result:
      rows.append({"model": name, "status": f"failed (exit {done.returncode})",
                   "stderr_tail": done.stderr[-2000:]})
    else:
      rows.append(json.loads(result[0]))
    print(json.dumps(rows[-1]), flush=True)
  by_name = {r["model"]: r for r in rows}
  ours, theirs = by_name.get("jax_ials", {}), by_name.get("implicit_als", {})
  if "steady_s_per_iteration" in ours and "steady_s_per_iteration" in theirs:
    ratio = ours["steady_s_per_iteration"] / theirs["steady_s_per_iteration"]
    print(f"jax_ials / implicit_als seconds per iteration: {ratio:.2f}x")
  summary = {"rows": rows, "cpus": os.cpu_count(), "cpu_devices": _CPU_DEVICES.value,
             "command": " ".join(sys.argv)}
  name = f"netflix_topn_{'_'.join(models)}_{_CPU_DEVICES.value or 1}dev.json"
  (out / name).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
  app.run(main)
