"""SVD++ (Koren 2008) on MovieLens 100K, official u1 fold (protocol ml100k_u1); about 25 s
on 2 cores (5 s of it training), test RMSE 0.9330 (MAE 0.7323), validation 0.9235.

  python launch.py --experiment=svdpp_ml100k --workdir=runs/svdpp_ml100k [--config.split.fold=u2]

Same rows as mf_ml100k (5% of u1.base held out for validation and early stopping; test =
u1.test). Settings are the family's defaults (netrec_jax/train/svdpp.py: Surprise's SVDpp
defaults, 20 factors, 20 epochs, SGD lr 0.007, reg 0.02), which beat the Adagrad / lazy Adam
settings tried on the validation rows. Surprise's SVDpp on the same rows: 0.9352
(benchmarks/svdpp_benchmark.py).
"""

from experiments import ml100k


def get_config():
  config = ml100k.get_config()
  config.name = "svdpp_ml100k"
  config.split.valid_fraction = 0.05  # of u1.base, for early stopping and tuning
  config.model.name = "svdpp"
  config.eda = False
  return config
