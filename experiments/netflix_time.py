"""Netflix Prize raw files, users under 25 ratings dropped, time_2005 split (source documents).

  NETREC_DATA_DIR=/data python launch.py --experiment=netflix_time --workdir=runs/netflix \
      --config.data.path=netflix-prize

data.path must hold combined_data_*.txt (or training_set/mv_*.txt) and movie_titles.txt; a
probe.txt there is saved as the netflix_probe split too. About 2-3 minutes to ingest the full
100M ratings on 2 cores (BUILD_NOTES.md).
"""

from netrec_jax import configs


def get_config():
  config = configs.base_config()
  config.name = "netflix_time"
  config.data.source = "netflix"
  config.data.path = "netflix-prize"
  config.data.min_user_ratings = 25
  config.split.kind = "time"
  config.split.cutoff = "2005-01-01"
  return config
