"""Item-kNN (cosine with shrinkage, top-k neighbours) on the shared MovieLens 1M sample,
random 90/10 (random_90_10_seed0).

  python launch.py --experiment=itemknn_ml1m --workdir=runs/itemknn_ml1m
  python launch.py --mode=similar --restore_from=runs/itemknn_ml1m --movie=1 --n=5

Counting only: sim_ij = x_i.x_j / (|x_i||x_j| + shrink) over the binary matrix of every
training rating, the k most similar items kept per target item (Dacrema et al.'s
Compute_Similarity_Python); scores = X W. Ranking metrics only; same split and caveats as
ease_ml1m (the strong-generalization split comes later; the data are a users 1-2999 sample).
"""

from experiments import ml1m


def get_config():
  config = ml1m.get_config()
  config.name = "itemknn_ml1m"
  config.model.name = "item_knn"
  config.knn.k = 100
  config.knn.shrink = 10.0
  config.eval.ks = (10, 20, 50, 100)
  config.eda = False
  return config
