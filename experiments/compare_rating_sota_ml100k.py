"""Rating prediction at the state of the art on MovieLens 100K, fold u1 (protocol ml100k_u1).

  python launch.py --experiment=compare_rating_sota_ml100k --workdir=runs/rating_sota
  python launch.py --experiment=compare_rating_sota_ml100k --workdir=runs/rating_sota_refit \\
      --config.compare.refit=True                      # + the Prize refit rows
  python launch.py --experiment=compare_rating_sota_ml100k --workdir=runs/rating_sota_5fold \\
      --config.compare.refit=True --config.compare.folds=u1,u2,u3,u4,u5   # ml100k_5fold

Our strongest rating models, each with its own experiment's settings (MF, NeuMF, the hybrid,
GC-MC, I-AutoRec, SVD++, GLocal-K; timeSVD++ with its family's defaults on the u.data
timestamps), Surprise SVD / SVD++ as the reference implementations, and the ridge blend of
all of them fitted on the validation rows (5% of u1.base, seeded) and evaluated once on test,
as the Prize teams blended on the probe set. With compare.refit every rating model is then
refitted on train + validation (all of u1.base; ours for the epochs validation chose) and the
blend's weights are applied to the refitted models: rows "NAME (refit)" and "blend (refit)",
the Prize recipe (netrec_jax/compare.py). compare.folds=u1,...,u5 runs the five official
folds (protocol ml100k_5fold, means in comparison_folds.md). Published on this fold:
GLocal-K 0.8889, IGMC 0.905, GC-MC 0.910 (../shared/docs/protocols-and-anchors.md).
"""

from experiments import mf_ml100k


def get_config():
  config = mf_ml100k.get_config()
  config.name = "compare_rating_sota_ml100k"
  config.mode = "compare"
  config.compare.models = ("mf,ncf_ml100k,hybrid_ml100k,gcmc_ml100k,autorec_ml100k,"
                           "svdpp_ml100k,timesvdpp,glocal_k_ml100k,surprise_svd,surprise_svdpp")
  config.compare.blend = True
  config.eval.ranking = "never"  # a rating comparison; rankings are compare_ranking_ml100k's
  return config
