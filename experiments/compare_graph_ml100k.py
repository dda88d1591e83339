"""GC-MC beside biased MF and Surprise SVD on MovieLens 100K, u1 fold (protocol ml100k_u1).

  python launch.py --experiment=compare_graph_ml100k --mode=compare \\
      --workdir=runs/compare_graph_ml100k

One split (u1.base minus a seeded 5% validation slice / u1.test), one evaluator, one table.
GC-MC keeps the paper's settings (gcmc_ml100k: 1000 full-batch epochs, Adam lr 0.01), MF its
own (mf_ml100k). Paper: GC-MC 0.910 on u1; Surprise SVD with defaults measured 0.9513 here.
About 10 minutes on 2 cores (GC-MC dominates).
"""

from experiments import gcmc_ml100k, mf_ml100k


def get_config():
  config = mf_ml100k.get_config()
  config.name = "compare_graph_ml100k"
  gcmc = gcmc_ml100k.get_config()
  config.graph = gcmc.graph  # GC-MC's own section
  config.compare.models = "gcmc,mf,surprise_svd"
  config.compare.folds = ""  # u1 only
  # Settings the families share (optimizer, train) differ per model.
  config.compare.model_overrides = (
      f"gcmc:optimizer.lr={gcmc.optimizer.lr},train.epochs={gcmc.train.epochs},"
      f"train.early_stopping_patience={gcmc.train.early_stopping_patience}")
  return config
