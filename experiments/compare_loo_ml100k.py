"""BERT4Rec beside implicit ALS, NCF's implicit mode and LightGCN on MovieLens 100K,
leave-last-out (split loo_valid1, protocol loo), one evaluator, one table.

  python launch.py --experiment=compare_loo_ml100k \\
      --workdir=runs/compare_loo_ml100k

Each user's last rating by date (same-day ties in seeded random order: ML-100K users rate
dozens of movies a day and the store keeps days) is the test item (every one relevant), the one
before it validation; nobody sees either in training. Two protocols, reported side by side and
never to be mixed: loo_full (the test item ranked over the full catalog minus the user's
training items: HR@10, NDCG@10, Recall@20) and loo_pop100 (the test item against 100 negatives
drawn by training popularity from items the user never rated, as the BERT4Rec paper; column
sampled_hr@10 / sampled_ndcg@10). JAX models train into WORKDIR/models/NAME;
ncf_implicit_ml100k is NeuMF trained with BCE on 4 sampled negatives per positive
(task=implicit). Each model's own settings come from its experiment (bert4rec_ml100k,
lightgcn_ml100k, ncf_implicit_ml100k).
"""

from experiments import bert4rec_ml100k


def get_config():
  config = bert4rec_ml100k.get_config()
  config.name = "compare_loo_ml100k"
  config.mode = "compare"
  config.compare.models = "bert4rec,implicit_als,ncf_implicit_ml100k,lightgcn_ml100k"
  config.eval.relevance_threshold = 0.0  # every held-out rating is relevant
  config.eval.ks = (5, 10, 20)
  config.eval.sampled_negatives = 100
  config.eval.negative_sampler = "popularity"  # with 100 on loo: protocol loo_pop100
  return config
