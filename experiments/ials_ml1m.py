"""iALS (implicit-feedback ALS in JAX) on the shared MovieLens 1M sample, random 90/10
(random_90_10_seed0).

  python launch.py --experiment=ials_ml1m --workdir=runs/ials_ml1m
  python launch.py --mode=recommend --restore_from=runs/ials_ml1m --new_user=1:5,2:4,3:1

Every training rating is an interaction (ials.min_stars = 0); implicit_als's comparison
settings (64 factors, 15 iterations, regularization 0.05, confidence 2 r), so this row and
implicit's are the same model fitted by two codes. Ranking metrics only (full catalog,
training items excluded, held-out ratings >= 4 relevant). The sample holds users 1-2999 only
(shared/data/PROVENANCE.md): not comparable to published full-ML-1M figures.
"""

from experiments import ml1m


def get_config():
  config = ml1m.get_config()
  config.name = "ials_ml1m"
  config.model.name = "ials"
  config.eval.ks = (10, 20, 50, 100)
  config.eda = False
  return config
