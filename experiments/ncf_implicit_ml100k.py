"""NeuMF for implicit feedback (sampled negatives) on MovieLens 100K, u1 fold.

  python launch.py --experiment=ncf_implicit_ml100k --workdir=runs/ncf_implicit_ml100k
"""

from experiments import ml100k


def get_config():
  config = ml100k.get_config()
  config.name = "ncf_implicit_ml100k"
  config.split.valid_fraction = 0.05
  config.task = "implicit"
  config.model.name = "neumf"
  config.model.gmf_dim = 32
  config.train.batch_size = 1024
  config.train.epochs = 20
  config.optimizer.lr = 0.001
  config.eda = False
  return config
