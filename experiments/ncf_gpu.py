"""NeuMF at Netflix scale on one GPU: 100M synthetic ratings, device-resident, large batches.

  python launch.py --experiment=ncf_gpu --workdir=runs/ncf_gpu

The training split (about 1.2 GB of int32/float32 columns) lives on the device; each epoch is
one compiled scan over batches of 65,536 with row-sparse Adagrad on the tables. Target: one
epoch over 100M ratings in under 2 s on an H100. Building the store takes a few minutes on the
host the first time (cached under stores/).
"""

from experiments import synthetic_netflix_scale


def get_config():
  config = synthetic_netflix_scale.get_config()
  config.name = "ncf_gpu"
  config.data.min_user_ratings = 0
  config.split.kind = "random"
  config.split.test_fraction = 0.01
  config.split.valid_fraction = 0.01
  config.model.name = "neumf"
  config.model.gmf_dim = 32
  config.model.mlp_layers = (64, 32, 16, 8)
  config.model.compute_dtype = "bfloat16"
  config.train.epochs = 5
  config.train.batch_size = 65_536
  config.train.eval_batch_size = 1 << 20
  config.train.input_pipeline = "device"
  config.eda = False
  return config
