"""GC-MC beside biased MF and Surprise SVD on MovieLens 100K, u1 fold (protocol ml100k_u1).

  python launch.py --experiment=compare_graph_ml100k --mode=compare \\
      --workdir=runs/compare_graph_ml100k

One split (u1.base minus a seeded 5% validation slice / u1.test), one evaluator, one table.
GC-MC keeps the paper's settings (gcmc_ml100k: 1000 full-batch epochs, Adam lr 0.01), MF its
own (mf_ml100k). Paper: GC-MC 0.910 on u1; Surprise SVD with defaults measured 0.9513 here.
About 10 minutes on 2 cores (GC-MC dominates).
"""

from experiments import mf_ml100k


def get_config():
  config = mf_ml100k.get_config()
  config.name = "compare_graph_ml100k"
  config.mode = "compare"
  config.compare.models = "gcmc_ml100k,mf,surprise_svd"  # GC-MC with its experiment's settings
  config.compare.folds = ""  # u1 only
  return config
