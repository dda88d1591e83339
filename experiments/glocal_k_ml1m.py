"""GLocal-K (Han et al. 2021) on MovieLens 1M, random 90/10 (random_90_10_seed0).

  python launch.py --experiment=glocal_k_ml1m --workdir=runs/glocal_k_ml1m

The paper's ML-1M settings (usydnlp/Glocal_K): as glocal_k_ml100k but lambda_2 70, lambda_s
0.018, dot_scale 0.5, 20 pre-training epochs of 50 L-BFGS iterations, up to 30 fine-tuning
epochs of 10. Published: test RMSE 0.8227 on full ML-1M 90/10 (best test figure over the
fine-tuning epochs). 10% of train is held out for validation, which picks the epoch. The
shared data folder holds only ratings.head487650.dat.gz (users 1-2999, about half of ML-1M):
figures on it are NOT comparable to the paper's; compare with autorec_ml1m on the same rows.
Measured on that sample (2 shared CPU cores, 33 min): test RMSE 0.8431 (best epoch 41 of 50),
I-AutoRec 0.8618 (BUILD_NOTES.md, section GLocal-K).
"""

from experiments import glocal_k_ml100k, ml1m


def get_config():
  config = ml1m.get_config()
  reference = glocal_k_ml100k.get_config()
  config.name = "glocal_k_ml1m"
  config.model = reference.model
  config.glocal_k = reference.glocal_k
  config.train = reference.train
  g = config.glocal_k
  g.lambda_2 = 70.0
  g.lambda_s = 0.018
  g.dot_scale = 0.5
  g.pretrain_epochs = 20  # epoch_p
  g.pretrain_iters = 50  # iter_p
  g.finetune_iters = 10  # iter_f
  config.train.epochs = 20 + 30  # epoch_p + epoch_f
  config.eda = False
  return config
