"""The shared MovieLens 1M sample under strong generalization (Liang et al. 2018): ratings >= 4
are interactions, users with fewer than 5 dropped, 10% of users held out for validation and
10% for test; each held-out user folds in a seeded 80% of their items and is scored on the
other 20% over the full catalog (protocol strong_generalization, split strong_gen_h0.1_seed0).

  python launch.py --experiment=ml1m_strong --config.model.name=ease --workdir=runs/ease_strong

Recall@K has denominator min(K, n_targets), as the paper's. The sample holds users 1-2999
only, so figures are not comparable to the published ML-20M / Netflix ones.
"""

from experiments import ml1m


def get_config():
  config = ml1m.get_config()
  config.name = "ml1m_strong"
  config.split.kind = "strong"
  config.eval.ks = (10, 20, 50, 100)
  config.eval.relevance_threshold = 0.0  # every target is an interaction (>= 4 stars)
  config.eda = False
  return config
