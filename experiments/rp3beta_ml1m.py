"""RP3beta (Paudel et al. 2017) on the shared MovieLens 1M sample, random 90/10
(random_90_10_seed0).

  python launch.py --experiment=rp3beta_ml1m --workdir=runs/rp3beta_ml1m

Counting only: 3-step random-walk probabilities item -> user -> item over the binary matrix
of every training rating, raised to alpha, divided by popularity^beta, top-k per item, rows
l1-normalised (Dacrema et al.'s RP3betaRecommender defaults alpha 1.0, beta 0.6, k 100).
Ranking metrics only; same split and caveats as ease_ml1m.
"""

from experiments import ml1m


def get_config():
  config = ml1m.get_config()
  config.name = "rp3beta_ml1m"
  config.model.name = "rp3beta"
  config.rp3.alpha = 1.0
  config.rp3.beta = 0.6
  config.rp3.k = 100
  config.eval.ks = (10, 20, 50, 100)
  config.eda = False
  return config
