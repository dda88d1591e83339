"""I-AutoRec on MovieLens 1M, random 90/10 (random_90_10_seed0), the paper's setting.

  python launch.py --experiment=autorec_ml1m --workdir=runs/autorec_ml1m

The paper reports test RMSE 0.831 (I-AutoRec) and 0.874 (U-AutoRec) on ML-1M. Needs
$NETREC_DATA_DIR/ml-1m/ratings.dat. The shared data folder holds only
ratings.head487650.dat.gz (users 1-2999, about half of ML-1M): the reader takes it when the
full file is absent, and figures on it are NOT comparable to the paper's (fewer users means
fewer ratings per item row).
"""

from experiments import autorec_ml100k, ml1m


def get_config():
  config = ml1m.get_config()
  reference = autorec_ml100k.get_config()
  config.name = "autorec_ml1m"
  config.model = reference.model
  config.optimizer = reference.optimizer
  config.train = reference.train
  config.train.batch_size = 128
  config.eda = False
  return config
