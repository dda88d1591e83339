"""timeSVD++ (Koren 2009) on Netflix-format data, protocol time_2005 (or netflix_probe).

  python launch.py --experiment=timesvdpp_netflix --workdir=runs/tsvdpp_nf
  python launch.py --experiment=timesvdpp_netflix --workdir=runs/svdpp_nf \\
      --config.model.name=svdpp            # SVD++ on the same rows
  python launch.py --experiment=timesvdpp_netflix --workdir=runs/tsvdpp_probe \\
      --config.split.kind=netflix_probe    # the probe split written with the files
  NETREC_DATA_DIR=/data python launch.py --experiment=timesvdpp_netflix --workdir=runs/nf \\
      --config.data.source=netflix --config.data.path=netflix-prize   # the real Prize files

By default the data are compare_netflix_time's (synthetic, 2M ratings, Netflix's 17,770
movies, written as Netflix Prize raw files with a probe.txt and read back by the Netflix
reader): the shared Netflix sample has no dated ratings (its TestingRatings subset has no
dates). Users under 25 ratings dropped; train before 2005-01-01 (its latest 5% validation),
test on or after. The family's defaults (Surprise's SVD++ settings, 30 item-bias bins).
About 40 s a run on 2 cores. Test RMSE measured: time_2005 timesvdpp 0.9049 (svdpp 0.9055);
netflix_probe 0.8527 (svdpp 0.8494); with --config.data.synthetic.drift_item_std=0.3
--config.data.synthetic.drift_user_std=0.3, time_2005 0.9327 (svdpp 0.9408). BUILD_NOTES.md.
"""

from netrec_jax import configs


def get_config():
  config = configs.base_config()
  config.name = "timesvdpp_netflix"
  config.data.source = "synthetic_netflix_files"
  config.data.synthetic.update(n_users=30_000, n_items=17_770, n_ratings=2_000_000, rank=16)
  config.data.min_user_ratings = 25
  config.split.kind = "time"  # or netflix_probe
  config.split.cutoff = "2005-01-01"
  config.split.valid_fraction = 0.05
  config.model.name = "timesvdpp"
  config.eval.ranking = "never"  # rating protocols; ranking 30,000 x 17,770 adds minutes
  config.eda = False
  return config
