"""LightGCN beside implicit ALS, implicit BPR and NCF's implicit mode on MovieLens 100K, u1.

  python launch.py --experiment=compare_ranking_ml100k --mode=compare \\
      --workdir=runs/compare_ranking_ml100k

The ranking split of lightgcn_ml100k: u1.base minus a seeded 5% validation slice / u1.test
(protocol ml100k_u1), test ratings >= 4 relevant, ranking over the full catalog minus each
user's training items (ml100k_u1_full_ranking): Recall@20, NDCG@20, Recall@10, NDCG@10.
implicit's ALS and BPR are fitted on the same training interactions; neumf@implicit is NeuMF
trained with BCE on 4 sampled negatives per positive. About 5 minutes on 2 cores.
"""

from experiments import lightgcn_ml100k


def get_config():
  config = lightgcn_ml100k.get_config()
  config.name = "compare_ranking_ml100k"
  config.mode = "compare"
  config.compare.models = "lightgcn,implicit_als,implicit_bpr,ncf_implicit_ml100k"
  config.eval.relevance_threshold = 4.0  # test ratings >= 4 are relevant
  config.eval.ks = (10, 20)  # NDCG@20 and Recall@20 need 20
  return config
