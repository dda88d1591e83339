"""BERT4Rec (Sun et al. 2019) on MovieLens 100K, leave-last-out (split loo_valid1, protocol loo).

  python launch.py --experiment=bert4rec_ml100k --workdir=runs/bert4rec_ml100k
  python launch.py --experiment=bert4rec_ml100k --mode=eval \\
      --restore_from=runs/bert4rec_ml100k --workdir=runs/bert4rec_ml100k_eval

Each user's ratings by date form the sequence; the last is test, the one before validation,
both scored from the training items with [MASK] appended. Reports full-catalog ranking
(protocol loo_full: HR@10, NDCG@10, Recall@20) and the paper's 100 popularity-sampled negatives
(protocol loo_pop100); the two differ widely, compare only figures of one protocol.
The paper's ML-1M architecture (hidden 64, 2 layers, 2 heads, mask 0.2, dropout 0.1) with a
shorter max_len (ML-100K users have 106 ratings on average) and a larger learning rate, so it
trains in minutes on 2 CPU cores.
"""

from experiments import ml100k


def get_config():
  config = ml100k.get_config()
  config.name = "bert4rec_ml100k"
  config.split.kind = "loo"
  config.split.loo_n_valid = 1
  config.model.name = "bert4rec"
  config.sequence.max_len = 50
  config.sequence.mask_prob = 0.2
  config.sequence.hidden = 64
  config.sequence.layers = 2
  config.sequence.heads = 2
  config.sequence.dropout = 0.1
  config.train.batch_size = 64
  config.optimizer.lr = 1e-3
  config.train.epochs = 100
  config.train.eval_every = 10
  config.train.early_stopping_patience = 3  # validation checks without improvement
  config.eda = False
  return config
