"""EASE (Steck 2019) on the shared MovieLens 1M sample, random 90/10 (random_90_10_seed0).

  python launch.py --experiment=ease_ml1m --workdir=runs/ease_ml1m
  python launch.py --experiment=ease_ml1m --mode=eval --restore_from=runs/ease_ml1m \\
      --workdir=runs/ease_ml1m_eval
  python launch.py --mode=recommend --restore_from=runs/ease_ml1m --new_user=1:5,2:4,3:1

Closed form, nothing trained: B = I - P diag(1/diag(P)), P = (X^T X + 500 I)^-1 over the
binary matrix of every training rating (ease.min_stars = 0); a 3,706-movie solve takes
seconds. Ranking metrics only (full catalog, training items excluded, held-out ratings >= 4
relevant: protocol random_90_10_seed0_full_ranking). The split is the ml1m experiment's random
one until the strong-generalization split lands; the sample holds users 1-2999 only
(shared/data/PROVENANCE.md), so figures are not comparable to published full-ML-1M ones.
"""

from experiments import ml1m


def get_config():
  config = ml1m.get_config()
  config.name = "ease_ml1m"
  config.model.name = "ease"
  config.ease.l2 = 500.0  # Steck's ML-20M value; Netflix: 1000
  config.eval.ks = (10, 20, 50, 100)
  config.eda = False
  return config
