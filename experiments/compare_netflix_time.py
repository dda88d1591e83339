"""The source documents' comparison on Netflix-format data, time_2005 split.

  python launch.py --experiment=compare_netflix_time --mode=compare --workdir=runs/cmp_nf
  python launch.py --experiment=compare_netflix_time --mode=compare --workdir=runs/cmp_nf \\
      --config.data.source=netflix --config.data.path=/data/netflix-prize   # the real files

By default the data are synthetic (2M ratings, Netflix-sized catalog) written as Netflix Prize
raw files and read back through the Netflix reader, since the Prize files are not shipped.
Users under 25 ratings are dropped, as in the source documents. Cold-start test ratings (users
who started after 2005-01-01) are counted in the report.
"""

from netrec_jax import configs


def get_config():
  config = configs.base_config()
  config.name = "compare_netflix_time"
  config.data.source = "synthetic_netflix_files"
  config.data.synthetic.update(n_users=30_000, n_items=17_770, n_ratings=2_000_000, rank=16)
  config.data.min_user_ratings = 25
  config.split.kind = "time"
  config.split.cutoff = "2005-01-01"
  config.split.valid_fraction = 0.05
  config.model.embed_dim = 32
  config.optimizer.embed_l2 = 0.3
  config.train.epochs = 8
  config.train.batch_size = 8192
  config.mode = "compare"
  config.compare.models = "mf,hybrid,surprise_svd,surprise_baseline,implicit_als,jax_als"
  config.eda = True
  return config
