"""A synthetic store the size of the Netflix Prize: 480,189 users, 17,770 movies, 100M ratings.

  python launch.py --experiment=synthetic_netflix_scale --workdir=runs/netflix_scale

Needs about 5 GB of disk for the store and a few minutes on 2 cores.
"""

from netrec_jax import configs


def get_config():
  config = configs.base_config()
  config.name = "synthetic_netflix_scale"
  config.data.synthetic.n_users = 480_189
  config.data.synthetic.n_items = 17_770
  config.data.synthetic.n_ratings = 100_480_507
  config.data.synthetic.rank = 16
  config.eda_top_k = 25
  return config
