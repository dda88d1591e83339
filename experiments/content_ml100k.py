"""Content-based filtering (TF-IDF of titles, years and genres) on MovieLens 100K, fold u1.

  python launch.py --experiment=content_ml100k --workdir=runs/content_ml100k
  python launch.py --experiment=content_ml100k --workdir=runs/content_hybrid_ml100k \\
      --config.content.mode=hybrid              # + MF (mf_ml100k settings) for rated movies
  python launch.py --experiment=content_ml100k --mode=eval \\
      --restore_from=runs/content_ml100k --workdir=runs/content_ml100k_eval

Protocol ml100k_u1 (5% of u1.base held out for validation, as mf_ml100k). A user's profile
is the mean-centred-rating-weighted mean of their training movies' TF-IDF vectors; scores
are cosines, mapped to stars around the user's mean by a leave-one-out least-squares fit.
Builds in about 10 s (the hybrid also trains MF, about 30 s more). Its value is cold start:
see compare_content_ml100k and benchmarks/cold_start_report.py.
"""

from experiments import ml100k


def get_config():
  config = ml100k.get_config()
  config.split.valid_fraction = 0.05  # as mf_ml100k: the hybrid's CF model early-stops on it
  config.name = "content_ml100k"
  config.model.name = "content"
  config.content.mode = "content"
  config.content.title_weight = 1.0
  config.content.year_weight = 0.5
  config.content.genre_weight = 1.0
  config.content.profile_weighting = "centered"
  config.content.hybrid_shrinkage = 5.0
  config.content.cf_model = "mf_ml100k"  # its tuned settings
  return config
