"""Quick start on the embedded synthetic default: about 30 s on 2 CPU cores.

  python launch.py --experiment=quickstart --workdir=runs/quickstart

Generates 500k Netflix-like ratings (6,000 users x 1,500 movies), drops users under 25 ratings,
builds the store, makes the time_2005 split and writes EDA plots to runs/quickstart/eda.
"""

from netrec_jax import configs


def get_config():
  config = configs.base_config()
  config.name = "quickstart"
  return config
