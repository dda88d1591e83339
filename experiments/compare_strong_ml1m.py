"""Top-N models under strong generalization on the shared MovieLens 1M sample (issue 16):
EASE and Mult-VAE / Mult-DAE against RP3beta, item-kNN and implicit ALS, one evaluator, one
table with per-user bootstrap intervals and Holm-corrected tests.

  python launch.py --experiment=compare_strong_ml1m --workdir=runs/compare_strong_ml1m

Each entry named by experiment keeps its model settings (ease_ml1m: lambda 500; the paper's
Mult-VAE); data, split and evaluation are this experiment's (ml1m_strong). Every model folds
the held-out users in (EASE / kNN / RP3beta: row times W; Mult-VAE: one encoder pass;
implicit ALS: one least-squares solve).
"""

from experiments import ml1m_strong


def get_config():
  config = ml1m_strong.get_config()
  config.name = "compare_strong_ml1m"
  config.mode = "compare"
  config.model.name = "ease"
  config.ease.l2 = 500.0
  config.compare.models = ("ease,mult_vae_ml1m,mult_vae_ml1m@dae,rp3beta_ml1m,itemknn_ml1m,"
                           "implicit_als")
  config.compare.model_overrides = "mult_vae_ml1m@dae:model.name=mult_dae"
  return config
