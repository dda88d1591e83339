"""The deep autoencoder on user rows of MovieLens 100K (random 90/10, as autorec_ml100k).

  python launch.py --experiment=deep_ae_ml100k --workdir=runs/deep_ae_ml100k
"""

from experiments import autorec_ml100k


def get_config():
  config = autorec_ml100k.get_config()
  config.name = "deep_ae_ml100k"
  config.model.name = "deep_ae"
  config.autoencoder.side = "user"
  config.autoencoder.dropout = 0.1
  config.optimizer.l2 = 1e-5
  config.train.batch_size = 128
  config.optimizer.lr = 1e-4
  config.train.epochs = 60
  return config
