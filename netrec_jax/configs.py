"""The base experiment config: every field an experiment can set, each with its meaning.

Experiments in experiments/ start from `base_config()` and change a few fields; any field can be
overridden on the command line, e.g. `--config.data.min_user_ratings=50`.
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "base"  # experiment name, used in reports

  # --- Data: where ratings come from and how they are filtered.
  config.data = ml_collections.ConfigDict()
  # One of synthetic, netflix, ml100k, ml1m, ml_latest, parquet.
  config.data.source = "synthetic"
  # Dataset folder or file for real data; relative paths resolve under $NETREC_DATA_DIR
  # (default ../shared/data beside the project).
  config.data.path = ""
  config.data.store_root = "stores"  # cache folder for built stores
  config.data.store_dir = ""  # explicit store folder (overrides the cache path)
  config.data.min_user_ratings = 25  # drop users with fewer ratings (source documents: 25)
  config.data.min_item_ratings = 0  # then drop items with fewer ratings
  config.data.strict = False  # bad input lines are fatal instead of counted and skipped
  # Synthetic generator (data.source == "synthetic"); see netrec_jax/data/synthetic.py.
  config.data.synthetic = ml_collections.ConfigDict(dict(
      n_users=6_000, n_items=1_500, n_ratings=500_000, rank=8, seed=0))

  # --- Split: how ratings divide into train / validation / test.
  config.split = ml_collections.ConfigDict()
  # time | random | loo | ml100k_fold | netflix_probe | none
  config.split.kind = "time"
  config.split.cutoff = "2005-01-01"  # time: train before, test on or after
  config.split.valid_fraction = 0.05  # time: latest slice of train; random: share of train
  config.split.test_fraction = 0.1  # random
  config.split.seed = 0  # random
  config.split.fold = "u1"  # ml100k_fold: u1..u5, ua, ub
  config.split.loo_n_valid = 1  # loo: ratings before the held-out last one kept for validation

  # --- Analysis.
  config.eda = True  # write EDA plots and summary.md into WORKDIR/eda
  config.eda_top_k = 20  # movies listed in the summary
  return config
