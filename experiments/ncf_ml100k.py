"""NeuMF (GMF + MLP towers) for explicit ratings on MovieLens 100K, u1 fold (ml100k_u1).

  python launch.py --experiment=ncf_ml100k --workdir=runs/ncf_ml100k [--config.model.name=gmf]
"""

from experiments import mf_ml100k


def get_config():
  config = mf_ml100k.get_config()
  config.name = "ncf_ml100k"
  config.model.name = "neumf"
  config.model.gmf_dim = 32
  config.model.mlp_layers = (64, 32, 16, 8)
  config.model.dropout = 0.1
  return config
