"""The source documents' biased deep CF ("hybrid") on MovieLens 100K, u1 fold (ml100k_u1).

  python launch.py --experiment=hybrid_ml100k --workdir=runs/hybrid_ml100k

mu + b_u + b_i + MLP([p_u; q_i; train-split activity features]), 128-64-32 with batch norm and
dropout. Compare with mf_ml100k on the same fold.
"""

from experiments import mf_ml100k


def get_config():
  config = mf_ml100k.get_config()
  config.name = "hybrid_ml100k"
  config.model.name = "hybrid"
  config.model.embed_dim = 64
  config.model.hidden = (128, 64, 32)
  config.model.dropout = 0.2
  config.model.batch_norm = True
  config.model.use_features = True
  config.optimizer.dense = "adamw"
  config.optimizer.lr = 1e-3
  return config
