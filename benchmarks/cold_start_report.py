"""Cold-start report: models' metrics per bucket of the test movie's training-rating count.

  python benchmarks/cold_start_report.py --workdir=runs/compare_content_ml100k \\
      [--experiment=compare_content_ml100k] [--models=content,content@hybrid,mf,surprise_svd]

Trains (or restores from WORKDIR/models/NAME, where `launch.py --mode=compare` with the same
workdir puts them) every model of the experiment's compare.models, fits the baselines on the
same training rows, and writes WORKDIR/cold_start.{md,json,png} via
netrec_jax/eval/cold_start.py: RMSE/MAE, hit@10/20 and AUC for test movies with 0, 1-5, 6-20
and >20 training ratings, all on the experiment's split (named with its protocol).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from netrec_jax import configs  # noqa: E402
from netrec_jax.data import datasets  # noqa: E402
from netrec_jax import compare  # noqa: E402
from netrec_jax.eval import cold_start, evaluator  # noqa: E402
from netrec_jax.progress import quiet_library_logs  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--experiment", default="compare_content_ml100k")
  parser.add_argument("--models", default="", help="comma-separated; default compare.models")
  args = parser.parse_args()
  quiet_library_logs()
  from netrec_jax.train import family
  config = family.resolve(configs.load_experiment(args.experiment))
  workdir = Path(args.workdir)
  names = [m.strip() for m in (args.models or config.compare.models).split(",") if m.strip()]

  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  data = evaluator.prepare(store, split, relevance_threshold=evaluator.relevance(config.eval))
  models = []
  for name in names:
    t0 = time.time()
    if name in compare.BASELINES:
      model = compare.fit_baseline(name, store, data.train_rows)
      model.name = name
    elif compare.is_jax_entry(name):
      model = compare._jax_model(name, config, workdir)
    else:
      raise SystemExit(f"cold_start_report: unknown model {name!r}")
    print(f"{name}: ready in {time.time() - t0:.1f} s", flush=True)
    models.append(model)
  t0 = time.time()
  rows = cold_start.breakdown(models, data, ks=(10, 20))
  title = (f"{args.experiment}: split {split.name}, protocol {split.protocol}; metrics per "
           f"bucket of the test movie's training ratings (relevant: stars >= "
           f"{config.eval.relevance_threshold:g})")
  files = cold_start.write_report(rows, workdir / "cold_start", title)
  print(files["md"].read_text())
  print(f"breakdown {time.time() - t0:.1f} s; wrote {', '.join(str(p) for p in files.values())}")


if __name__ == "__main__":
  main()
