"""Top-N models under strong generalization on the shared MovieLens 1M sample (issue 16):
EASE and Mult-VAE / Mult-DAE against RP3beta, item-kNN, implicit ALS and iALS, one
evaluator, one table with per-user bootstrap intervals and Holm-corrected tests.

  python launch.py --experiment=compare_strong_ml1m --workdir=runs/compare_strong_ml1m

Each entry named by experiment keeps its model settings (ease_ml1m: lambda 500; the paper's
Mult-VAE); data, split and evaluation are this experiment's (ml1m_strong). Every model folds
the held-out users in (EASE / kNN / RP3beta: row times W; Mult-VAE: one encoder pass; implicit
ALS and our iALS (ials_ml1m: implicit_als's settings, fitted in JAX): one least-squares solve;
LightGCN: one propagation step from the given movies; BERT4Rec: the given movies as its
sequence; the YouTube DNN: its tower over their mean embedding; implicit MF: Adam on a new user
row; U-AutoRec: one encoder pass). LightGCN and the YouTube DNN keep their ML-100K experiments'
settings, untuned for this data; BERT4Rec keeps bert4rec_ml1m's architecture but stops at 20
epochs here (200 is sized for a GPU: drop the `bert4rec_ml1m:train.epochs=20` override on one).
"""

from experiments import ml1m_strong


def get_config():
  config = ml1m_strong.get_config()
  config.name = "compare_strong_ml1m"
  config.mode = "compare"
  config.model.name = "ease"
  config.ease.l2 = 500.0
  config.compare.models = ("ease,mult_vae_ml1m,mult_vae_ml1m@dae,rp3beta_ml1m,itemknn_ml1m,"
                           "implicit_als,ials_ml1m,lightgcn_ml100k,bert4rec_ml1m,youtube_dnn_ml100k,"
                           "mf@implicit,autorec@user")
  config.compare.model_overrides = ("bert4rec_ml1m:train.epochs=20;"
                                    "mult_vae_ml1m@dae:model.name=mult_dae;"
                                    "mf@implicit:task=implicit;"
                                    "autorec@user:autoencoder.side=user")
  return config
