"""NeuMF on a 2M-rating synthetic store with Netflix-sized tables, host pipeline; CPU-sized.

  python launch.py --experiment=ncf_cpu --workdir=runs/ncf_cpu

480,189 x 17,770 tables (as on Netflix), 2M ratings, batch 8192, memmap gather + prefetch.
A few minutes on 2 cores.
"""

from netrec_jax import configs


def get_config():
  config = configs.base_config()
  config.name = "ncf_cpu"
  config.data.synthetic.update(n_users=480_189, n_items=17_770, n_ratings=2_000_000, rank=16)
  config.data.min_user_ratings = 0
  config.split.kind = "random"
  config.model.name = "neumf"
  config.model.gmf_dim = 32
  config.model.mlp_layers = (64, 32, 16, 8)
  config.train.epochs = 3
  config.train.batch_size = 8192
  config.train.input_pipeline = "host"
  config.eda = False
  return config
