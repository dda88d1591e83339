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
  config.compare.models = ("autorec@item,autorec@user,deep_ae,mf,surprise_svd,"
                           "surprise_svd_tuned,surprise_baseline")
  config.compare.model_overrides = (
      "autorec@user:model.autorec_side=user;"
      "deep_ae:model.autorec_side=user,model.dropout=0.1,model.weight_l2=1e-5,"
      "model.row_batch=128,optimizer.lr=1e-4,train.epochs=60;"
      "mf:train.epochs=30,model.embed_dim=64,train.batch_size=1024,optimizer.embed_l2=0.3,"
      "train.early_stopping_patience=4")  # as mf_ml100k
  return config
