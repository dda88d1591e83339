"""The source document's deep autoencoder on Netflix-format data (user rows, 512-256-64).

  python launch.py --experiment=deep_ae_netflix --workdir=runs/deep_ae_netflix
  python launch.py --experiment=deep_ae_netflix --workdir=runs/deep_ae_nf_real \\
      --config.data.source=netflix --config.data.path=/data/netflix-quarter

The source document trains on a quarter of the Prize data (combined_data_1.txt: 470,758 users x
4,499 movies, 24M ratings) and reports validation RMSE 0.835. For that run point data.path at a
folder holding combined_data_1.txt and movie_titles.txt. Without the Prize files (they are not
shipped) the default is the synthetic generator at 1/8 of that size written as Netflix raw files
and read back through the Netflix reader: its RMSE is not comparable to 0.835, only the pipeline
and the throughput are. Split: random 90/10 with 10% of train for validation
(random_90_10_seed0); --config.split.kind=time gives time_2005 (many cold test users there: the
model predicts the training mean for them, as the report counts).

Settings from the source document: encoder 512-256-64 and mirrored decoder, ReLU, dropout 0.1,
Adam lr 1e-4 with weight decay 1e-5, batch 128, masked MSE. Variants:
--config.autoencoder.activation=selu, --config.autoencoder.input_dropout=0.2 (denoising),
--config.autoencoder.refeed=True (dense re-feeding, Kuchaiev & Ginsburg 2017).
"""

from netrec_jax import configs


def get_config():
  config = configs.base_config()
  config.name = "deep_ae_netflix"
  config.data.source = "synthetic_netflix_files"
  config.data.synthetic.update(n_users=60_000, n_items=4_499, n_ratings=3_000_000, rank=16)
  config.data.min_user_ratings = 25
  config.split.kind = "random"
  config.split.test_fraction = 0.1
  config.split.valid_fraction = 0.1
  config.model.name = "deep_ae"
  config.autoencoder.side = "user"
  config.autoencoder.layers = (512, 256, 64)
  config.autoencoder.activation = "relu"
  config.autoencoder.dropout = 0.1
  config.optimizer.l2 = 1e-5
  config.train.batch_size = 128
  config.optimizer.lr = 1e-4
  config.train.epochs = 20
  config.train.early_stopping_patience = 3
  config.eda = False
  return config
