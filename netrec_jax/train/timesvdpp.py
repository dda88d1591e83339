"""The timeSVD++ family (netrec_jax/models/timesvdpp.py): the SVD++ family's whole-user flat
batches, row-sparse updates and curvature-damped SGD (netrec_jax/train/svdpp.py), with the
time tables and each rating's day.

Setup adds, on the host, from the training rows' dates: each rating's day (since the
training's first day), each user's mean training day t_u, and the index of the distinct
training (user, day) pairs (the rows of the per-day bias table, sized by their number; the
recommender looks held-out pairs up in it, and an unseen day gets 0). The item-bias bins
cover the training days, timesvdpp.n_bins of them (Koren: 30 over the Netflix data's range);
a later day, e.g. of a time split's test, falls in the last bin.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from netrec_jax.data.row_batches import flat_user_batch
from netrec_jax.data.store import NO_DATE
from netrec_jax.models import timesvdpp
from netrec_jax.recommenders.timesvdpp import TimeSVDppRecommender, UserDays
from netrec_jax.train.svdpp import SVDppFamily, SVDppSetup


@dataclasses.dataclass
class TimeSVDppSetup(SVDppSetup):
  spec: timesvdpp.TimeSpec = None
  days: UserDays = None  # t_u, each user's last day, the (user, day) pair index
  day: np.ndarray = None  # [n_train] int32 day of each csr rating (since first_day)
  user_day: np.ndarray = None  # [n_train] int32 its (user, day) pair's row


def time_spec(config, n_days: int) -> timesvdpp.TimeSpec:
  t = config.timesvdpp
  return timesvdpp.TimeSpec(
      n_bins=int(t.n_bins), n_days=int(n_days), beta=float(t.beta), item_bins=bool(t.item_bins),
      user_alpha=bool(t.user_alpha), user_day=bool(t.user_day),
      factor_drift=bool(t.factor_drift), bin_l2=float(t.bin_l2), alpha_l2=float(t.alpha_l2),
      day_l2=float(t.day_l2), drift_l2=float(t.drift_l2))


class TimeSVDppFamily(SVDppFamily):
  name = "timesvdpp"
  models = ("timesvdpp",)
  reads = ("svdpp", "timesvdpp")
  architecture_keys = ("svdpp.embed_dim", "svdpp.optimizer", "timesvdpp.n_bins",
                       "timesvdpp.beta", "timesvdpp.item_bins", "timesvdpp.user_alpha",
                       "timesvdpp.user_day", "timesvdpp.factor_drift")
  DEFAULTS = {"timesvdpp": SVDppFamily.DEFAULTS["svdpp"]}
  SEARCH_SPACE = {"timesvdpp": {**SVDppFamily.SEARCH_SPACE["svdpp"],
                                "timesvdpp.alpha_l2": ("log", 0.01, 100.0),
                                "timesvdpp.drift_l2": ("log", 0.01, 100.0),
                                "timesvdpp.bin_l2": ("log", 0.01, 10.0),
                                "timesvdpp.day_l2": ("log", 1e-3, 1.0)}}

  def setup(self, config, meta: dict[str, Any] | None = None) -> TimeSVDppSetup:
    base = super().setup(config, meta)
    store = base.store
    if not store.has_dates:
      raise ValueError(f"timesvdpp needs rating dates, and store {store.name} has none")
    train_rows = base.split.rows("train")
    dates = np.take(store.date, train_rows)
    del train_rows
    if np.any(dates == NO_DATE):
      raise ValueError(f"timesvdpp: {int(np.sum(dates == NO_DATE))} training ratings of "
                       f"{store.name} have no date")
    first_day = int(dates.min())
    day = (dates - first_day).astype(np.int32)
    del dates
    days, user_day = UserDays.from_csr(base.csr, day, first_day)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(SVDppSetup)}
    return TimeSVDppSetup(**fields, spec=time_spec(config, days.n_days), days=days, day=day,
                          user_day=user_day)

  def init_tables(self, setup: TimeSVDppSetup) -> dict[str, jax.Array]:
    c = setup.config
    return {**super().init_tables(setup),
            **timesvdpp.init_time_tables(setup.store.n_users, setup.store.n_items,
                                         setup.days.n_pairs, c.svdpp.embed_dim, setup.spec)}

  def model_fns(self, setup: TimeSVDppSetup):
    _, _, svdpp_index = super().model_fns(setup)
    l2, mu, spec = setup.config.optimizer.l2, setup.global_mean, setup.spec
    n_items, n_pairs = setup.store.n_items, setup.days.n_pairs

    def index(batch):
      out = svdpp_index(batch)
      real = batch["weight"] > 0
      for name in timesvdpp.USER_TABLES:
        out[name] = out["user_bias"]  # the slots' users, n_users for empty slots
      out["item_bin_bias"] = jax.numpy.where(real, timesvdpp.bin_index(batch, spec),
                                             n_items * spec.n_bins)
      out["user_day_bias"] = jax.numpy.where(real, batch["user_day"], max(n_pairs, 1))
      return out

    loss = lambda rows, batch: timesvdpp.batch_loss(rows, batch, mu, l2, spec)
    bounds = lambda rows, batch: timesvdpp.curvature_bounds(rows, batch, l2, n_items, spec)
    return loss, bounds, index

  def user_batch(self, setup: TimeSVDppSetup, users: np.ndarray) -> dict[str, np.ndarray]:
    batch = flat_user_batch(setup.csr, users, setup.batch_ratings, setup.batch_users,
                            columns={"day": setup.day, "user_day": setup.user_day})
    batch["mean_day"] = setup.days.mean_day[batch["user"]]
    return batch

  RECOMMENDER = TimeSVDppRecommender

  def recommender_fields(self, setup: TimeSVDppSetup) -> dict[str, Any]:
    return {"spec": setup.spec, "days": setup.days}

FAMILY = TimeSVDppFamily()
