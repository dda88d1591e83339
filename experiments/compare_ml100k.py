"""Our models and the Surprise / implicit baselines on MovieLens 100K, fold u1 (ml100k_u1).

  python launch.py --experiment=compare_ml100k --mode=compare --workdir=runs/compare_ml100k
  python launch.py --experiment=compare_ml100k --mode=compare --workdir=runs/cmp_u2 \\
      --config.split.fold=u2

Writes comparison.{md,csv,json,png}. A few minutes on 2 cores (SVD++ and KNN are the slow ones).
"""

from experiments import mf_ml100k


def get_config():
  config = mf_ml100k.get_config()
  config.name = "compare_ml100k"
  config.compare.models = ("mf,neumf,hybrid,surprise_svd,surprise_svd_tuned,surprise_baseline,"
                           "surprise_knn,implicit_als,implicit_bpr,jax_als")
  return config
