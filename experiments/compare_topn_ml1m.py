"""EASE, item-kNN and RP3beta beside implicit ALS on the shared MovieLens 1M sample, one
evaluator, one table with per-user bootstrap intervals (random_90_10_seed0_full_ranking).

  python launch.py --experiment=compare_topn_ml1m --workdir=runs/compare_topn_ml1m

Each closed-form model takes its experiment's settings (ease_ml1m, itemknn_ml1m,
rp3beta_ml1m; ials_ml1m: implicit_als's settings in JAX); implicit ALS runs with the
comparison's baseline settings (untuned). The split
is the ml1m random one until the strong-generalization split lands (its figures come then);
the data are the users 1-2999 sample, not full ML-1M.
"""

from experiments import ease_ml1m


def get_config():
  config = ease_ml1m.get_config()
  config.name = "compare_topn_ml1m"
  config.mode = "compare"
  config.compare.models = "ease,itemknn_ml1m,rp3beta_ml1m,implicit_als,ials_ml1m"
  return config
