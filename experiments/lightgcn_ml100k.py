"""LightGCN (He et al. 2020) on MovieLens 100K, u1 fold (protocol ml100k_u1, full ranking).

  python launch.py --experiment=lightgcn_ml100k --workdir=runs/lightgcn_ml100k
  python launch.py --experiment=lightgcn_ml100k --workdir=runs/lightgcn_loo \\
      --config.split.kind=loo --config.eval.relevance_threshold=0   # leave-last-out

Every training rating is an interaction. The ranking split is the one implicit ALS is compared
on in compare_ml100k: u1.base (minus a seeded 5% validation slice) / u1.test, test ratings >= 4
relevant, ranking over the full catalog minus the user's training items
(ml100k_u1_full_ranking). The best checkpoint is chosen by validation Recall@20.
Leave-last-out on ML-100K is available but degenerate here: dates are stored in days and most
users rate in one session, so the "last" item is the highest item id of the last day.
Paper settings (3 layers, dim 64, L2 1e-4, one negative per positive) except for the batch
(16,384 pairs instead of 2,048) and Adam lr (0.02 instead of 0.001): every step propagates over
the whole graph, so on 2 CPU cores few large steps are what fits. About 3 minutes on 2 cores.
"""

from experiments import ml100k


def get_config():
  config = ml100k.get_config()
  config.name = "lightgcn_ml100k"
  config.split.valid_fraction = 0.05  # of u1.base, seeded: model selection
  config.split.loo_n_valid = 1  # with --config.split.kind=loo
  config.model.name = "lightgcn"
  config.graph.layers = 3
  config.graph.embed_dim = 64
  config.graph.l2 = 1e-4
  config.graph.bpr_negatives = 1
  config.train.batch_size = 16_384
  config.graph.valid_metric = "recall@20"
  config.train.eval_every = 10
  config.optimizer.lr = 0.02
  config.train.epochs = 300
  config.train.early_stopping_patience = 5  # evaluations (of eval_every epochs each)
  config.eval.relevance_threshold = 4.0  # test ratings >= 4 are relevant
  config.eval.ks = (5, 10, 20)
  config.eda = False
  return config
