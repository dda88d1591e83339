"""MovieLens 1M, random 90/10 with 10% of train for validation (protocol random_90_10_seed0).

  python launch.py --experiment=ml1m --workdir=runs/ml1m

Needs $NETREC_DATA_DIR/ml-1m with ratings.dat (or the shared ratings.head487650.dat.gz sample,
which holds only users 1-2999: its figures are not comparable to full ML-1M results).
"""

from netrec_jax import configs


def get_config():
  config = configs.base_config()
  config.name = "ml1m"
  config.data.source = "ml1m"
  config.data.path = "ml-1m"
  config.data.min_user_ratings = 0
  config.split.kind = "random"
  config.split.test_fraction = 0.1
  config.split.valid_fraction = 0.1
  return config
