"""Content, hybrid, MF, NeuMF, the YouTube-style DNN and Surprise SVD on MovieLens 100K fold
u1 (one table: the DNN's rating head beside MF and NCF), with a cold-start breakdown.

  python launch.py --experiment=compare_content_ml100k --mode=compare \\
      --workdir=runs/compare_content_ml100k           # overall table (common evaluator)
  python benchmarks/cold_start_report.py --workdir=runs/compare_content_ml100k
      # same models, metrics per bucket of the test movie's training ratings (0, 1-5, 6-20,
      # >20): cold_start.{md,json,png}

Protocol ml100k_u1: u1.test has 33 ratings of movies with no rating in u1.base and 355 of
movies with 1-5, which is where CF models have nothing (or next to nothing) to go on and
content scores do not depend on ratings. Measured: 3 min wall (32 s CPU) for the compare
run on a busy 2-core machine, 35 s for the report restoring those models.
"""

from experiments import content_ml100k


def get_config():
  config = content_ml100k.get_config()
  config.name = "compare_content_ml100k"
  config.mode = "compare"
  config.compare.models = ("content,content@hybrid,mf_ml100k,ncf_ml100k,youtube_dnn_ml100k,"
                           "surprise_svd")
  config.compare.model_overrides = "content@hybrid:content.mode=hybrid"
  config.compare.folds = ""
  return config
