"""MovieLens latest-small (half stars kept exact), leave-last-out split for ranking.

  python launch.py --experiment=ml_latest --workdir=runs/ml_latest
"""

from netrec_jax import configs


def get_config():
  config = configs.base_config()
  config.name = "ml_latest"
  config.data.source = "ml_latest"
  config.data.path = "ml-latest-small"
  config.data.min_user_ratings = 0
  config.split.kind = "loo"
  return config
