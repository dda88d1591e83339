"""Biased MF on MovieLens 100K, official u1 fold (protocol ml100k_u1); about 20 s on 2 cores.

  python launch.py --experiment=mf_ml100k --workdir=runs/mf_ml100k [--config.split.fold=u2]

Reference on the same fold: Surprise SVD with its defaults, RMSE 0.9513 (measured here).
Hyperparameters tuned on the validation rows held out of u1.base (see BUILD_NOTES.md).
"""

from experiments import ml100k


def get_config():
  config = ml100k.get_config()
  config.name = "mf_ml100k"
  config.split.valid_fraction = 0.05  # of u1.base, for early stopping and tuning
  config.model.name = "mf"
  config.model.embed_dim = 64
  config.optimizer.sparse = "adagrad"
  config.optimizer.sparse_lr = 0.05
  config.optimizer.embed_l2 = 0.3
  config.train.epochs = 30
  config.train.batch_size = 1024
  config.train.early_stopping_patience = 4
  config.eda = False
  return config
