"""New-movie cold start on MovieLens 100K: every rating of 10% of the movies is held out.

  python launch.py --experiment=compare_content_cold_ml100k --mode=compare \\
      --workdir=runs/compare_content_cold_ml100k

Protocol item_cold_10_seed0: a seeded random 10% of the movies have all their ratings in test,
so no test movie has a training rating. CF models have nothing to go on for them (MF and SVD
fall back to user and global terms; ranking sees only untrained item vectors); the TF-IDF
content model scores them from titles, years and genres, and the hybrid uses content exactly
where CF has no ratings. Ranking: relevant = test ratings >= 4, over the full catalog minus each
user's training movies (warm movies included, so a model must put the right new movies above
the old ones).
"""

from experiments import compare_content_ml100k


def get_config():
  config = compare_content_ml100k.get_config()
  config.name = "compare_content_cold_ml100k"
  config.split.kind = "item_cold"
  config.split.test_fraction = 0.1  # of the movies
  config.split.valid_fraction = 0.05
  config.split.seed = 0
  config.compare.models = ("content,content@hybrid,mf_ml100k,surprise_svd,surprise_baseline,"
                           "implicit_als")  # mf_ml100k: MF with its tuned settings
  return config
