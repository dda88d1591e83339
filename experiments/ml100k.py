"""MovieLens 100K with the official u1 fold (protocol ml100k_u1).

  python launch.py --experiment=ml100k --workdir=runs/ml100k [--config.split.fold=u2]

Needs $NETREC_DATA_DIR/ml-100k (default ../shared/data/ml-100k). No user filter, so the
official folds stay intact (100,000 ratings, 943 users, 1,682 movies).
"""

from netrec_jax import configs


def get_config():
  config = configs.base_config()
  config.name = "ml100k"
  config.data.source = "ml100k"
  config.data.path = "ml-100k"
  config.data.min_user_ratings = 0
  config.split.kind = "ml100k_fold"
  config.split.fold = "u1"
  config.split.valid_fraction = 0.0  # the official fold as is; trainers set a validation slice
  return config
