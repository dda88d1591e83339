"""Mult-VAE (Liang et al. 2018) on the shared MovieLens 1M sample, the paper's architecture
[n_items -> 600 -> 200], input dropout 0.5, beta annealed to 0.2, Adam 1e-3, batch 500.

  python launch.py --experiment=mult_vae_ml1m --workdir=runs/mult_vae_ml1m

Split: random 90/10 (random_90_10_seed0) until the strong-generalization split lands; the
paper's protocol holds users out (see ../shared/docs/protocols-and-anchors.md), so these
figures are not comparable to its ML-20M / Netflix table. Every training rating counts as an
interaction and every held-out rating as relevant. Recall@20/50 and NDCG@100 are reported.
"""

from experiments import ml1m


def get_config():
  config = ml1m.get_config()
  config.name = "mult_vae_ml1m"
  config.model.name = "mult_vae"
  config.eval.ks = (10, 20, 50, 100)
  config.eda = False
  return config
