"""The quick start's comparison: MF and the baselines on the synthetic default (minutes).

  python launch.py --experiment=compare_quickstart --mode=compare --workdir=runs/compare_qs
"""

from experiments import quickstart


def get_config():
  config = quickstart.get_config()
  config.name = "compare_quickstart"
  config.compare.after_train = False
  config.mode = "compare"
  config.compare.models = ("mf,neumf,hybrid,surprise_svd,surprise_baseline,implicit_als,jax_als,"
                           "jax_ials")
  return config
