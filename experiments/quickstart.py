"""Quick start on the embedded synthetic default: about a minute on 2 CPU cores.

  python launch.py --experiment=quickstart --workdir=runs/quickstart

Generates 500k Netflix-like ratings (6,000 users x 1,500 movies), drops users under 25 ratings,
builds the store, makes a random 90/10 split (10% of train for validation; protocol
random_90_10_seed0), writes EDA plots to runs/quickstart/eda, then trains biased MF with
row-sparse Adagrad, checkpoints the best epoch and evaluates it on the test ratings, and
ends with a comparison table (runs/quickstart/comparison/comparison.md) against Surprise SVD,
Surprise BaselineOnly, implicit ALS and our two JAX ALS models on the same split and evaluator:
jax_als (explicit WR-ALS, scored by RMSE) and jax_ials (implicit's ALS model at its settings),
both at implicit_als's 64 factors and 15 iterations.
"""

from netrec_jax import configs


def get_config():
  config = configs.base_config()
  config.name = "quickstart"
  config.split.kind = "random"
  config.model.name = "mf"
  config.model.embed_dim = 32
  config.train.epochs = 8
  config.train.batch_size = 4096
  config.optimizer.sparse_lr = 0.05
  config.optimizer.embed_l2 = 0.3  # tuned on validation: sweep in BUILD_NOTES.md
  # One JAX CPU device per core: the ALS rows (jax_als, jax_ials) are dealt to every device,
  # as implicit's ALS uses every core. MF trains on one of them: its step data-parallel over
  # two CPU devices took 0.9 s an epoch against 0.4 s on one (BUILD_NOTES.md).
  config.mesh.cpu_devices = -1
  config.mesh.data = 1
  config.compare.after_train = True
  config.compare.models = "mf,surprise_svd,surprise_baseline,implicit_als,jax_als,jax_ials"
  return config
