"""Our models and the Surprise / implicit / JAX-ALS baselines on MovieLens 100K, official folds.

  python launch.py --experiment=compare_ml100k --mode=compare --workdir=runs/compare_ml100k

Runs the five official folds u1..u5 (protocol ml100k_5fold): each fold's table in
fold_uN/comparison.{md,csv,json,png}, mean and spread in comparison_folds.{md,csv,json}.
One fold only: --config.compare.folds=u1 (protocol ml100k_u1). About 17 minutes on 2 cores
(GLocal-K adds about 80 s per fold).
"""

from experiments import mf_ml100k


def get_config():
  config = mf_ml100k.get_config()
  config.name = "compare_ml100k"
  config.mode = "compare"
  # mf trains with this config (mf_ml100k's tuned settings); NeuMF and the hybrid with their
  # own experiments' settings, all on each fold of this comparison.
  config.compare.models = ("mf,ncf_ml100k,hybrid_ml100k,svdpp_ml100k,timesvdpp,glocal_k_ml100k,"
                           "surprise_svd,surprise_svd_tuned,surprise_baseline,surprise_svdpp,"
                           "surprise_knn,implicit_als,implicit_bpr,jax_als")
  # The ridge blend of the rating models, fitted on each fold's validation rows (5% of uN.base).
  config.compare.blend = True
  config.compare.folds = "u1,u2,u3,u4,u5"
  return config
