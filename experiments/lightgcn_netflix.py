"""LightGCN on Netflix-format data, time_2005 split, ranking (time_2005_full_ranking).

  python launch.py --experiment=lightgcn_netflix --workdir=runs/lightgcn_netflix
  python launch.py --experiment=lightgcn_netflix --workdir=runs/lightgcn_nf_real \\
      --config.data.source=netflix --config.data.path=netflix-prize \\
      --config.graph.edge_chunk=16777216   # the real Prize files (100M edges): a GPU run

By default the data are synthetic (2M ratings, Netflix-sized catalog, 30k users) written as
Netflix Prize raw files and read back through the Netflix reader, as compare_netflix_time does,
since the Prize files are not shipped. Users under 25 ratings are dropped (source documents).
Train on ratings before 2005-01-01 (the latest 5% of them validate), test on the rest; test
ratings >= 4 are relevant. Each step propagates over the whole training graph, so CPU runs use
large BPR batches; on the real 100M-edge graph graph.edge_chunk bounds the message buffer.
At the default size: 2 min 45 s on 2 CPU cores, Recall@20 0.0656 vs implicit ALS 0.0340 on
the same split (BUILD_NOTES.md).
"""

from netrec_jax import configs


def get_config():
  config = configs.base_config()
  config.name = "lightgcn_netflix"
  config.data.source = "synthetic_netflix_files"
  config.data.synthetic.update(n_users=30_000, n_items=17_770, n_ratings=2_000_000, rank=16)
  config.data.min_user_ratings = 25
  config.split.kind = "time"
  config.split.cutoff = "2005-01-01"
  config.split.valid_fraction = 0.05
  config.model.name = "lightgcn"
  config.graph.layers = 3
  config.graph.embed_dim = 64
  config.graph.l2 = 1e-4
  config.graph.bpr_negatives = 1
  config.train.batch_size = 65_536  # pairs per step: each step propagates the whole graph
  config.graph.valid_metric = "recall@20"
  config.train.eval_every = 2
  config.graph.edge_chunk = 0  # set e.g. 16_777_216 for the real 100M edges on one GPU
  config.optimizer.lr = 0.01
  config.train.epochs = 20
  config.train.early_stopping_patience = 3
  config.eval.relevance_threshold = 4.0
  config.eval.ks = (10, 20)
  config.eval.user_batch = 512
  config.eda = False
  return config
