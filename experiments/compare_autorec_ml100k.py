"""I-AutoRec vs U-AutoRec vs MF vs Surprise SVD on ML-100K, random 90/10 (random_90_10_seed0).

  python launch.py --experiment=compare_autorec_ml100k --mode=compare --workdir=runs/cmp_autorec

One split, one evaluator, one run: the issue-5 target (I-AutoRec beats Surprise SVD on this
protocol when ML-1M is absent) and the paper's finding (I-AutoRec beats U-AutoRec) are read off
the same table. The deep AE runs on user rows with the source document's settings.
"""

from experiments import autorec_ml100k


def get_config():
  config = autorec_ml100k.get_config()
  config.name = "compare_autorec_ml100k"
  config.mode = "compare"
  # autorec: this config (I-AutoRec); its user-based variant; the deep AE and MF with the
  # settings of their own experiments, all on this split.
  config.compare.models = ("autorec@item,autorec@user,deep_ae_ml100k,mf_ml100k,surprise_svd,"
                           "surprise_svd_tuned,surprise_baseline")
  config.compare.model_overrides = "autorec@user:autoencoder.side=user"
  return config
